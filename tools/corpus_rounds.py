"""Each corpus pair's real change round by round, and by which of its two programs ran just before the other.

``tools/corpus_gpu_run.py`` times a job's programs unprofiled in interleaved rounds, in
alternating order (A B C, C B A, ...), so within a round the changed program ran right after
the base, right before it, or apart from it. The table's real unprofiled change is a ratio of
two medians; this pairs the programs round by round (changed over base in the same round) and
splits the rounds by order, to tell a program's change from an order effect (issue 24, p05: the
pageable prefetch program ran +0.6% against its base when it ran first of the two, +6 to +19%
in five of six rounds when it ran right after the base).

Usage: ``python tools/corpus_rounds.py [--corpus traces/recorded/corpus] [--pair ID ...]``;
prints a markdown table (no GPU, reads ``manifest.json`` and ``corpus.toml``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    ap.add_argument("--pair", nargs="*", default=None, help="pair ids (default: every pair)")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
