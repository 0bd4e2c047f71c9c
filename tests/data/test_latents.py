"""Latent shards for the text-to-image family: encode-latents writes what the VAE and text
encoder compute, training on them is the same math as training on pixels, and latents of
another autoencoder (or without latents.json) are refused before training."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtrain.config.validate import validate
from mmtrain.data.latents.encode import EncodeError, EncodeOptions, encode_latents
from mmtrain.data.latents.manifest import module_fingerprint, read_manifest
from mmtrain.data.shards import read_shard
from mmtrain.data.sources import DataError, expand_shards
from mmtrain.data.synth.writer import write_world
from mmtrain.families.t2i import batch as t2i_batch
from mmtrain.families.t2i.export import export
from mmtrain.families.t2i.module import TextToImage
from tests.conftest import compose, run_mmtrain

SCALE = 0.75  # a latent scale the bundle records, so its use can be seen


def tiny(*overrides: str) -> TextToImage:
    return TextToImage(validate(compose("+recipe=t2i_pretrain", *overrides)).model["t2i"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    write_world(root, kinds=("scenes",), train_samples=40, val_samples=16, shard_size=16,
                progress=False)
    return root / "scenes"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = tiny()
    model.latent_scale.fill_(SCALE)
    out = tmp_path_factory.mktemp("export") / "t2i"
    export(model, out)
    return out


def encode(bundle: Path, shards: str, out: Path, **options) -> dict:
    return encode_latents(EncodeOptions(bundle=str(bundle), shards=shards, out=str(out),
                                        batch_size=8, shard_size=16, progress=False,
                                        **options))


@pytest.fixture(scope="module")
def latents(world, bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("latents") / "train"
    encode(bundle, str(world / "train-*.tar"), out, std=True)
    return out


@pytest.fixture(scope="module")
def model(bundle) -> TextToImage:
    """The bundle's model, in a phase that trains the UNet on the diffusion loss."""
    model = tiny(f"model.t2i.pretrained_path={bundle}")
    frozen_towers(model)
    return model


def frozen_towers(model: TextToImage) -> None:
    model.requires_grad_(False)
    model.unet.requires_grad_(True)
    model.on_phase_start({"diffusion"})


def pairs(world: Path, latents: Path, decode, n: int = 8) -> tuple[dict, dict]:
    """The same n samples as an image batch and a latent batch."""
    images = [raw for _, raw in read_shard(str(world / "train-000000.tar"))][:n]
    encoded = [raw for _, raw in read_shard(str(latents / "latents-000000.tar"))][:n]
    assert [r["__key__"] for r in images] == [r["__key__"] for r in encoded]
    return (t2i_batch.collate([decode(r) for r in images]),
            t2i_batch.collate([decode(r) for r in encoded]))


def test_latent_shards_hold_what_the_vae_and_text_encoder_compute(world, latents, model):
    manifest = read_manifest(latents)
    assert manifest["complete"] and manifest["samples"] == 40 and manifest["skipped"] == {}
    assert [s["samples"] for s in manifest["shards"]] == [16, 16, 8]
    assert manifest["autoencoder"]["sha256"] == module_fingerprint(model.vae)
    assert manifest["text_encoder"]["sha256"] == module_fingerprint(model.text_encoder)
    assert manifest["autoencoder"]["scaling_factor"] == pytest.approx(SCALE)
    assert manifest["resolution"] == 16 and manifest["latent"]["shape"] == [4, 16, 16]
    raw = next(s for _, s in read_shard(str(latents / "latents-000000.tar")))
    assert sorted(k for k in raw if not k.startswith("__")) == \
        ["json", "latent.npy", "latent_std.npy", "text.npy", "txt"]
    arrays = {k: np.load(io.BytesIO(raw[k])) for k in raw if k.endswith(".npy")}
    assert {k: (a.dtype, a.shape) for k, a in arrays.items()} == {
        "latent.npy": (np.float16, (4, 16, 16)), "latent_std.npy": (np.float16, (4, 16, 16)),
        "text.npy": (np.float16, (32, 64))}
    assert json.loads(raw["json"])["shard"].endswith("train-000000.tar")
    # 2 KiB of float16 per latent array at 16 px (4 x 16 x 16), 4 KiB of text states
    assert manifest["bytes_per_sample"] == sum(s["bytes"] for s in manifest["shards"]) / 40

    pixels, stored = pairs(world, latents, model.sample_decoder())
    with torch.no_grad():
        posterior = model.vae.encode(pixels["pixels"]).latent_dist
        text = model.encode_text(pixels["captions"])
    assert stored["captions"] == pixels["captions"]
    for ours, theirs in ((posterior.mean, stored["latents"]), (posterior.std, stored["latent_std"]),
                         (text, stored["text"])):
        assert theirs.dtype == torch.float16
        torch.testing.assert_close(theirs.float(), ours, rtol=1e-3, atol=1e-3)


