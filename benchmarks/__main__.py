"""`python -m benchmarks [NAME ...] [--repeats N] [--quick] [--threads T] [--param K=V]`.

Runs the named benchmarks (default: all), prints a table per benchmark and appends one
JSON line per benchmark run to benchmarks/results/<name>.jsonl.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.harness import RESULTS_DIR, available

    names = available()
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: all): {', '.join(names)}")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats per benchmark; medians are taken over them "
                        "(default: 3, or 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="fewer steps: a smoke run (well under 90 s), not a measurement")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1, for reproducible numbers); "
                        "also sets OMP_NUM_THREADS when it is unset")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a benchmark-specific setting passed to its run() (repeatable), "
                        "e.g. --param batch_size=1 --param steps=120; recorded with the results")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                   help="where <name>.jsonl is appended (default: benchmarks/results)")
    p.add_argument("--no-save", action="store_true", help="print only, write no results")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any benchmark check fails (e.g. bit-identity)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    args.params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--param expects KEY=VALUE, got {item!r}")
        args.params[key] = _value(value)
    args.names = args.names or names
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Before torch is imported, so OpenMP's pool starts at this size.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # torchvision fallback notes
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks import harness

    if args.list:
        for name in args.names:
            print(f"{name:16s} {harness.load(name).DESCRIPTION}")
        return 0
    failed = False
    for name in args.names:
        record = harness.run_one(name, args.repeats, args.quick,
                                 None if args.no_save else args.results_dir, args.params)
        harness.print_record(record)
        failed |= not all(record["checks"].values())
    if not args.no_save:
        print(f"\nresults appended to {args.results_dir}/<name>.jsonl")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
