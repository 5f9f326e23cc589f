"""GPU scheduling-policy harness: one policy, simulated (SimPy) and replayed (CUDA)."""


def __getattr__(name: str) -> str:
    """``__version__``, looked up when first asked for (``importlib.metadata`` costs ~50 ms to import and search:
    ``harness sim`` may re-run itself before it needs it, see :mod:`harness.huge_pages`)."""
    if name != "__version__":
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("gpu-policy-harness")
    except PackageNotFoundError:  # running from a checkout that was not pip-installed
        found = "0.0.0+checkout"
    globals()["__version__"] = found
    return found
