"""Find torch and a CUDA device, or explain clearly why the replay cannot run."""

from __future__ import annotations

import subprocess
from typing import Any


class CudaUnavailable(RuntimeError):
    """The replay (or calibration) needs a CUDA GPU and this machine has none usable."""


def require_cuda(device_index: int = 0) -> Any:
    """Import torch and check that ``device_index`` is a usable CUDA device; return the torch module."""
    try:
        import torch
    except ImportError:
        raise CudaUnavailable(
            "this command needs a CUDA GPU and PyTorch with CUDA; torch is not installed "
            "(install a CUDA build of torch, e.g. pip install 'gpu-policy-harness[replay]')"
        ) from None
    if not torch.cuda.is_available():
        raise CudaUnavailable(
            f"this command needs a CUDA GPU; torch {torch.__version__} sees none "
            "(is this a CPU-only build or a machine without a GPU?)"
        )
    count = torch.cuda.device_count()
    if not 0 <= device_index < count:
        raise CudaUnavailable(f"CUDA device {device_index} does not exist; this machine has {count}")
    return torch


def driver_version() -> str:
    """The NVIDIA driver version as nvidia-smi reports it, or "" when it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