def test_training_from_latents_is_the_same_math_as_from_pixels(world, latents, model):
    """A few AdamW steps of the UNet on the same batch with the same per-step generator:
    the losses agree to float16 precision (posterior draw, caption dropout and the empty
    caption's text states included)."""
    pixels, stored = pairs(world, latents, model.sample_decoder())
    runs = diffusion_losses(model, {"pixels": pixels, "latents": stored})
    assert runs["latents"] == pytest.approx(runs["pixels"], rel=1e-3)
    assert float(model.latent_scale) == pytest.approx(SCALE)  # the bundle's, not measured


def test_mean_only_latents_and_no_text(world, bundle, model, tmp_path):
    manifest = encode(bundle, str(world / "train-000000.tar"), tmp_path / "lean", text=False)
    assert manifest["latent"]["posterior"] == "mean" and manifest["text"] is None
    raw = next(s for _, s in read_shard(str(tmp_path / "lean" / "latents-000000.tar")))
    assert "latent_std.npy" not in raw and "text.npy" not in raw
    model.check_source("lean", expand_shards(str(tmp_path / "lean"), what="t"))
    batch = t2i_batch.collate([model.sample_decoder()(raw)])
    assert set(batch) == {"latents", "captions"}
    assert torch.isfinite(model.losses(batch, {"diffusion"}, torch.Generator())["diffusion"])


def test_another_autoencoder_is_refused_naming_both_hashes(latents, bundle):
    torch.manual_seed(1)
    other = tiny()  # random init: not the bundle's VAE
    frozen_towers(other)
    with pytest.raises(DataError) as err:
        other.check_source("lat", expand_shards(str(latents), what="t"))
    msg = str(err.value)
    manifest = read_manifest(latents)
    assert manifest["autoencoder"]["sha256"] in msg and module_fingerprint(other.vae) in msg
    assert "encode-latents" in msg and f"model.t2i.pretrained_path={bundle}" in msg


def test_other_refusals_name_the_fix(latents, model, tmp_path):
    shards = expand_shards(str(latents), what="t")
    # latent shards without latents.json
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(shards[0], bare)
    with pytest.raises(DataError, match="no latents.json.*encode-latents"):
        model.check_source("bare", expand_shards(str(bare), what="t"))
    # an interrupted encode
    unfinished = tmp_path / "unfinished"
    shutil.copytree(latents, unfinished)
    manifest = json.loads((unfinished / "latents.json").read_text())
    (unfinished / "latents.json").write_text(json.dumps(dict(manifest, complete=False)))
    with pytest.raises(DataError, match="unfinished.*rerun the same command"):
        model.check_source("u", expand_shards(str(unfinished), what="t"))
    # the autoencoder loss needs pixels
    model.on_phase_start({"autoencoder", "diffusion"})
    with pytest.raises(DataError, match="`autoencoder` loss, which needs images"):
        model.check_source("lat", shards)
    # stored text states cannot train the text encoder
    model.on_phase_start({"diffusion"})
    model.text_encoder.requires_grad_(True)
    try:
        with pytest.raises(DataError, match="cannot train the text encoder.*--no-text"):
            model.check_source("lat", shards)
    finally:
        model.text_encoder.requires_grad_(False)
    # another resolution
    other = copy.deepcopy(model)
    other.config = copy.deepcopy(model.config)
    other.config.resolution = 32
    with pytest.raises(DataError, match="encoded at 16 px"):
        other.check_source("lat", shards)
    model.check_source("lat", shards)  # and the right model passes
    # a batch never mixes image and latent samples
    image = {"pixels": torch.zeros(3, 16, 16), "caption": "a"}
    latent = {"latents": torch.zeros(4, 16, 16), "caption": "a"}
    with pytest.raises(DataError, match="mixes samples"):
        t2i_batch.collate([latent, image])


