"""Side-by-side benchmarks: `python -m benchmarks [NAME ...] [--repeats N] [--quick]`.

Each benchmark is a module `benchmarks/bench_<name>.py` exposing

    DESCRIPTION: str
    def run(repeats: int, quick: bool) -> dict   # {"params", "results", "checks", "table"}

and measures mmtrain against a baseline *in the same process and run*, so that ratios
survive a noisy, shared machine. The harness (benchmarks/harness.py) pins torch's thread
count, records the environment and appends one JSON line per run to
benchmarks/results/<name>.jsonl. See docs/benchmarks.md.
"""
