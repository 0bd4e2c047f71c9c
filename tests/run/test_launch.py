"""Launch paths a user takes: 2-process DDP on CPU, multirun sweeps, W&B offline."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import SMALL_WORLD, run_mmtrain

TINY = [*SMALL_WORLD, "data.batch_size=8", "model.t2i.sampler.steps=2",
        "model.t2i.samples_per_prompt=1", "trainer.log_every_n_steps=1",
        "callbacks.export_at_end=false", "phases.0.steps=2", "phases.1.steps=3",
        "phases.2.steps=2"]


# the last phase trains two families from one stream: each batch leaves the other
# family's parameters without gradients, which DDP must be told to expect
TWO_FAMILIES = ["+model/restore=tiny", "model.restore.crop_size=16",
                "phases.2.families=[t2i,restore]",
                "+phases.2.loss_weights.restore={pixel: 1.0}",
                "phases.2.freeze=[t2i.vae,restore.discriminator]"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_share_one_run_dir(small_world, tmp_path):
    out = run_mmtrain("+recipe=t2i_pretrain", *TINY, *TWO_FAMILIES, "strategy=ddp",
                      "trainer.accelerator=cpu", "trainer.devices=2", cwd=tmp_path)
    log = out.stdout + out.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # the name was resolved once, in the launcher
    ckpt = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["mmtrain"]["completed"] and ckpt["mmtrain"]["phase_name"] == "t2i_finetune"
    assert ckpt["mmtrain"]["absolute_step"] == 7
    provenance = json.loads((runs[0] / "provenance.json").read_text())
    assert len(provenance) == 1  # written by the launcher only, not by each rank


@pytest.mark.slow
def test_multirun_sweep_gives_one_run_dir_per_job(small_world, tmp_path):
    run_mmtrain("-m", "+recipe=t2i_pretrain", *TINY, "phases.1.steps=2", "seed=1,2",
                "logger=wandb", cwd=tmp_path)
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.name != "multirun")
    assert [p.name.rsplit("-", 1)[1] for p in runs] == ["job0", "job1"]
    for seed, run in zip((1, 2), runs, strict=True):
        assert f"seed: {seed}" in (run / "config.yaml").read_text()
        assert (run / "checkpoints" / "last.ckpt").exists()
        # W&B ran offline (no key) inside the run dir and kept its id for resumes
        run_id = (run / "wandb_id.txt").read_text()
        assert list((run / "wandb").glob(f"offline-run-*-{run_id}"))
