"""Convert a request CSV (harness columns or the Azure LLM inference trace layout) to a request trace.

    python3 -m workloads.continuous_batching.import_trace IN.csv OUT.parquet [--rows N] [--source TEXT]

Rows are checked first (a bad row stops the import, naming it); ``--rows`` keeps
the first N. The provenance records the input file and the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import InputError
from workloads.continuous_batching.requests import read_request_csv, write_request_parquet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=None, help="keep the first N rows")
    ap.add_argument("--source", default="", help="provenance text to prepend (licence, origin)")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)
    try:
        table = read_request_csv(args.csv)
        n = len(table) if args.rows is None else min(args.rows, len(table))
        command = f"python3 -m workloads.continuous_batching.import_trace {args.csv.name} {args.out.name}" + (
            f" --rows {args.rows}" if args.rows else ""
        )
        source = "; ".join(x for x in (args.source, f"first {n} of {len(table)} rows of {args.csv.name}", command) if x)
        write_request_parquet(
            args.out, table.arrival_us[:n], table.prompt_tokens[:n], table.output_tokens[:n], source, args.description
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({n} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
