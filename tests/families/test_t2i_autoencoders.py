"""The text-to-image family's autoencoder kinds (kl, vq, vq2): the VQ models, the
autoencoder losses, diffusion on their latents, export, and that they learn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmtrain.config.validate import validate
from mmtrain.data.synth import scenes as world
from mmtrain.families.t2i import autoencoders
from mmtrain.families.t2i.autoencoders.models import VQVAE2, VQAutoencoder
from mmtrain.families.t2i.export import export
from mmtrain.families.t2i.module import TextToImage
from tests.conftest import compose

KIND = {"kl": [], "vq": ["model.t2i.autoencoder.kind=vq"],
        "vq2": ["model.t2i.autoencoder.kind=vq2", "model.t2i.autoencoder.latent_channels=8"]}


def tiny(kind: str, *overrides: str):
    return validate(compose("+recipe=t2i_pretrain", "model.t2i.sampler.steps=3",
                            *KIND[kind], *overrides)).model["t2i"]


def build(kind: str, *overrides: str, seed: int = 0) -> TextToImage:
    torch.manual_seed(seed)
    return TextToImage(tiny(kind, *overrides))


def scenes(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """n random synthetic scenes as pixels in [-1, 1]."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: list(xs)[rng.integers(len(xs))]  # noqa: E731
    images = [world.render_scene(world.Scene(pick(world.COLOURS), pick(world.SHAPES),
                                             pick(world.SIZES), pick(world.POSITIONS),
                                             pick(world.BACKGROUNDS)), size) for _ in range(n)]
    return torch.from_numpy(np.stack(images).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)


def test_vq_models_decode_like_the_pipeline_and_round_trip(tmp_path):
    torch.manual_seed(0)
    x = scenes(2, 0)
    for model in (VQAutoencoder(block_out_channels=(16,), latent_channels=4, norm_num_groups=4,
                                sample_size=16),
                  VQVAE2(block_out_channels=(16, 16), latent_channels=8, norm_num_groups=4,
                         sample_size=16)):
        z = model.encode(x).latents
        # StableDiffusionPipeline's call: decode(latents, return_dict=False, generator=...)
        image = model.decode(z, return_dict=False, generator=torch.Generator())[0]
        assert image.shape == x.shape and torch.equal(image, model(x).sample)
        model.save_pretrained(tmp_path / type(model).__name__)
        loaded = autoencoders.load(tmp_path / type(model).__name__)
        assert type(loaded) is type(model)
        assert torch.equal(loaded(x).sample, model(x).sample)
    # VQ-VAE-2's latent: [bottom ; top repeated 2x] on the bottom grid (factor 2 here)
    assert z.shape == (2, 8, 8, 8) and torch.equal(z[:, 4:, ::2, ::2], z[:, 4:, 1::2, 1::2])


def test_vq_commit_loss_trains_the_codebook():
    m = build("vq2")
    out = m.losses({"pixels": scenes(4, 0), "captions": [""] * 4}, {"autoencoder"},
                   torch.Generator().manual_seed(0))
    out["autoencoder"].backward()
    for codebook in (m.vae.quantize.embedding, m.vae.top_quantize.embedding):
        assert codebook.weight.grad.abs().sum() > 0


def test_kl_autoencoder_loss_is_unchanged():
    """kind=kl without the new losses computes exactly the former L1 + kl_weight * KL."""
    m = build("kl")
    pixels = scenes(4, 1)
    ours = m.losses({"pixels": pixels, "captions": [""] * 4}, {"autoencoder"},
                    torch.Generator().manual_seed(7))
    posterior = m.vae.encode(pixels).latent_dist
    recon = m.vae.decode(posterior.sample(torch.Generator().manual_seed(7))).sample
    former = F.l1_loss(recon, pixels) + m.config.autoencoder.kl_weight * posterior.kl().mean()
    assert set(ours) == {"autoencoder"} and torch.equal(ours["autoencoder"], former)


def test_perceptual_loss_trains_the_autoencoder_and_stays_out_of_checkpoints():
    m = build("vq")
    keys = set(m.state_dict())
    pixels = scenes(4, 3)
    rng = torch.get_rng_state()
    out = m.losses({"pixels": pixels, "captions": [""] * 4}, {"autoencoder_perceptual"},
                   torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)  # built from its own RNG state
    assert set(out) == {"autoencoder_perceptual"} and out["autoencoder_perceptual"] > 0
    out["autoencoder_perceptual"].backward()
    assert m.vae.decoder.conv_out.weight.grad.abs().sum() > 0
    assert set(m.state_dict()) == keys  # the fixed feature network is not a submodule
    same = m.losses({"pixels": pixels, "captions": [""] * 4}, {"autoencoder_perceptual"}, None)
    assert torch.equal(same["autoencoder_perceptual"], out["autoencoder_perceptual"])
    assert autoencoders.perceptual(m, pixels, pixels).item() == 0.0


def test_latent_batches_refuse_autoencoder_losses():
    m = build("vq")
    with pytest.raises(ValueError, match="needs images"):
        m.losses({"latents": torch.zeros(2, 4, 16, 16), "captions": ["", ""]},
                 {"autoencoder_perceptual"}, torch.Generator())


