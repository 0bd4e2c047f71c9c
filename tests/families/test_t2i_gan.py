"""The text-to-image family's GAN parts: the autoencoder's patch-adversarial loss (VQGAN's
adaptive weight, disc_start), the diffusion phase's adversarial loss on decoded x0
estimates, discriminator guidance at sampling, and their export."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mmtrain.config.validate import validate
from mmtrain.data.synth.scenes import COLOURS, Scene, render_scene
from mmtrain.families.shared import gan
from mmtrain.families.t2i import adversarial
from mmtrain.families.t2i.module import TextToImage
from tests.conftest import SMALL_WORLD, compose

AE_D = "model.t2i.adversarial.autoencoder_discriminator.enabled=true"
DIFF_D = "model.t2i.adversarial.diffusion_discriminator.enabled=true"


def tiny(*overrides: str):
    """The tiny t2i config (conf/model/t2i/tiny.yaml) with overrides, as a run gets it."""
    return validate(compose("+recipe=t2i_pretrain", "model.t2i.sampler.steps=4", *overrides)).model["t2i"]


def build(*overrides: str, seed: int = 0) -> TextToImage:
    torch.manual_seed(seed)
    return TextToImage(tiny(*overrides))


def batch(n: int = 6) -> dict:
    scenes = [Scene(c, "circle", "large", "center", "gray") for c in list(COLOURS)[:n]]
    pixels = [torch.from_numpy(np.asarray(render_scene(s, 16), np.float32) / 127.5 - 1) for s in scenes]
    return {"pixels": torch.stack(pixels).permute(0, 3, 1, 2), "captions": [s.caption() for s in scenes]}


def grads(module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_discriminators_exist_only_when_enabled_and_losses_need_them():
    plain = build()
    assert plain.autoencoder_discriminator is None and plain.diffusion_discriminator is None
    assert not hasattr(plain, "gan_updates") and plain.discriminators({"diffusion"}) == {}
    with pytest.raises(ValueError, match="adversarial.diffusion_discriminator.enabled=true"):
        plain.discriminators({"diffusion", "adversarial"})
    m = build(AE_D, DIFF_D, "model.t2i.adversarial.diffusion_discriminator.num_scales=3")
    assert len(m.diffusion_discriminator.scales) == 3
    assert set(m.discriminators({"autoencoder", "autoencoder_adversarial"})) == {"autoencoder_discriminator"}
    assert m.adversarial_config().loss == "hinge"
    # a discriminator without its loss in a phase is frozen for that phase
    m.on_phase_start({"diffusion", "adversarial"})
    assert not any(p.requires_grad for p in m.autoencoder_discriminator.parameters())


def test_config_repeats_the_shared_adversarial_fields():
    import dataclasses

    from mmtrain.families.t2i.config import T2IAdversarialConfig

    ours, theirs = T2IAdversarialConfig(), gan.AdversarialConfig()
    for f in dataclasses.fields(theirs):  # same names, same defaults, same checks
        assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
        assert T2IAdversarialConfig.__dataclass_fields__[f.name].metadata == f.metadata, f.name


def test_autoencoder_adversarial_waits_for_disc_start_then_matches_the_rec_gradient():
    m = build(AE_D, "model.t2i.adversarial.disc_start=2")
    m.on_phase_start({"autoencoder", "autoencoder_adversarial"})
    active = {"autoencoder", "autoencoder_adversarial"}
    out = m.losses(batch(), active, torch.Generator().manual_seed(0))
    assert out["autoencoder_adversarial"].item() == 0.0  # before disc_start
    d_out = m.discriminator_losses(batch(), active, None, step=0)
    assert d_out["autoencoder_adversarial"].item() == 0.0 and int(m.gan_updates) == 1
    m.gan_updates.fill_(2)
    out = m.losses(batch(), active, torch.Generator().manual_seed(0))
    last = m.vae.decoder.conv_out.weight
    (g_adv,) = torch.autograd.grad(out["autoencoder_adversarial"], last, retain_graph=True)
    (g_rec,) = torch.autograd.grad(out["autoencoder"], last, retain_graph=True)
    # VQGAN's adaptive weight: the adversarial gradient at the decoder's last layer is as
    # large as the reconstruction's (the KL term is ~1e-6 of it, eps 1e-4)
    assert g_adv.norm().item() == pytest.approx(g_rec.norm().item(), rel=0.02)
    d_out = m.discriminator_losses(batch(), active, None, step=2)
    d_out["autoencoder_adversarial"].backward()
    assert all(g is not None for g in grads(m.autoencoder_discriminator))
    assert sum(g.abs().sum() for g in grads(m.autoencoder_discriminator)) > 0


def test_r1_penalty_every_r1_every_steps():
    m = build(AE_D, "model.t2i.adversarial.r1_weight=1.0", "model.t2i.adversarial.r1_every=4")
    active = {"autoencoder_adversarial"}
    for step, has_r1 in ((0, True), (1, False), (4, True)):
        m.losses(batch(2), active, torch.Generator().manual_seed(step))
        out = m.discriminator_losses(batch(2), active, None, step=step)
        assert ("autoencoder_adversarial_r1" in out) == has_r1
        if has_r1:
            assert out["autoencoder_adversarial_r1"].item() > 0


def test_diffusion_adversarial_reaches_the_unet_through_the_frozen_autoencoder():
    m = build(DIFF_D)
    m.on_phase_start({"diffusion", "adversarial"})
    m.vae.requires_grad_(False)  # as the phase's freeze plan does
    m.diffusion_discriminator.requires_grad_(False)  # as the GAN path's generator step does
    active = {"diffusion", "adversarial"}
    out = m.losses(batch(), active, torch.Generator().manual_seed(0))
    assert set(out) == active and torch.isfinite(out["adversarial"])
    out["adversarial"].backward()
    assert m.unet.conv_out.weight.grad.abs().sum() > 0  # G gets an adversarial gradient
    assert all(g is None for g in grads(m.vae))
    m.diffusion_discriminator.requires_grad_(True)
    d_out = m.discriminator_losses(batch(), active, None, step=0)
    d_out["adversarial"].backward()
    assert all(g is not None for g in grads(m.diffusion_discriminator))


def test_adversarial_only_applies_below_max_timestep():
    m = build(DIFF_D, "model.t2i.adversarial.max_timestep=1")
    m.on_phase_start({"diffusion", "adversarial"})
    out = m.losses(batch(), {"adversarial"}, torch.Generator().manual_seed(0))
    assert set(out) == {"adversarial"} and out["adversarial"].item() == 0.0  # t >= 1 here
    d_out = m.discriminator_losses(batch(), {"adversarial"}, None, step=0)
    assert d_out["adversarial"].item() == 0.0


def realness_of(m: TextToImage, images) -> float:
    x = torch.stack([torch.from_numpy(np.asarray(i, np.float32) / 127.5 - 1) for i in images])
    with torch.no_grad():
        return gan.realness(m.diffusion_discriminator, x.permute(0, 3, 1, 2)).mean().item()


def test_discriminator_guidance_moves_samples_towards_realness(tmp_path):
    from diffusers import DiffusionPipeline

    from mmtrain.families.t2i.export import export

    m = build(DIFF_D, "model.t2i.adversarial.guidance_scale=0.0")
    m.latent_scale.fill_(1.0)
    prompts = ["a red shape", "a blue shape"]
    plain = m.generate(prompts, seed=3)
    guided = m.generate(prompts, seed=3, discriminator_guidance=30.0)
    assert not np.array_equal(np.asarray(plain[0]), np.asarray(guided[0]))
    assert realness_of(m, guided) > realness_of(m, plain) + 0.01
    m.config.adversarial.guidance_scale = 30.0  # the config default applies without override
    assert np.array_equal(np.asarray(m.generate(prompts, seed=3)[0]), np.asarray(guided[0]))

    # the exported bundle: stock pipeline + discriminators/ folder gives the same images
    facts = export(m, tmp_path / "bundle")
    assert facts["discriminators"] == ["diffusion"]
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "bundle")
    guidance = adversarial.load(tmp_path / "bundle")
    assert guidance.scale == 30.0
    with guidance.on(pipe) as kwargs:
        theirs = pipe(prompts, num_inference_steps=4, guidance_scale=m.config.sampler.guidance_scale,
                      height=16, width=16, generator=torch.Generator().manual_seed(3), **kwargs).images
    np.testing.assert_allclose(np.asarray(theirs[0], float), np.asarray(guided[0], float), atol=1)
    assert adversarial.load(tmp_path) is None  # a folder without discriminators


def test_guidance_without_a_discriminator_says_how_to_fix():
    with pytest.raises(ValueError, match="diffusion_discriminator.enabled=true"):
        build().generate(["a red shape"], seed=0, discriminator_guidance=1.0)


def test_gan_diffusion_phase_trains_through_the_runner(small_world, tmp_path, monkeypatch):
    """A short GAN phase through the real runner: its own D optimizer, D loss logged and
    moving, D weights changed, the frozen autoencoder untouched."""
    import lightning as L

    from mmtrain.curriculum.runner import build_families, run_curriculum
    from mmtrain.run.directory import run_dir

    monkeypatch.chdir(tmp_path)
    phase = ("[{name: gan, families: [t2i], steps: 6, freeze: [t2i.vae], "
             "loss_weights: {t2i: {diffusion: 1.0, adversarial: 0.1}}, "
             "optimizer: {name: adamw, lr: 1.0e-3}}]")
    run = validate(compose("+recipe=t2i_pretrain", "name=gan", *SMALL_WORLD, f"phases={phase}",
                           DIFF_D, "model.t2i.adversarial.lr=1.0e-3", "data.batch_size=4",
                           "trainer.log_every_n_steps=1", "callbacks.progress_bar=false",
                           "model.t2i.sampler.steps=2", "model.t2i.samples_per_prompt=1"))
    L.seed_everything(run.seed, workers=True, verbose=False)
    before = build_families(run)["t2i"]  # the run's initial weights (same seed, same order)
    joint = run_curriculum(run, run_dir(run))
    after = joint.families["t2i"]
    assert all(torch.equal(a, b) for a, b in zip(before.vae.state_dict().values(),
                                                 after.vae.state_dict().values(), strict=True))
    # every conv weight of the discriminator trained (its last biases get no gradient
    # from the hinge loss while every logit is inside the margin: +1 real, -1 fake)
    moved = [not torch.equal(a, b) for a, b in zip(before.diffusion_discriminator.parameters(),
                                                   after.diffusion_discriminator.parameters(), strict=True)
             if a.dim() > 1]
    assert moved and all(moved)
    with open(tmp_path / "runs" / "gan" / "metrics" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    d_losses = [float(r["train/t2i/d_adversarial"]) for r in rows if r.get("train/t2i/d_adversarial")]
    g_losses = [float(r["train/t2i/adversarial"]) for r in rows if r.get("train/t2i/adversarial")]
    assert len(d_losses) >= 5 and len(g_losses) >= 5
    assert max(d_losses) - min(d_losses) > 1e-3  # the discriminator's loss moves
