"""The t2i benchmark runs end to end (--quick) and measures what the family trains:
its step is TextToImage's diffusion loss, and gradient checkpointing (the config field)
keeps less for backward without changing the gradients."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_t2i_benchmark_quick_run(tmp_path):
    out = run_mmtrain("t2i", "--quick", "--strict", f"--results-dir={tmp_path}",
                      module="benchmarks", cwd=REPO)
    assert "t2i" in out.stdout
    record = json.loads((tmp_path / "t2i.jsonl").read_text().splitlines()[-1])
    assert record["checks"] and all(record["checks"].values()), record["checks"]
    base = record["results"]["step"]["base"]["diffusion"]
    assert base["plain"]["step_s"] > 0 and base["checkpointed"]["peak_mib"] > 0
    assert base["plain"]["params_m"]["unet"] > 10  # the mid-size UNet, not the tiny one
    # the UNet's blocks are recomputed in backward: far less held between the passes
    assert base["saved_ratio"] < 0.4, base
    runs = record["results"]["sampling"]["tiny"]["runs"]
    assert {r["sampler"] for r in runs} == {"ddim", "ddpm", "dpm_solver"}
    assert all(r["images_ok"] and r["s_per_image"] > 0 for r in runs)


def _tiny(**overrides):
    from benchmarks.bench_t2i import load_config

    cfg = load_config("tiny", None, checkpointing=True)
    cfg.autoencoder = dataclasses.replace(cfg.autoencoder, scaling_factor=0.7)
    return dataclasses.replace(cfg, caption_dropout=0.5, **overrides)


def test_benchmark_step_is_the_modules_diffusion_loss_and_checkpointing_is_applied():
    from benchmarks.bench_t2i import Parts, diffusion_loss, scene_batch
    from mmtrain.families.t2i.module import TextToImage

    cfg = _tiny()
    torch.manual_seed(0)
    module = TextToImage(cfg)
    torch.manual_seed(0)
    parts = Parts(cfg, "cpu")
    assert module.unet.is_gradient_checkpointing and module.vae.is_gradient_checkpointing
    assert parts.unet.is_gradient_checkpointing and parts.vae.is_gradient_checkpointing
    batch = scene_batch(6, cfg.resolution)
    ours = diffusion_loss(parts, batch, torch.Generator().manual_seed(3))
    theirs = module.losses(batch, {"diffusion"}, torch.Generator().manual_seed(3))["diffusion"]
    assert torch.equal(ours, theirs), (ours, theirs)


def test_checkpointing_keeps_the_gradients():
    from benchmarks.bench_t2i import Parts, diffusion_loss, scene_batch

    cfg = _tiny()
    batch = scene_batch(4, cfg.resolution)
    grads = {}
    for on in (False, True):
        torch.manual_seed(0)
        parts = Parts(cfg, "cpu")
        parts.set_checkpointing(on)
        diffusion_loss(parts, batch, torch.Generator().manual_seed(1)).backward()
        grads[on] = torch.cat([p.grad.flatten() for p in parts.unet.parameters()])
    assert grads[True].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-7)
