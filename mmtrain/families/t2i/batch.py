"""webdataset sample -> tensors for the text-to-image family.

Two kinds of sample train it: an image + caption (`png`/`jpg` + `txt`), or a latent
sample written by `python -m mmtrain.data encode-latents` (docs/latents.md): the
autoencoder's posterior (`latent.npy`, optionally `latent_std.npy`), optionally the text
encoder's hidden states (`text.npy`), and the caption. A batch holds one kind only.
"""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import torch
from PIL import Image

from mmtrain.data.shards import BadSample
from mmtrain.families.shared.images import (
    CAPTION_KEYS,
    IMAGE_KEYS,
    center_square,
    image_and_caption,
)

LATENT_KEY, LATENT_STD_KEY, TEXT_KEY = "latent.npy", "latent_std.npy", "text.npy"
# field -> accepted extensions; a latent sample carries the image as its latent (and
# always its caption, which encode-latents keeps next to the text states)
FIELDS = {"image": (*IMAGE_KEYS, LATENT_KEY), "caption": CAPTION_KEYS}


def decode_sample(raw: dict, resolution: int,
                  latent_shape: tuple[int, ...] | None = None) -> dict:
    """Image -> float CHW in [-1, 1] at `resolution`; caption -> str. Raises BadSample
    when the sample lacks a field or its image does not decode (the stream skips it).
    A latent sample goes to `decode_latent_sample`."""
    if LATENT_KEY in raw:
        return decode_latent_sample(raw, latent_shape)
    image, caption = image_and_caption(raw)
    if image.size != (resolution, resolution):
        image = center_square(image).resize((resolution, resolution), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return {"pixels": pixels.permute(2, 0, 1), "caption": caption}


def decode_latent_sample(raw: dict, latent_shape: tuple[int, ...] | None = None) -> dict:
    """latent.npy (+ latent_std.npy, text.npy) -> float16 tensors, as stored."""
    out = {"latents": _array(raw, LATENT_KEY, latent_shape)}
    if LATENT_STD_KEY in raw:
        out["latent_std"] = _array(raw, LATENT_STD_KEY, tuple(out["latents"].shape))
    if TEXT_KEY in raw:
        out["text"] = _array(raw, TEXT_KEY, None)
    caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
    if caption is None and "text" not in out:
        raise BadSample("missing_caption", f"no {'/'.join(CAPTION_KEYS)} or {TEXT_KEY} member")
    out["caption"] = "" if caption is None else _text(caption)
    return out


def _array(raw: dict, key: str, shape: tuple[int, ...] | None) -> torch.Tensor:
    try:
        array = np.load(io.BytesIO(raw[key]), allow_pickle=False)
    except Exception as err:  # numpy raises ValueError/EOFError/... for broken files
        raise BadSample("corrupt_latent", f"{key}: {type(err).__name__}: {err}") from None
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise BadSample("latent_shape", f"{key} has shape {tuple(array.shape)}, "
                                        f"the model expects {tuple(shape)}")
    return torch.from_numpy(array)


def _text(caption) -> str:
    return (caption.decode("utf-8") if isinstance(caption, bytes) else str(caption)).strip()


def collate(samples: list[dict]) -> dict:
    out = _collate(samples)
    if "style" in samples[0]:  # style presets (styles.py): index per sample, 0 = none
        out["styles"] = torch.tensor([s["style"] for s in samples], dtype=torch.long)
    return out


def _collate(samples: list[dict]) -> dict:
    captions = [s["caption"] for s in samples]
    if not any("latents" in s for s in samples):
        return {"pixels": torch.stack([s["pixels"] for s in samples]), "captions": captions}
    out = {"captions": captions}
    for key in ("latents", "latent_std", "text"):
        have = sum(key in s for s in samples)
        if have == len(samples):
            out[key] = torch.stack([s[key] for s in samples])
        elif have:
            from mmtrain.data.sources import DataError

            raise DataError(
                f"a t2i batch mixes samples with and without {key}: the family's sources "
                "must be all image shards or all latent shards written with the same "
                "encode-latents options (docs/latents.md)")
    return out


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Captions -> the padded token ids the text encoder reads (training and
    encode-latents both call this, so stored text states match the training path)."""
    return tokenizer(captions, padding="max_length", truncation=True,
                     max_length=tokenizer.model_max_length, return_tensors="pt").input_ids


def decoder(resolution: int, latent_shape: tuple[int, ...] | None = None):
    return partial(decode_sample, resolution=resolution, latent_shape=latent_shape)
