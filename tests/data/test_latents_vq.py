"""encode-latents with VQ bundles (`vq`: diffusers' VQModel, `vq2`: the two-level VQ-VAE-2):
the shards hold the encoder's output before quantization, exactly what the t2i family's
diffusion loss computes from pixels, training on them is the same math, and the kind is
recorded in latents.json and checked."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mmtrain.data.latents.encode import EncodeError
from mmtrain.data.latents.manifest import module_fingerprint, read_manifest
from mmtrain.data.shards import read_shard
from mmtrain.data.sources import DataError, expand_shards
from mmtrain.families.t2i import autoencoders
from mmtrain.families.t2i.export import export
from tests.data.test_latents import diffusion_losses, encode, frozen_towers, pairs, tiny, world  # noqa: F401 (fixtures)

SCALE = 0.5


@pytest.fixture(scope="module", params=["vq", "vq2"])
def vq(request, world, tmp_path_factory):  # noqa: F811
    """(kind, bundle, latents dir, the bundle's model in a UNet-only diffusion phase)."""
    kind = request.param
    torch.manual_seed(0)
    model = tiny(f"model.t2i.autoencoder.kind={kind}")
    model.latent_scale.fill_(SCALE)
    bundle = tmp_path_factory.mktemp(f"export-{kind}") / "t2i"
    export(model, bundle)
    out = tmp_path_factory.mktemp(f"latents-{kind}") / "train"
    encode(bundle, str(world / "train-000000.tar"), out)
    loaded = tiny(f"model.t2i.pretrained_path={bundle}")
    frozen_towers(loaded)
    return kind, bundle, out, loaded


def test_vq_latents_are_what_the_module_computes_and_train_the_same(world, vq):  # noqa: F811
    kind, bundle, out, model = vq
    assert autoencoders.CLASSES[type(model.vae).__name__] is type(model.vae)
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["samples"] == 16 and manifest["skipped"] == {}
    assert manifest["autoencoder"]["kind"] == kind
    assert manifest["autoencoder"]["sha256"] == module_fingerprint(model.vae)
    assert manifest["autoencoder"]["scaling_factor"] == pytest.approx(SCALE)
    assert manifest["latent"]["posterior"] == "pre-quantization"
    assert manifest["latent"]["shape"] == list(model.latent_shape)
    raw = next(s for _, s in read_shard(str(out / "latents-000000.tar")))
    assert "latent_std.npy" not in raw
    assert np.load(io.BytesIO(raw["latent.npy"])).shape == tuple(model.latent_shape)
    model.check_source("vq", expand_shards(str(out), what="t"))

    pixels, stored = pairs(world, out, model.sample_decoder())
    with torch.no_grad():  # what _diffusion_loss encodes from pixels (no draw for VQ)
        ours = autoencoders.encode(model.vae, pixels["pixels"], torch.Generator())
        c = model.vae.quantize.vq_embed_dim  # vq: all channels; vq2: the bottom level's
        codes = model.vae.quantize(ours[:, :c])[0]
    torch.testing.assert_close(stored["latents"].float(), ours, rtol=1e-3, atol=2e-3)
    # the codebook vectors are not what is stored: the decoder quantizes
    assert (stored["latents"][:, :c].float() - codes).abs().max() > 0.05

    runs = diffusion_losses(model, {"pixels": pixels, "latents": stored})
    assert runs["latents"] == pytest.approx(runs["pixels"], rel=1e-3)
    assert float(model.latent_scale) == pytest.approx(SCALE)


def test_vq_mismatches_are_refused(world, vq, tmp_path):  # noqa: F811
    kind, bundle, out, model = vq
    with pytest.raises(EncodeError, match=f"--with-std.*{kind}.*no posterior std"):
        encode(bundle, str(world / "train-000000.tar"), tmp_path / "std", std=True)
    torch.manual_seed(0)
    kl = tiny()  # a KL model cannot train on VQ latents (nor the other VQ kind)
    frozen_towers(kl)
    other = tiny(f"model.t2i.autoencoder.kind={'vq2' if kind == 'vq' else 'vq'}")
    frozen_towers(other)
    for wrong, want in ((kl, "kl"), (other, "vq2" if kind == "vq" else "vq")):
        with pytest.raises(DataError, match=f"from a {kind} autoencoder.*is {want}.*"
                                            f"pretrained_path={bundle}"):
            wrong.check_source("vq", expand_shards(str(out), what="t"))
