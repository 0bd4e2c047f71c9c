"""restore_sr_x2 through the runner: a PSNR phase (pixel loss, discriminator frozen), then
a GAN phase in which the generator and the PatchGAN train with separate optimizers."""

from __future__ import annotations

import csv

import pytest
import torch

from mmtrain.launch import launch
from tests.conftest import SMALL_WORLD, compose


@pytest.mark.slow
def test_psnr_then_gan_phase(small_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launch(compose("+recipe=restore_sr_x2", "name=r", *SMALL_WORLD, "data.batch_size=4",
                   "callbacks.progress_bar=false", "phases.0.steps=3", "phases.1.steps=3",
                   "callbacks.checkpoint.every_n_steps=3", "trainer.log_every_n_steps=1",
                   "model.restore.eval_photo_crop=64"))
    run = tmp_path / "runs" / "r"
    (psnr_ckpt,) = (run / "checkpoints").glob("phase0-sr_psnr-*.ckpt")
    after_psnr = torch.load(psnr_ckpt, weights_only=False)
    after_gan = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert after_gan["mmtrain"]["completed"] and after_gan["mmtrain"]["phase_index"] == 1

    def tensor(ckpt, key):
        from mmtrain.parallel import frozen  # phase 0 keeps the frozen D in its own file
        return frozen.complete(ckpt, run / "checkpoints" / "x.ckpt")["state_dict"][key]

    d_key = "families.restore.discriminator.scales.0.net.0.weight"
    g_key = "families.restore.restorer.model.upsample.conv.weight"
    assert not torch.equal(tensor(after_psnr, d_key), tensor(after_gan, d_key))  # D trained
    assert not torch.equal(tensor(after_psnr, g_key), tensor(after_gan, g_key))  # G too
    rows = list(csv.DictReader(open(run / "metrics" / "metrics.csv")))
    d_steps = [int(float(r["step"])) for r in rows if r.get("train/restore/d_discriminator")]
    adv = [r for r in rows if r.get("train/restore/adversarial")]
    assert d_steps and min(d_steps) >= 3 and adv  # the D step runs in the GAN phase only
    assert (run / "export" / "restore" / "restorer.onnx").exists()
