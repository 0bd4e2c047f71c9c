"""Encodes image+caption shards once through a text-to-image bundle's autoencoder (and
text encoder) into latent shards, so training skips the JPEG decode and the VAE pass.

Per sample: `latent.npy` (float16: a KL autoencoder's posterior mean, or a VQ
autoencoder's encoder output before quantization, which is what the t2i family's diffusion
loss trains on), `latent_std.npy` (float16 posterior std, KL with `std=True`), `text.npy` (float16 text-encoder hidden states, padding positions
included, with `text=True`), `txt` (the caption) and `json` (source shard and key).
`latents.json` records the fingerprints of what produced them (manifest.py).

Shards are written to a temp name, fsynced and renamed; latents.json is rewritten after
every finished shard with the source position after its last sample, so rerunning the
same command after a kill continues there and writes the same shards a straight run would.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

import mmtrain
from mmtrain.data.latents.manifest import (
    FILENAME,
    FORMAT,
    SHARD_PATTERN,
    VERSION,
    autoencoder_kind,
    module_fingerprint,
    read_manifest,
    tokenizer_fingerprint,
    write_manifest,
)
from mmtrain.data.shards import BadSample, ShardReadError, read_shard
from mmtrain.data.sources import expand_shards
from mmtrain.families.t2i import batch as t2i_batch
from mmtrain.files import fsync_path

log = logging.getLogger(__name__)
LOCK = ".latents.lock"


class EncodeError(Exception):
    """A user error (bad bundle, occupied output): the CLI prints it and exits with 2."""


@dataclass
class EncodeOptions:
    bundle: str  # a t2i export bundle, an export folder holding t2i/, or a run directory
    shards: str  # image+caption shards: a directory, glob, brace range or pipe:
    out: str
    batch_size: int = 32
    device: str | None = None  # None: cuda when available, else cpu
    shard_size: int = 1000
    text: bool = True  # store the text encoder's hidden states
    std: bool = False  # store the posterior std too (the exact pixel-path distribution)
    resolution: int | None = None  # None: the bundle's
    progress: bool = True


@dataclass
class Parts:
    path: Path
    vae: torch.nn.Module
    text_encoder: torch.nn.Module | None
    tokenizer: object | None
    facts: dict  # the bundle's manifest.json "artifact" entry, if any
    source: dict  # the bundle's manifest.json "source" entry, if any


def find_bundle(path: str | os.PathLike) -> Path:
    """A t2i bundle folder (vae/, text_encoder/, tokenizer/), also found inside an export
    folder (t2i/) or a run directory (export/t2i/)."""
    root = Path(path).expanduser()
    for candidate in (root, root / "t2i", root / "export" / "t2i"):
        if (candidate / "vae" / "config.json").is_file():
            return candidate.resolve()
    raise EncodeError(
        f"{path} is not a text-to-image bundle: no vae/config.json there (nor under t2i/ or "
        "export/t2i/). Export a run with `python -m mmtrain.export run=runs/<name>` and pass "
        "runs/<name>/export/t2i, or a diffusers pipeline folder")


def load_parts(path: str | os.PathLike, *, text: bool, device: torch.device) -> Parts:
    from transformers import CLIPTextModel, CLIPTokenizer

    from mmtrain.families.t2i import autoencoders

    bundle = find_bundle(path)
    try:  # any kind (kl, vq, vq2) by its config's class, with the family's own classes
        vae = autoencoders.load(bundle / "vae")
    except ValueError as err:
        raise EncodeError(str(err)) from None
    text_encoder = tokenizer = None
    if text:
        if not (bundle / "text_encoder").is_dir() or not (bundle / "tokenizer").is_dir():
            raise EncodeError(f"{bundle} has no text_encoder/ or tokenizer/; pass --no-text "
                              "to store latents only")
        text_encoder = CLIPTextModel.from_pretrained(bundle / "text_encoder",
                                                     local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(bundle / "tokenizer", local_files_only=True)
    manifest = {}
    if (bundle / "manifest.json").is_file():
        manifest = json.loads((bundle / "manifest.json").read_text())
    for module in (vae, text_encoder):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    return Parts(bundle, vae, text_encoder, tokenizer, manifest.get("artifact", {}),
                 manifest.get("source", {}))


def header(parts: Parts, opts: EncodeOptions, shards: list[str]) -> dict:
    """Everything that defines the encoding; a rerun continues only if it is unchanged."""
    vae = parts.vae
    resolution = opts.resolution or parts.facts.get("resolution") or vae.config.sample_size
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise EncodeError(f"resolution {resolution} is not a multiple of the autoencoder's "
                          f"downsampling factor {factor}")
    side = resolution // factor
    kind = autoencoder_kind(vae)
    if kind != "kl" and opts.std:
        raise EncodeError(f"--with-std: the bundle's autoencoder is {kind} "
                          f"({type(vae).__name__}), which has no posterior std (its latents "
                          "are deterministic); drop --with-std")
    if kind == "vq2" and side % 2:
        raise EncodeError(f"resolution {resolution} gives a {side}x{side} latent grid; the "
                          f"two-level VQ autoencoder needs an even grid (a multiple of "
                          f"{2 * factor} px)")
    out = {
        "format": FORMAT, "version": VERSION,
        "bundle": {"path": str(parts.path), "source": parts.source},
        "resolution": int(resolution),
        "autoencoder": {"sha256": module_fingerprint(vae), "class": type(vae).__name__,
                        "kind": kind,
                        "scaling_factor": float(vae.config.scaling_factor),
                        "latent_channels": vae.config.latent_channels,
                        "downsampling_factor": factor},
        "latent": {"shape": [vae.config.latent_channels, side, side], "dtype": "float16",
                   "posterior": ("pre-quantization" if kind != "kl" else
                                 "mean+std" if opts.std else "mean")},
        "text_encoder": None, "tokenizer": None, "text": None,
        "source": {"pattern": opts.shards, "shards": shards},
        "shard_size": opts.shard_size,
    }
    if parts.text_encoder is not None:
        te, tok = parts.text_encoder, parts.tokenizer
        out["text_encoder"] = {"sha256": module_fingerprint(te), "class": type(te).__name__}
        out["tokenizer"] = {"sha256": tokenizer_fingerprint(tok),
                            "model_max_length": tok.model_max_length}
        out["text"] = {"shape": [tok.model_max_length, te.config.hidden_size],
                       "dtype": "float16"}
    return out


_IDENTITY = ("format", "resolution", "autoencoder", "latent", "text_encoder", "tokenizer",
             "text", "source", "shard_size")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class _HashingFile:
    def __init__(self, f) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)


class ShardSink:
    """Writes samples into latents-NNNNNN.tar files of `size` samples each (temp name,
    fsync, rename), publishing each finished shard in latents.json."""

    def __init__(self, out: Path, manifest: dict, size: int) -> None:
        self.out, self.manifest, self.size = out, manifest, size
        self.tar = self.file = self.hasher = None
        self.count = 0

    def _open(self) -> None:
        import webdataset as wds

        name = SHARD_PATTERN.format(len(self.manifest["shards"]))
        self.tmp = self.out / f".{name}.tmp"
        self.file = open(self.tmp, "wb")
        self.hasher = _HashingFile(self.file)
        # fixed mtime/user/group: the tar bytes depend only on the samples
        self.tar = wds.TarWriter(self.hasher, encoder=False, mtime=0, user="mmtrain",
                                 group="mmtrain")
        self.name, self.count = name, 0

    def write(self, sample: dict, position: tuple[int, int], counts: dict) -> None:
        if self.tar is None:
            self._open()
        self.tar.write(sample)
        self.count += 1
        if self.count == self.size:
            self.close(position, counts)

    def close(self, position: tuple[int, int] | None, counts: dict) -> None:
        """Publishes the open shard; `position`: the source (shard, sample) index of its
        last sample (None: the source is done)."""
        if self.tar is not None:
            self.tar.close()  # also closes the file it was given
            fsync_path(self.tmp)
            os.replace(self.tmp, self.out / self.name)
            fsync_path(self.out)
            self.manifest["shards"].append({
                "name": self.name, "samples": self.count,
                "bytes": (self.out / self.name).stat().st_size,
                "sha256": self.hasher.sha.hexdigest()})
            self.tar = None
        m = self.manifest
        m["samples"] = sum(s["samples"] for s in m["shards"])
        m["bytes"] = sum(s["bytes"] for s in m["shards"])
        m["bytes_per_sample"] = round(m["bytes"] / m["samples"], 1) if m["samples"] else None
        m.update(counts)
        m["resume"] = None if position is None else [position[0], position[1] + 1]
        m["complete"] = position is None
        write_manifest(self.out, m)

    def abandon(self) -> None:
        if self.tar is not None:
            try:
                self.tar.close()
            finally:
                self.tar = None
                self.tmp.unlink(missing_ok=True)


def _raw_samples(shards: list[str], start: tuple[int, int],
                 unreadable: list[str]) -> Iterator[tuple[tuple[int, int], dict]]:
    for s in range(start[0], len(shards)):
        try:
            for index, raw in read_shard(shards[s], start[1] if s == start[0] else 0):
                yield (s, index), raw
        except ShardReadError as err:
            log.warning("%s: skipping the rest of the shard (%s)", shards[s], err.cause)
            if shards[s] not in unreadable:  # a resumed run may meet it again
                unreadable.append(shards[s])


def encode_latents(opts: EncodeOptions) -> dict:
    """Writes `opts.out`; returns its latents.json. Reruns continue an unfinished run of
    the same command and return a finished one as it is."""
    if opts.batch_size < 1 or opts.shard_size < 1:
        raise EncodeError("--batch-size and --shard-size must be >= 1")
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shards = expand_shards(opts.shards, what="--shards")
    parts = load_parts(opts.bundle, text=opts.text, device=device)
    fresh = header(parts, opts, shards)
    out = Path(opts.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(out / LOCK, timeout=0):
            return _encode(parts, opts, fresh, shards, out, device)
    except Timeout:
        raise EncodeError(f"another encode-latents is writing {out}") from None


def _encode(parts: Parts, opts: EncodeOptions, fresh: dict, shards: list[str], out: Path,
            device: torch.device) -> dict:
    existing = read_manifest(out)
    if existing is not None:
        if "kind" not in existing["autoencoder"]:  # written before kinds were recorded
            existing["autoencoder"] = dict(existing["autoencoder"], kind="kl")
        changed = [k for k in _IDENTITY if existing.get(k) != fresh.get(k)]
        if changed:
            raise EncodeError(
                f"{out} already holds latents encoded differently ({', '.join(changed)} "
                f"changed; see its {FILENAME}); use another --out (one per split), or "
                "delete it to re-encode")
        if existing.get("complete"):
            return existing
        manifest, start = existing, tuple(existing["resume"])
        for stray in out.glob(".latents-*.tar.tmp"):
            stray.unlink()
    else:
        if any(out.glob("*.tar")):
            raise EncodeError(f"{out} already holds .tar files but no {FILENAME}; "
                              "use an empty --out directory")
        manifest = dict(fresh, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        mmtrain_version=mmtrain.__version__, complete=False, shards=[],
                        skipped={}, unreadable_shards=[], resume=[0, 0])
        start = (0, 0)
    skipped = Counter(manifest["skipped"])
    unreadable = list(manifest["unreadable_shards"])
    sink = ShardSink(out, manifest, opts.shard_size)
    resolution = fresh["resolution"]
    done = manifest.get("samples", 0)
    bar = tqdm(desc=f"encode-latents -> {out.name}", unit="sample", initial=done,
               disable=not opts.progress, dynamic_ncols=True)

    def counts() -> dict:
        return {"skipped": dict(skipped), "unreadable_shards": list(unreadable)}

    pending: list[tuple[tuple[int, int], dict, dict]] = []

    def flush() -> None:
        for position, sample in encode_batch(parts, pending, device, opts, skipped):
            sink.write(sample, position, counts())
            bar.update()
        pending.clear()
        bar.set_postfix(skipped=sum(skipped.values()), refresh=False)

    try:
        for position, raw in _raw_samples(shards, start, unreadable):
            try:
                decoded = t2i_batch.decode_sample(raw, resolution)
            except BadSample as bad:
                skipped[bad.reason] += 1
                continue
            if "pixels" not in decoded:
                skipped["not_an_image"] += 1
                continue
            pending.append((position, raw, decoded))
            if len(pending) == opts.batch_size:
                flush()
        if pending:
            flush()
        sink.close(None, counts())
    except BaseException:
        sink.abandon()
        raise
    finally:
        bar.close()
    return manifest


@torch.inference_mode()
def encode_batch(parts: Parts, pending: list, device: torch.device, opts: EncodeOptions,
                 skipped: Counter) -> Iterator[tuple[tuple[int, int], dict]]:
    """(position, tar sample) for each pending (position, raw, decoded) that encodes to
    finite float16 values (the others are counted as skipped `float16_overflow`)."""
    pixels = torch.stack([d["pixels"] for _, _, d in pending]).to(device)
    encoded = parts.vae.encode(pixels)
    if hasattr(encoded, "latent_dist"):  # kl
        arrays = {"latent.npy": encoded.latent_dist.mean}
        if opts.std:
            arrays["latent_std.npy"] = encoded.latent_dist.std
    else:  # vq, vq2: before quantization, as autoencoders.encode gives diffusion
        arrays = {"latent.npy": encoded.latents}
    if parts.text_encoder is not None:
        captions = [d["caption"] for _, _, d in pending]
        ids = t2i_batch.token_ids(parts.tokenizer, captions).to(device)
        arrays["text.npy"] = parts.text_encoder(ids)[0]
    arrays = {k: v.to(torch.float16).cpu().numpy() for k, v in arrays.items()}
    for i, (position, raw, decoded) in enumerate(pending):
        fields = {k: v[i] for k, v in arrays.items()}
        if not all(np.isfinite(v).all() for v in fields.values()):
            skipped["float16_overflow"] += 1
            continue
        meta = {"key": raw["__key__"], "shard": raw.get("__url__"), "index": position[1]}
        yield position, {"__key__": raw["__key__"],
                         **{k: _npy(v) for k, v in fields.items()},
                         "txt": decoded["caption"].encode("utf-8"),
                         "json": json.dumps(meta).encode("utf-8")}
