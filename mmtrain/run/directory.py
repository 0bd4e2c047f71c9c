"""The run directory: one place per run, resolved once, shared by every process.

    runs/<name>/config.yaml        the composed, validated config (DDP children read it)
    runs/<name>/provenance.json    argv, git sha, package versions, host, SLURM job
    runs/<name>/metrics/           CSV metrics (tensorboard/ and wandb/ beside it)
    runs/<name>/samples/           sample grids from validation
    runs/<name>/checkpoints/       step checkpoints and last.ckpt (atomic writes)
    runs/<name>/export/            the servable bundle written at the end
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mmtrain.config.schema import RunConfig

# Set by the launcher for the DDP processes Lightning spawns: they read this config file
# instead of composing again (see mmtrain/__main__.py).
CONFIG_ENV = "MMTRAIN_CONFIG_FILE"
PACKAGES = ("mmtrain", "torch", "lightning", "diffusers", "transformers", "hydra-core",
            "omegaconf", "webdataset", "numpy", "wandb")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"


def resolve_name(run: RunConfig, multirun_job: int | None = None) -> str:
    """Explicit name > MMTRAIN_RUN_NAME > SLURM job (stable across requeues) > torchrun
    run id > recipe + timestamp. Resolved in the launching process only."""
    if run.name:
        return run.name
    if os.environ.get("MMTRAIN_RUN_NAME"):
        return os.environ["MMTRAIN_RUN_NAME"]
    stem = run.recipe or "run"
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"{stem}-slurm{job}" + (f"_{task}" if task else "")
    elastic = os.environ.get("TORCHELASTIC_RUN_ID")
    if elastic and elastic != "none":
        return f"{stem}-{elastic}"
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return name if multirun_job is None else f"{name}-job{multirun_job}"


def run_dir(run: RunConfig) -> RunDir:
    root = Path(os.path.expanduser(run.paths.runs_dir))
    return RunDir((root if root.is_absolute() else Path.cwd() / root) / run.name)


def write_provenance(rd: RunDir) -> None:
    rd.path.mkdir(parents=True, exist_ok=True)
    record = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "git": _git_state(),
        "packages": {p: _version(p) for p in PACKAGES},
        "slurm": {k: v for k, v in os.environ.items() if k.startswith("SLURM_")},
    }
    history = rd.path / "provenance.json"
    launches = json.loads(history.read_text()) if history.exists() else []
    launches.append(record)  # one entry per launch: first run, resumes, requeues
    tmp = history.with_suffix(".tmp")
    tmp.write_text(json.dumps(launches, indent=2))
    os.replace(tmp, history)


def _git_state() -> dict:
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    sha = git("rev-parse", "HEAD")
    return {"sha": sha or None, "dirty": bool(git("status", "--porcelain")) if sha else None}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
