"""The replay backend: harness policies run unchanged on a real CUDA GPU through PyTorch.

Importing this package (or any module here except those that say so) needs no
torch: torch is imported when a replay context is created, so the core and CI
stay torch-free. Modules:

* :mod:`replay.gpu`      finds torch and a CUDA device, or says clearly why not;
* :mod:`replay.clock`    one clock (µs since run start) for host and CUDA-event times;
* :mod:`replay.kernels`  picks the kernel stand-ins: real GPU work that takes a kernel's declared duration,
  either :mod:`replay.timed` (timer-bounded, the default) or :mod:`replay.sized` (sized from
  measured tables); both share :mod:`replay.plan` and time work with :mod:`replay.timing`;
* :mod:`replay.pools`    host (pinned / pageable) and device scratch buffers;
* :mod:`replay.engine`   :class:`~replay.engine.ReplayBackend`, the runtime interface on the GPU;
* :mod:`replay.fit`      pure fitting math for calibration (no torch);
* :mod:`replay.calibrate` measures a hardware profile (``harness calibrate``).
"""