def test_an_interrupted_encode_resumes_to_the_same_shards(world, bundle, latents, tmp_path,
                                                          monkeypatch):
    from mmtrain.data.latents import encode as encode_module

    real, calls = encode_module.encode_batch, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # after the first shard (16 samples, 2 batches of 8) and more
            raise KeyboardInterrupt
        yield from real(*args, **kwargs)

    out = tmp_path / "train"
    monkeypatch.setattr(encode_module, "encode_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        encode(bundle, str(world / "train-*.tar"), out, std=True)
    partial = read_manifest(out)
    assert not partial["complete"] and [s["samples"] for s in partial["shards"]] == [16]
    assert sorted(p.name for p in out.glob("*.tar")) == ["latents-000000.tar"]  # no temp left
    monkeypatch.setattr(encode_module, "encode_batch", real)
    done = encode(bundle, str(world / "train-*.tar"), out, std=True)
    assert done["complete"]
    assert [s["sha256"] for s in done["shards"]] == \
        [s["sha256"] for s in read_manifest(latents)["shards"]]
    with pytest.raises(EncodeError, match="encoded differently"):
        encode(bundle, str(world / "train-*.tar"), out, std=False)


def test_data_config_for_latents_validates():
    run = validate(compose("+recipe=t2i_pretrain", "data=latents", "data.root=/x"))
    assert run.data.sources["latents"].train == "/x/train"


RECIPE = """# @package _global_
recipe: latents_test
phases:
  - name: t2i_latents
    families: [t2i]
    steps: 4
    loss_weights: {t2i: {diffusion: 1.0}}
    freeze: [t2i.vae, t2i.text_encoder]
    optimizer: {name: adamw, lr: 1.0e-3}
"""


@pytest.mark.slow
def test_a_run_trains_from_latents_end_to_end(world, bundle, tmp_path):
    root = tmp_path / "latents"
    out = run_mmtrain("encode-latents", "--from", str(bundle.parent), "--shards",
                      str(world / "train-*.tar"), "--out", str(root / "train"),
                      "--batch-size", "8", "--shard-size", "8", "--no-progress",
                      module="mmtrain.data", cwd=tmp_path)
    assert "latents of 40 samples in 5 shard(s)" in out.stdout
    encode(bundle, str(world / "val-*.tar"), root / "val")
    conf = tmp_path / "conf" / "recipe"
    conf.mkdir(parents=True)
    (conf / "latents_test.yaml").write_text(RECIPE)
    args = ["+recipe=latents_test", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            "data=latents", f"data.root={root}", "data.num_workers=0", "data.batch_size=8",
            "data.shuffle_buffer=8", "data.val_batch_size=8", "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1", "model.t2i.sampler.steps=2",
            "model.t2i.samples_per_prompt=1", "callbacks.progress_bar=false"]
    out = run_mmtrain(*args, f"model.t2i.pretrained_path={bundle}", "name=lat", cwd=tmp_path)
    assert "run finished" in out.stdout
    run = tmp_path / "runs" / "lat"
    with open(run / "metrics" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any(r.get("val/t2i/diffusion") for r in rows)
    assert (run / "export" / "t2i" / "model_index.json").exists()
    # without the bundle the model's autoencoder is another one: refused before training
    refused = run_mmtrain(*args, "name=other", "seed=1", cwd=tmp_path, check=False)
    assert refused.returncode != 0
    assert "encoded by another autoencoder" in refused.stderr + refused.stdout


def diffusion_losses(model, batches: dict[str, dict], steps: int = 3) -> dict[str, list[float]]:
    """Per named batch: the diffusion losses of `steps` AdamW steps on a copy of `model`
    (caption dropout 0.5, so some rows use the empty caption)."""
    runs = {}
    for name, batch in batches.items():
        m = copy.deepcopy(model)
        m.config = copy.deepcopy(model.config)
        m.config.caption_dropout = 0.5
        optimizer = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        losses = []
        for step in range(steps):
            loss = m.losses(batch, {"diffusion"}, torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            loss["diffusion"].backward()
            optimizer.step()
            losses.append(loss["diffusion"].item())
        runs[name] = losses
    return runs
