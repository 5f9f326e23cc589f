"""The replay's native executor: straight-line programs run by compiled code, one native thread per host thread.

* :mod:`.steps` — the step arrays the executor runs (a numpy dtype that is the C struct);
* :mod:`.twin` — the executor's state machine in Python, with a fake device (CI runs it);
* :mod:`.build` — builds ``src/`` with g++ (fake device) or nvcc + ninja (CUDA), cached by source hash;
* :mod:`.library` — the built library through ctypes;
* :mod:`.executor` — runs a program on the GPU and turns what it stamped into the replay's op rows.

Nothing here is imported by the CPU path; see README.md.
"""
