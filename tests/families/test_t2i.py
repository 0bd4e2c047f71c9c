"""The text-to-image family: tokenizer, losses, gradients, and the stock pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from transformers import CLIPTokenizer

from mmtrain.data.synth.scenes import COLOURS, Scene, dominant_colour, render_scene
from mmtrain.families.t2i.config import NoiseConfig, SamplerConfig, T2IConfig
from mmtrain.families.t2i.export import export
from mmtrain.families.t2i.module import TextToImage

FAST = dict(sampler=SamplerConfig(name="ddim", steps=3, guidance_scale=2.0), samples_per_prompt=1)


@pytest.fixture(scope="module")
def model() -> TextToImage:
    torch.manual_seed(0)
    return TextToImage(T2IConfig(**FAST))


def batch(n: int = 4) -> dict:
    scenes = [Scene(c, "circle", "large", "center", "gray") for c in list(COLOURS)[:n]]
    pixels = [torch.from_numpy(np.asarray(render_scene(s, 32), np.float32) / 127.5 - 1)
              for s in scenes]
    return {"pixels": torch.stack(pixels).permute(0, 3, 1, 2),
            "captions": [s.caption() for s in scenes]}


def test_tokenizer_knows_the_world_and_round_trips(model, tmp_path):
    ids = model.tokenizer("a photo of a purple diamond on a white background").input_ids
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[1:-1] == [f"{w}</w>" for w in "a photo of a purple diamond on a white background".split()]
    model.tokenizer.save_pretrained(tmp_path)
    assert CLIPTokenizer.from_pretrained(tmp_path)("zebra crossing").input_ids == \
        model.tokenizer("zebra crossing").input_ids  # unknown words: byte pieces, no UNK


def test_losses_train_only_what_they_should(model):
    gen = torch.Generator().manual_seed(0)
    losses = model.losses(batch(), {"autoencoder", "diffusion"}, gen)
    assert set(losses) == {"autoencoder", "diffusion"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.latent_scale > 0  # measured on the first diffusion batch
    model.zero_grad()
    losses["diffusion"].backward()
    assert model.unet.conv_in.weight.grad.abs().sum() > 0
    assert model.text_encoder.get_input_embeddings().weight.grad.abs().sum() > 0
    assert model.vae.encoder.conv_in.weight.grad is None  # latents are encoded without grad


def test_v_prediction_and_plain_mse_are_supported():
    cfg = T2IConfig(**FAST, noise=NoiseConfig(prediction_type="v_prediction", snr_gamma=None))
    loss = TextToImage(cfg).losses(batch(2), {"diffusion"}, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss["diffusion"])


def test_export_is_a_stock_pipeline_with_identical_samples(model, tmp_path):
    facts = export(model, tmp_path / "bundle")
    assert facts["pipeline_class"] == "StableDiffusionPipeline"
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "bundle")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    ours = model.generate(["a red shape", "a blue shape"], seed=5)
    theirs = pipe(["a red shape", "a blue shape"], num_inference_steps=3, guidance_scale=2.0,
                  height=32, width=32, generator=torch.Generator().manual_seed(5)).images
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_export_bytes_do_not_depend_on_tokenizer_use(tmp_path):
    from mmtrain.files import sha256_file

    torch.manual_seed(0)
    fresh = TextToImage(T2IConfig(**FAST))
    export(fresh, tmp_path / "a")
    fresh.encode_text(["a red circle"])  # pads and truncates through the fast tokenizer
    export(fresh, tmp_path / "b")
    for name in ("tokenizer/tokenizer.json", "unet/diffusion_pytorch_model.safetensors"):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name), name


def test_pretrained_path_loads_a_local_pipeline_folder(model, tmp_path):
    export(model, tmp_path / "sd")
    loaded = TextToImage(T2IConfig(**FAST, pretrained_path=str(tmp_path / "sd")))
    assert float(loaded.latent_scale) == float(model.latent_scale)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(model, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_evaluate_scores_colour_and_draws_a_grid(model):
    metrics, media = model.evaluate(seed=0)
    assert 0.0 <= metrics["colour_match"] <= 1.0
    assert media["samples"].size == (150 + 64, 64 * 6)  # a labelled row per prompt


def test_dominant_colour_reads_rendered_scenes():
    for colour in COLOURS:
        assert dominant_colour(render_scene(Scene(colour, "triangle", "small", "left", "white"), 32)) == colour


def test_config_defaults_match_the_tiny_yaml():
    from omegaconf import OmegaConf

    from tests.conftest import REPO
    tiny = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/t2i/tiny.yaml"))
    assert set(tiny) == {f.name for f in dataclasses.fields(T2IConfig)}


def test_ema_weights_sample_and_survive_a_state_dict_round_trip():
    torch.manual_seed(0)
    m = TextToImage(T2IConfig(**FAST))
    m.after_optimizer_step({"diffusion"})  # the EMA starts from the current weights
    before = m.generate(["a red shape"], seed=0)[0]
    with torch.no_grad():
        for p in m.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.after_optimizer_step({"autoencoder"})  # no diffusion: no update
    assert np.array_equal(np.asarray(m.generate(["a red shape"], seed=0)[0]), np.asarray(before))
    m.after_optimizer_step({"diffusion"})
    moved = m.generate(["a red shape"], seed=0)[0]
    assert not np.array_equal(np.asarray(moved), np.asarray(before))
    torch.manual_seed(1)
    other = TextToImage(T2IConfig(**FAST))
    other.load_state_dict(m.state_dict())
    assert other.ema.optimization_step == 2
    assert np.array_equal(np.asarray(other.generate(["a red shape"], seed=0)[0]),
                          np.asarray(moved))
