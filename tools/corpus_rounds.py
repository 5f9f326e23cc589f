"""Each corpus pair's real change round by round, and by which of its two programs ran just before the other.

``tools/corpus_gpu_run.py`` times a job's programs unprofiled in interleaved rounds, in
alternating order (A B C, C B A, ...), so within a round the changed program ran right after
the base, right before it, or apart from it. The table's real unprofiled change is a ratio of
two medians; this pairs the programs round by round (changed over base in the same round) and
splits the rounds by order, to tell a program's change from an order effect (issue 24, p05: the
pageable prefetch program ran +0.6% against its base when it ran first of the two, +6 to +19%
in five of six rounds when it ran right after the base).

``--copies`` adds, per recording of the pairs (sync mode), its host-to-device copies as
recorded: their GPU durations (the first one too: issued with nothing before it), how long each
copy call held the host, how long the copy waited on the GPU after its call, and the GPU's gap
from each copy's end to the next op (the host's work between the copy returning and the next
launch, where the copy held the host).

Usage: ``python tools/corpus_rounds.py [--corpus traces/recorded/corpus] [--pair ID ...] [--copies]``;
prints markdown tables (no GPU, reads ``manifest.json``, ``corpus.toml`` and the recordings' ``.parquet``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import pandas as pd
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_catalogue import CORPUS_DIR, load_catalogue  # noqa: E402

ORDERS = ("changed right after base", "base right after changed", "apart")


@dataclass(frozen=True)
class PairRounds:
    pair: str
    job: str
    changes: tuple[float, ...]  # changed over base - 1, per round
    orders: tuple[str, ...]  # per round: an ORDERS value

    def of(self, order: str | None = None) -> list[float]:
        return [c for c, o in zip(self.changes, self.orders, strict=True) if order is None or o == order]


def round_order(programs: list[str], round_index: int, base: str, changed: str) -> str:
    """Where the changed program ran against its base in round ``round_index`` (forward in even rounds)."""
    run = programs if round_index % 2 == 0 else programs[::-1]
    b, c = run.index(base), run.index(changed)
    return ORDERS[0] if c == b + 1 else ORDERS[1] if b == c + 1 else ORDERS[2]


def pair_rounds(manifest: dict, pair_id: str, base: str, changed: str) -> PairRounds | None:
    """The pair's rounds, from the job that timed both programs (its samples' keys are its run order); None when no
    job timed both."""
    for job, samples in manifest.get("samples", {}).items():
        if base in samples and changed in samples:
            programs = list(samples)
            rounds = min(len(samples[base]), len(samples[changed]))
            changes = tuple(samples[changed][r] / samples[base][r] - 1 for r in range(rounds))
            orders = tuple(round_order(programs, r, base, changed) for r in range(rounds))
            return PairRounds(pair_id, job, changes, orders)
    return None


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:+.1%} (n=1)"
    return f"{statistics.median(values):+.1%} ({min(values):+.1%} to {max(values):+.1%}, n={len(values)})"


def markdown(rows: list[PairRounds]) -> str:
    lines = [
        "| pair | job | paired change, median (quartiles) | " + " | ".join(ORDERS) + " |",
        "|---|---|---:|" + "---:|" * len(ORDERS),
    ]
    for row in rows:
        q1, _, q3 = statistics.quantiles(row.changes, n=4, method="inclusive")
        lines.append(
            f"| {row.pair} | {row.job} | {statistics.median(row.changes):+.1%} ({q1:+.1%} to {q3:+.1%}) | "
            + " | ".join(_pct(row.of(order)) for order in ORDERS)
            + " |"
        )
    return "\n".join(lines)


def copy_figures(trace: pd.DataFrame) -> pd.DataFrame:
    """Per host-to-device copy of an op trace (``harness trace import``), in start order: its stream, GPU µs, the
    µs its call held the host, the µs from its call to its start on the GPU, and the GPU's gap after it (µs from its
    end to the next GPU op's start on any stream; NaN for the last)."""
    copies = trace[trace["kind"] == "copy_h2d"].sort_values("start_us")
    calls = trace[trace["kind"] == "call_memcpy"].drop_duplicates("correlation").set_index("correlation")
    gpu_starts = trace.loc[trace["device"] >= 0, "start_us"].sort_values().to_numpy()
    ends = (copies["start_us"] + copies["duration_us"]).to_numpy()
    after = [gpu_starts[gpu_starts > end].min() - end if (gpu_starts > end).any() else float("nan") for end in ends]
    call = calls.reindex(copies["correlation"])
    return pd.DataFrame(
        {
            "stream": copies["stream"].to_numpy(),
            "duration_us": copies["duration_us"].to_numpy(),
            "call_us": call["duration_us"].to_numpy(),
            "waited_us": copies["start_us"].to_numpy() - call["start_us"].to_numpy(),
            "gap_after_us": after,
        }
    )


def copies_markdown(recordings: dict[str, pd.DataFrame]) -> str:
    lines = [
        "| recording | copies | GPU µs a copy, mean (min-max) | first copy µs | call held the host µs, median "
        "| waited on the GPU µs, median | GPU gap after a copy µs, median |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, trace in recordings.items():
        f = copy_figures(trace)
        if f.empty:
            continue
        d = f["duration_us"]
        lines.append(
            f"| {name} | {len(f)} | {d.mean():,.0f} ({d.min():,.0f}-{d.max():,.0f}) | {d.iloc[0]:,.0f} | "
            f"{f['call_us'].median():,.0f} | {f['waited_us'].median():,.0f} | {f['gap_after_us'].median():,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    ap.add_argument("--pair", nargs="*", default=None, help="pair ids (default: every pair)")
    ap.add_argument("--copies", action="store_true", help="also the pairs' recorded host-to-device copies")
    args = ap.parse_args(argv)
    path = args.corpus / "manifest.json"
    if not path.exists():
        print(f"{path}: no manifest (run tools/corpus_gpu_run.py on the GPU first)", file=sys.stderr)
        return 2
    manifest = json.loads(path.read_text())
    catalogue = load_catalogue(args.corpus / "corpus.toml")
    wanted = args.pair or list(catalogue.pairs)
    unknown = [p for p in wanted if p not in catalogue.pairs]
    if unknown:
        print(f"{args.corpus / 'corpus.toml'}: no pair {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows = []
    for pair_id in wanted:
        pair = catalogue.pairs[pair_id]
        found = pair_rounds(manifest, pair_id, pair.base, pair.changed)
        if found is None:
            print(f"{pair_id}: no job timed both {pair.base} and {pair.changed}", file=sys.stderr)
        elif len(found.changes) >= 2:
            rows.append(found)
    print(markdown(rows))
    if args.copies:
        recordings = {}
        for pair_id in wanted:
            for program in (catalogue.pairs[pair_id].base, catalogue.pairs[pair_id].changed):
                path = args.corpus / "recordings" / f"{program}-sync.parquet"
                if path.exists() and program not in recordings:
                    recordings[program] = pd.read_parquet(path)
        print()
        print(copies_markdown(recordings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
