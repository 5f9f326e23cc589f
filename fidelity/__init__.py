"""Sim-vs-replay fidelity: how well the simulator predicts what a real GPU does.

* :mod:`fidelity.compare`: the fidelity table, sim and replay runs of the same spec joined
  per policy and metric (``harness compare``);
* :mod:`fidelity.report`: the markdown report over a benchmark folder, driven by what each
  workload declares in its ``fidelity`` field (``python3 -m fidelity.report DIR``);
* ``fidelity/run_benchmark.sh``: the benchmark on a CUDA GPU in one call (calibrate, sim,
  replay, compare, report, GPU tests); ``fidelity/README.md`` says how to run it.

Measured outputs live in ``measurements/``, one folder per call.
"""
