"""What the text-to-image family refuses before it trains on latent shards, each refusal
naming the fix: shards without latents.json (or an unfinished one), another resolution or
latent shape, another autoencoder, stored text states for a text encoder that trains or
differs, and the autoencoder loss (it needs pixels)."""

from __future__ import annotations

import os

from mmtrain.data.latents.manifest import (
    FILENAME,
    LatentsManifestError,
    autoencoder_kind,
    module_fingerprint,
    read_manifest,
    tokenizer_fingerprint,
)
from mmtrain.data.shards import ShardReadError, read_shard
from mmtrain.data.sources import DataError
from mmtrain.families.t2i.batch import LATENT_KEY

ENCODE = "python -m mmtrain.data encode-latents"


def is_latent_source(shards: list[str]) -> bool:
    """Whether the first sample of the source's first shard is a latent sample."""
    try:
        first = next((s for _, s in read_shard(shards[0])), None)
    except ShardReadError:
        return False  # not ours to report: the data layer refuses unreadable shards
    return first is not None and LATENT_KEY in first


def manifest_of(source: str, shards: list[str]) -> dict:
    """The one latents.json every shard of the source sits next to, complete and listing
    the shard."""
    if any(s.startswith("pipe:") for s in shards):
        raise DataError(f"source {source}: latent shards must be local files: their "
                        f"{FILENAME} (the autoencoder they were encoded with) is read from "
                        "the shards' directory, which a pipe: source does not have")
    manifests = {}
    for shard in shards:
        directory = os.path.dirname(os.path.abspath(shard))
        if directory not in manifests:
            try:
                manifests[directory] = read_manifest(directory)
            except LatentsManifestError as err:
                raise DataError(f"source {source}: {err}") from None
            if manifests[directory] is None:
                raise DataError(
                    f"source {source}: {shard} holds latent samples but {directory} has no "
                    f"{FILENAME}, so nothing says which autoencoder encoded them. Write them "
                    f"with `{ENCODE} --from BUNDLE --shards IMAGE_SHARDS --out {directory}` "
                    "(docs/latents.md), which records it")
            if not manifests[directory].get("complete"):
                raise DataError(
                    f"source {source}: {directory} holds an unfinished encode-latents run; "
                    "rerun the same command to finish it")
        names = {entry["name"] for entry in manifests[directory]["shards"]}
        if os.path.basename(shard) not in names:
            raise DataError(f"source {source}: {shard} is not listed in {directory}/{FILENAME}"
                            " (a stray or renamed shard); remove it or re-encode the directory")
    first, *rest = manifests.items()
    for directory, manifest in rest:
        for key in ("autoencoder", "text_encoder", "tokenizer", "resolution", "latent", "text"):
            if manifest.get(key) != first[1].get(key):
                raise DataError(f"source {source}: {first[0]} and {directory} hold latents "
                                f"encoded differently ({key}); use one encoding per source")
    return first[1]


def check_latent_source(module, source: str, shards: list[str], active: set[str]) -> dict | None:
    """Refuses (DataError) a latent source `module` (a TextToImage) cannot train on with
    the phase's `active` losses; returns its manifest, or None for an image source."""
    if not is_latent_source(shards):
        return None
    manifest = manifest_of(source, shards)
    where = os.path.dirname(os.path.abspath(shards[0]))
    bundle = manifest.get("bundle", {}).get("path", "?")
    if "autoencoder" in active:
        raise DataError(
            f"source {source} holds latents ({where}), but this phase trains the t2i "
            "`autoencoder` loss, which needs images: give that phase image shards "
            "(or drop the loss from its loss_weights)")
    res, cfg_res = manifest["resolution"], module.config.resolution
    shape, want = tuple(manifest["latent"]["shape"]), tuple(module.latent_shape)
    if res != cfg_res or shape != want:
        raise DataError(
            f"source {source}: its latents were encoded at {res} px (latent shape {shape}), "
            f"the model trains at model.t2i.resolution={cfg_res} (latent shape {want}). "
            f"Set model.t2i.resolution={res}, or re-encode with "
            f"`{ENCODE} --from BUNDLE --resolution {cfg_res} ...`")
    # written before the kind was recorded: KL, the only kind encode-latents wrote then
    stored_kind, kind = manifest["autoencoder"].get("kind", "kl"), autoencoder_kind(module.vae)
    if stored_kind != kind:
        raise DataError(
            f"source {source}: its latents come from a {stored_kind} autoencoder "
            f"({manifest['autoencoder']['class']}, from {bundle}), this model's t2i.vae is "
            f"{kind} ({type(module.vae).__name__}); the two latent spaces differ. Set "
            f"model.t2i.pretrained_path={bundle} to train the model the latents came from, "
            f"or re-encode them with this model's bundle (`{ENCODE} --from BUNDLE ...`)")
    theirs, ours = manifest["autoencoder"]["sha256"], module_fingerprint(module.vae)
    if theirs != ours:
        raise DataError(
            f"source {source}: its latents were encoded by another autoencoder than this "
            f"model's t2i.vae (latents: sha256 {theirs}, from {bundle}; model: sha256 {ours}). "
            "A UNet trained on them would learn a code this model's VAE does not decode. "
            f"Re-encode them with this model's bundle (`{ENCODE} --from BUNDLE --shards "
            f"{manifest['source']['pattern']} --out DIR`; `python -m mmtrain.export run=RUN` "
            f"writes the bundle), or set model.t2i.pretrained_path={bundle} to train the model "
            "the latents came from")
    if manifest.get("text") is None:
        return manifest
    trainable = [n for n, p in module.text_encoder.named_parameters() if p.requires_grad]
    if trainable:
        raise DataError(
            f"source {source}: its samples carry stored text-encoder states (text.npy), which "
            "cannot train the text encoder, but this phase trains t2i.text_encoder. Freeze it "
            "in this phase (freeze: [t2i.vae, t2i.text_encoder]), or re-encode with "
            f"`{ENCODE} ... --no-text` so captions go through the text encoder each step")
    for part, fingerprint, stored in (
            ("text_encoder", module_fingerprint(module.text_encoder), manifest["text_encoder"]),
            ("tokenizer", tokenizer_fingerprint(module.tokenizer), manifest["tokenizer"])):
        if stored["sha256"] != fingerprint:
            raise DataError(
                f"source {source}: its text states (text.npy) come from another {part} than "
                f"this model's (latents: sha256 {stored['sha256']}, from {bundle}; model: "
                f"sha256 {fingerprint}). Re-encode with this model's bundle, or with --no-text "
                f"to encode captions during training, or set model.t2i.pretrained_path={bundle}")
    return manifest
