"""`latents.json`, written next to latent shards by encode-latents, and the fingerprints
that tie the latents to the autoencoder (and text encoder, tokenizer) that produced them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from mmtrain.data.manifest import read_versioned_json
from mmtrain.files import fsync_path

FILENAME = "latents.json"
FORMAT = "mmtrain.latents"
VERSION = 1
SHARD_PATTERN = "latents-{:06d}.tar"


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's state_dict: every tensor by sorted name, with its shape and
    values (floating point as float32 little-endian, so the dtype a copy was loaded in
    does not matter, only its values). Equal weights <=> equal fingerprints."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach()
        if hasattr(t, "full_tensor"):  # a DTensor (FSDP2): the whole tensor, every rank
            t = t.full_tensor()
        t = (t.float() if t.is_floating_point() else t).cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{str(t.dtype)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def autoencoder_kind(vae) -> str:
    """`kl`, `vq` or `vq2`: the t2i `autoencoder.kind` of an autoencoder, by its class."""
    from diffusers import AutoencoderKL, VQModel

    from mmtrain.families.t2i.autoencoders.models import VQVAE2

    for kind, cls in (("kl", AutoencoderKL), ("vq", VQModel), ("vq2", VQVAE2)):
        if isinstance(vae, cls):
            return kind
    raise ValueError(f"{type(vae).__name__} is not a text-to-image autoencoder "
                     "(AutoencoderKL, VQModel or VQVAE2)")


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides the token ids: the fast tokenizer's model, normalizer and
    post-processor (not its transient padding/truncation state), the context length and
    the padding token."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("padding", None)
    state.pop("truncation", None)
    payload = {"tokenizer": state, "model_max_length": tokenizer.model_max_length,
               "pad_token": str(tokenizer.pad_token), "padding_side": tokenizer.padding_side}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class LatentsManifestError(ValueError):
    pass


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """A directory's latents.json; None when there is none."""
    return read_versioned_json(Path(directory) / FILENAME, FORMAT, VERSION,
                               LatentsManifestError)


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replaces latents.json atomically (temp file, fsync, rename)."""
    path = Path(directory) / FILENAME
    tmp = path.with_name(f".{FILENAME}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(directory)
