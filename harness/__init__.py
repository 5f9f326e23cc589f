"""GPU scheduling-policy harness: one policy, simulated (SimPy) and replayed (CUDA)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpu-policy-harness")
except PackageNotFoundError:  # running from a checkout that was not pip-installed
    __version__ = "0.0.0+checkout"
