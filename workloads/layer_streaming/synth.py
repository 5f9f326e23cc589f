"""Synthetic layer-streaming traces, for examples and tests.

The bundled example is *shaped like* the reference change's multi-segment run
(a ~6B-parameter diffusion transformer in bf16, split into 9 streaming
segments), but its sizes and times are illustrative, not recorded; the trace's
provenance says so.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from harness.profile import QUOTED_PROFILE, load_profile
from harness.runtime import Direction, HostMemory
from harness.trace import Provenance, write_trace


def synth_layer_trace(
    out: Path,
    segments: int,
    param_bytes: int,
    compute_us: float,
    kernels_per_segment: int = 4,
    edge_scale: float = 0.25,
    profile_name: str = QUOTED_PROFILE,
) -> Path:
    profile = load_profile(profile_name)
    rows = []
    for i in range(segments):
        scale = edge_scale if segments > 2 and i in (0, segments - 1) else 1.0
        nbytes = int(param_bytes * scale)
        group = f"segment{i}"
        copy_us = profile.copy_time_us(nbytes, Direction.H2D, HostMemory.PINNED)
        rows.append(
            dict(
                device=0,
                stream="prefetch",
                kind="copy_h2d",
                name=f"params{i}",
                bytes=nbytes,
                duration_us=copy_us,
                group=group,
                host_memory="pinned",
            )
        )
        for k in range(kernels_per_segment):
            rows.append(
                dict(
                    device=0,
                    stream="compute",
                    kind="kernel",
                    name=f"block{i}.op{k}",
                    bytes=0,
                    duration_us=compute_us * scale / kernels_per_segment,
                    group=group,
                    compute_share=1.0,
                )
            )
    provenance = Provenance(
        source=(
            f"synthetic: harness trace synth-layers --segments {segments} --param-bytes {param_bytes} "
            f"--compute-us {compute_us} --kernels-per-segment {kernels_per_segment} --edge-scale {edge_scale} "
            f"--profile {profile_name}; copy durations from that profile's model"
        ),
        hardware="synthetic",
        date=dt.date.today().isoformat(),
        description=(
            "layer-streaming segments shaped like a bf16 diffusion transformer offloaded to host memory; "
            "not a recording"
        ),
    )
    return write_trace(out, pd.DataFrame(rows), provenance)
