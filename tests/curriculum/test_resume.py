"""A run killed mid-phase (SIGKILL, like a lost node) resumes to the same loss trace."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import SMALL_WORLD, run_mmtrain

FAST = [*SMALL_WORLD, "data.batch_size=8", "data.num_workers=2", "model.t2i.sampler.steps=2",
        "model.t2i.samples_per_prompt=1", "trainer.log_every_n_steps=1",
        "callbacks.checkpoint.every_n_steps=3", "callbacks.export_at_end=false",
        "phases.0.steps=4", "phases.1.steps=6", "phases.2.steps=4"]


def loss_trace(run: Path) -> dict[int, float]:
    """step -> train/loss; a step logged twice (before a kill, again after resume) keeps
    its last value."""
    trace = {}
    with open(run / "metrics" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                trace[int(float(row["step"]))] = float(row["train/loss"])
    return trace


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(small_world, tmp_path):
    run_mmtrain("+recipe=t2i_pretrain", "name=straight", *FAST, cwd=tmp_path)
    killed = run_mmtrain("+recipe=t2i_pretrain", "name=killed", *FAST,
                         "debug.kill_at_step=8", cwd=tmp_path, check=False)
    assert killed.returncode == -9  # SIGKILL: no cleanup ran
    run = tmp_path / "runs" / "killed"
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert not (run / "checkpoints" / "phase2-t2i_finetune-3.ckpt").exists()
    # Phase 1 freezes the autoencoder: its checkpoints reference the phase's frozen file.
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert [f["file"] for f in ckpt["mmtrain_frozen"]["files"]] == ["frozen-phase1.safetensors"]
    assert not any(".vae." in k for k in ckpt["state_dict"])
    # The saved data position belongs to 2 data workers: 1 is refused, with the way out.
    other = run_mmtrain("+recipe=t2i_pretrain", "name=killed", *FAST, "data.num_workers=1",
                        cwd=tmp_path, check=False)
    assert other.returncode != 0
    assert "num_workers 2 -> 1" in other.stderr and "reshard_on_resume" in other.stderr
    out = run_mmtrain("+recipe=t2i_pretrain", "name=killed", *FAST, cwd=tmp_path)
    assert "run finished" in out.stdout
    straight, resumed = loss_trace(tmp_path / "runs" / "straight"), loss_trace(run)
    assert sorted(straight) == sorted(resumed) == list(range(14))
    for step in straight:
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-7), step
    with open(run / "metrics" / "metrics.csv") as f:  # data counters (per phase) are metrics
        rows = [r for r in csv.DictReader(f) if r.get("data/t2i/seen")]
    assert max(float(r["data/t2i/seen"]) for r in rows) >= 8 * 6  # phase 1: 6 steps of 8
    assert all(float(r["data/t2i/skip_rate"]) == 0 for r in rows)

    # A changed schedule is refused before any training, with the difference named.
    changed = run_mmtrain("+recipe=t2i_pretrain", "name=killed", *FAST[:-1],
                          "phases.2.steps=5", cwd=tmp_path, check=False)
    assert changed.returncode != 0
    assert "curriculum changed" in changed.stderr and "steps 4 -> 5" in changed.stderr
