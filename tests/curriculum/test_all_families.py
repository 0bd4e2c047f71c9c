"""Every registered family trains in one joint phase of the real runner (a mixed batch
stream, one optimizer), validates, saves sample panels and exports its bundle."""

from __future__ import annotations

import csv

import pytest

from mmtrain.families.registry import FAMILIES
from mmtrain.launch import launch
from tests.conftest import compose

WEIGHTS = {"t2i": "{autoencoder: 1.0, diffusion: 1.0}", "vqa": "{caption: 1.0, vqa: 1.0}",
           "doc": "{entities: 1.0, reader: 1.0}", "retrieval": "{contrastive: 1.0}",
           "restore": "{pixel: 1.0}"}
MIX = {"vqa": 3}  # so that the seeded draw of 20 batches reaches every family


@pytest.mark.slow
def test_all_families_train_together_and_export(tmp_path, monkeypatch):
    assert set(FAMILIES) == set(WEIGHTS), "a new family: add its losses here"
    monkeypatch.chdir(tmp_path)
    families = ", ".join(WEIGHTS)
    phase = (f"[{{name: all, families: [{families}], steps: 20, "
             f"mix: {{{', '.join(f'{f}: {MIX.get(f, 1)}' for f in WEIGHTS)}}}, "
             f"loss_weights: {{{', '.join(f'{f}: {w}' for f, w in WEIGHTS.items())}}}, "
             "freeze: [retrieval.text_encoder, restore.discriminator]}]")
    launch(compose("+recipe=joint_finetune", *[f"+model/{f}=tiny" for f in WEIGHTS if f != "t2i"],
                   "name=all", f"phases={phase}", "data.synthetic.train_samples=256",
                   "data.synthetic.val_samples=32", "data.synthetic.shard_size=64",
                   "data.batch_size=4", "callbacks.progress_bar=false", "trainer.log_every_n_steps=1",
                   "model.t2i.sampler.steps=2", "model.t2i.samples_per_prompt=1"))
    run = tmp_path / "runs" / "all"
    with open(run / "metrics" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k.split("/")[1] for r in rows for k, v in r.items() if k.startswith("val/") and v}
    trained = {k.split("/")[1] for r in rows for k, v in r.items()
               if k.startswith("train/") and k != "train/loss" and v}
    assert logged == trained == set(WEIGHTS)  # 20 batches drawn from 5 families: all of them
    for family in WEIGHTS:
        assert (run / "export" / family / "manifest.json").exists()
        assert list((run / "samples").glob(f"{family}-*.png"))
