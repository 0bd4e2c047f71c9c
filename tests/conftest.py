"""Shared test set-up: one thread, private caches, a small synthetic world, compose()."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before torch is imported anywhere: on 2 shared cores, 2 threads can be 30x slower.
os.environ["OMP_NUM_THREADS"] = "1"
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="mmtrain-tests-"))
os.environ.setdefault("MMTRAIN_CACHE", str(_SESSION_TMP / "cache"))
for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
    os.environ[var] = str(_SESSION_TMP / "wandb")
os.environ.pop("WANDB_API_KEY", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
# A small world keeps runs quick: 4 shards of 128 scenes.
SMALL_WORLD = ["data.synthetic.train_samples=512", "data.synthetic.val_samples=64",
               "data.synthetic.shard_size=128"]


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def run_mmtrain(*args: str, cwd: Path, timeout: int = 600, check: bool = True,
                module: str = "mmtrain") -> subprocess.CompletedProcess:
    """`python -m mmtrain ARGS` in a subprocess, as a user would run it."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())
    if check and proc.returncode != 0:
        raise AssertionError(f"mmtrain {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def small_world() -> Path:
    """The small synthetic world the SMALL_WORLD overrides point at, written once."""
    from mmtrain.config.validate import validate
    from mmtrain.launch import ensure_data

    run = validate(compose("+recipe=t2i_pretrain", *SMALL_WORLD))
    ensure_data(run)
    return Path(run.data.root)


def pytest_collection_modifyitems(session, config, items):
    """The default run is the suite's long pole (about 17 of its 30 CPU-minutes): its file
    goes first so that one xdist worker starts on it at once while the other takes
    everything else. xdist (loadfile, reordering off in pyproject) hands each worker two
    files to start with: worker 0 gets files 1 and 3, so file 3 waits until the default run
    is done; the two quickest files go second and third."""
    first = {"test_default_run.py": 0, "test_frozen.py": 1, "test_doc_structure.py": 2}
    items.sort(key=lambda item: first.get(item.path.name, 3))  # stable: the rest keep order