def test_diffusion_on_vq_latents_samples_and_exports_a_pipeline_that_loads_without_mmtrain(tmp_path):
    prompts, expected = ["a red shape", "a blue shape"], {}
    for kind in ("vq", "vq2"):
        m = build(kind)
        pixels = scenes(4, 2)
        batch = {"pixels": pixels, "captions": ["a red circle"] * 4}
        m.on_phase_start({"diffusion"})
        loss = m.losses(batch, {"diffusion"}, torch.Generator().manual_seed(0))["diffusion"]
        loss.backward()
        assert m.unet.conv_in.weight.grad.abs().sum() > 0 and m.latent_scale > 0
        assert m.vae.encoder.conv_in.weight.grad is None  # encoded without gradients
        facts = export(m, tmp_path / kind)
        assert facts["autoencoder"] == type(m.vae).__name__
        index = json.loads((tmp_path / kind / "model_index.json").read_text())
        assert index["vae"] == [autoencoders.SHIPPED_MODULE, type(m.vae).__name__]
        expected[kind] = np.stack([np.asarray(i) for i in m.generate(prompts, seed=4)])
    # a fresh process where mmtrain cannot be imported loads both with stock diffusers
    script = textwrap.dedent(f"""
        import sys; sys.modules["mmtrain"] = None
        import numpy as np, torch
        from diffusers import DiffusionPipeline
        for kind in ("vq", "vq2"):
            pipe = DiffusionPipeline.from_pretrained("{tmp_path}/" + kind, trust_remote_code=True)
            images = pipe({prompts!r}, num_inference_steps=3, guidance_scale=4.0, height=16,
                          width=16, generator=torch.Generator().manual_seed(4)).images
            np.save("{tmp_path}/" + kind + ".npy", np.stack([np.asarray(i) for i in images]))
    """)
    env = os.environ | {"HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind, images in expected.items():
        assert np.array_equal(np.load(tmp_path / f"{kind}.npy"), images), kind


def psnr(vae, pixels: torch.Tensor) -> float:
    with torch.no_grad():
        recon = vae(pixels).sample.clamp(-1, 1)
    mse = ((recon - pixels) / 2).pow(2).mean((1, 2, 3))
    return (10 * torch.log10(1 / mse)).mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vq", "vq2"])
def test_vq_autoencoders_learn_to_reconstruct_scenes(kind):
    """150 steps of the `autoencoder` loss on random synthetic scenes: the held-out PSNR
    gains over 4 dB on the untrained autoencoder (measured: 9.3 -> 16.6 dB for vq,
    9.6 -> 16.8 dB for vq2)."""
    m = build(kind)
    held_out = scenes(64, seed=99)
    untrained = psnr(m.vae, held_out)
    m.on_phase_start({"autoencoder"})
    opt = torch.optim.AdamW(m.vae.parameters(), lr=5e-3)
    for step in range(150):
        loss = m.losses({"pixels": scenes(16, step), "captions": [""] * 16}, {"autoencoder"},
                        torch.Generator().manual_seed(step))["autoencoder"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = psnr(m.vae, held_out)
    assert trained > untrained + 4.0, (untrained, trained)


@pytest.mark.slow
def test_vqgan_autoencoder_phase_learns_through_the_runner(small_world, tmp_path, monkeypatch):
    """recipes/t2i_vqgan.yaml's autoencoder phase (L1 + codebook + perceptual + patch GAN
    with the adaptive weight) through the real runner: the autoencoder learns, the
    discriminator trains from disc_start on."""
    import csv

    import lightning as L

    from mmtrain.curriculum.runner import build_families, run_curriculum
    from mmtrain.run.directory import run_dir
    from tests.conftest import SMALL_WORLD

    monkeypatch.chdir(tmp_path)
    run = validate(compose("+recipe=t2i_vqgan", "name=vqgan", *SMALL_WORLD, "data.batch_size=16",
                           "model.t2i.adversarial.disc_start=40", "trainer.log_every_n_steps=5",
                           "callbacks.progress_bar=false", "model.t2i.samples_per_prompt=1"))
    run.phases = run.phases[:1]  # the autoencoder phase, as the recipe weights it
    run.phases[0].steps = 120
    assert set(run.phases[0].loss_weights["t2i"]) == set(autoencoders.LOSSES)
    L.seed_everything(run.seed, workers=True, verbose=False)
    held_out = scenes(64, seed=99)
    untrained = psnr(build_families(run)["t2i"].vae, held_out)
    joint = run_curriculum(run, run_dir(run))
    trained = psnr(joint.families["t2i"].vae, held_out)
    assert trained > untrained + 4.0, (untrained, trained)
    with open(tmp_path / "runs" / "vqgan" / "metrics" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/t2i/d_autoencoder_adversarial")]
    early = [float(r["train/t2i/autoencoder_adversarial"]) for r in rows if float(r["step"]) < 40]
    late = [float(r["train/t2i/d_autoencoder_adversarial"]) for r in rows if float(r["step"]) >= 60]
    assert early and all(v == 0.0 for v in early)  # nothing before disc_start
    assert late and min(late) < 1.9  # the hinge loss left 2.0: the discriminator separates
