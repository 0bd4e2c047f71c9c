"""What every benchmark shares: discovery, the environment record, timing statistics,
the printed table and the results files."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PACKAGES = ("torch", "lightning", "diffusers", "transformers", "numpy", "webdataset")


# ---- discovery ------------------------------------------------------------------------
def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def load(name: str):
    return importlib.import_module(f"benchmarks.bench_{name}")


# ---- statistics -----------------------------------------------------------------------
def median(values) -> float:
    return float(statistics.median(values))


def steady_mean(starts: list[float], warmup: int) -> float:
    """Mean step time from the start times of consecutive steps, dropping the first
    `warmup` steps: (starts[-1] - starts[warmup]) / (len(starts) - 1 - warmup)."""
    if len(starts) - 1 - warmup < 1:
        raise ValueError(f"need more than {warmup + 1} steps to measure after warm-up")
    return (starts[-1] - starts[warmup]) / (len(starts) - 1 - warmup)


# ---- environment ----------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gib": memory_gib, "hostname": platform.node(),
            "python": platform.python_version()}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_state() -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    sha = git("rev-parse", "HEAD")
    if not sha and os.environ.get("BENCH_GIT_SHA"):  # a copied tree without .git
        return {"sha": os.environ["BENCH_GIT_SHA"], "dirty": None, "from": "BENCH_GIT_SHA"}
    return {"sha": sha or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None}


def versions() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def threads() -> dict:
    import torch

    return {"torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS")}


# ---- running --------------------------------------------------------------------------
def run_one(name: str, repeats: int, quick: bool, results_dir: Path | None,
            params: dict | None = None) -> dict:
    module = load(name)
    accepted = inspect.signature(module.run).parameters
    unknown = sorted(set(params or {}) - set(accepted) - {"repeats", "quick"})
    if unknown:
        raise SystemExit(f"benchmark {name}: unknown --param {', '.join(unknown)}; it takes "
                         f"{', '.join(k for k in accepted if k not in ('repeats', 'quick'))}")
    load_before = load_average()
    started = time.time()
    out = module.run(repeats=repeats, quick=quick, **(params or {}))
    record = {
        "benchmark": name,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 2),
        "git": git_state(),
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "threads": threads(),
        "packages": versions(),
        "repeats": repeats,
        "quick": quick,
        "params": out.get("params", {}),
        "results": out.get("results", {}),
        "checks": out.get("checks", {}),
    }
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        with open(results_dir / f"{name}.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    record["table"] = out.get("table", [])
    return record


def print_record(record: dict) -> None:
    t, m = record["threads"], record["machine"]
    print(f"\n== {record['benchmark']}  ({record['wall_s']} s, {record['repeats']} repeat(s)"
          f"{', quick' if record['quick'] else ''}; {m['cpu']}, {m['cores']} cores; "
          f"torch threads {t['torch_intra_op']}, OMP_NUM_THREADS={t['OMP_NUM_THREADS']}; "
          f"load {record['load_average']['before']})")
    rows = [[str(c) for c in row] for row in record.get("table", [])]
    if rows:
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
        for j, row in enumerate(rows):
            print("  " + "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=False))))
            if j == 0:
                print("  " + "  ".join("-" * w for w in widths))
    for check, ok in record.get("checks", {}).items():
        print(f"  check {check}: {'PASS' if ok else 'FAIL'}")


# ---- memory measurements in a fresh process ---------------------------------------------
def in_child(fn, *args):
    """Runs fn(*args) in a forked process and returns its (picklable) result: each
    measurement gets its own resident-set high-water mark (VmHWM)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"benchmark child failed: {result['error']}")
    return result


def _child(queue, fn, args) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as err:  # reported to the parent
        import traceback

        queue.put({"error": f"{err!r}\n{traceback.format_exc()}"})


def rss_kib(field: str) -> int:
    """A /proc/self/status memory field in KiB: VmRSS (now) or VmHWM (peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def saved_for_backward(forward) -> int:
    """Bytes of the unique storages autograd keeps for backward during `forward()` (what
    gradient checkpointing trades for recomputation)."""
    import torch

    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    del loss
    return sum(storages.values())
