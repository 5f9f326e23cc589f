"""Which machine a run describes, so that pages never pool runs of different machines.

A sim run models the GPU of its hardware profile; a replay run measured the GPU
it ran on; a recording run (``harness trace as-run``) is what the profiler recorded
of the real program, on the GPU it was recorded on. Runs of one backend on different machines (replays on an H100 and on
an H200, or sims with two profiles) are different experiments, not repetitions.
"""

from __future__ import annotations

import pandas as pd

MACHINE_COLUMNS = ["backend", "profile", "device_name"]


def machine_of(backend: str, profile: str, device_name: str) -> str:
    """``sim · h100-sxm-pcie5-measured`` (the modelled profile), ``replay · NVIDIA H200`` (the GPU used)."""
    detail = profile if backend == "sim" else (device_name or profile)
    return f"{backend} · {detail or 'unknown machine'}"


def machine_groups(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Runs by backend and machine, labelled with the backend alone where a backend has one machine.

    Ordered by backend, then machine name; empty ``runs`` give no group.
    """
    if runs.empty:
        return {}
    frame = runs.assign(
        machine=[machine_of(*row) for row in runs[MACHINE_COLUMNS].fillna("").itertuples(index=False, name=None)]
    )
    per_backend = frame.groupby("backend")["machine"].nunique()
    labels = frame["backend"].where(frame["backend"].map(per_backend) == 1, frame["machine"])
    return {label: runs[labels == label] for label in sorted(labels.unique())}


# Which run to draw below a run on the timeline: the same policy on the backend it is checked against.
PARTNER_BACKENDS = {"sim": ("replay", "recording"), "replay": ("sim", "recording"), "recording": ("sim", "replay")}


def partner_run(runs: pd.DataFrame, run: pd.Series) -> str | None:
    """The ``run_label`` of the run to compare ``run`` with: the same spec and policy label on the other side
    (a sim against its replay, else its recording; a replay or a recording against the sim), else None."""
    same = runs[(runs["spec_name"] == run["spec_name"]) & (runs["policy_label"] == run["policy_label"])]
    for backend in PARTNER_BACKENDS.get(run["backend"], ()):
        found = same[same["backend"] == backend]
        if len(found):
            return str(found["run_label"].iloc[0])
    other = same[same["backend"] != run["backend"]]
    return str(other["run_label"].iloc[0]) if len(other) else None
