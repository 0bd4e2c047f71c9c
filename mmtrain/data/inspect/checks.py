"""Per-sample checks: a family's own batch decoder, or generic per-field decoding.

A check takes webdataset's raw sample (`__key__`, `__url__`, extension -> bytes) and returns
None for a usable sample or `(reason, detail)` for a bad one.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import json
import pkgutil
import re
from collections.abc import Callable
from types import ModuleType

import numpy as np
from PIL import Image

from mmtrain.data.shards import BadSample
from mmtrain.data.sources import DataError

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")
TEXT_EXTS = ("txt", "caption", "text", "cls")

Check = Callable[[dict], "tuple[str, str] | None"]


def suffix(ext: str) -> str:
    """The type part of a field name: `views.npy` -> `npy`."""
    return ext.rsplit(".", 1)[-1].lower()


def payload(raw: dict) -> dict[str, bytes]:
    return {k: v for k, v in raw.items() if not k.startswith("__")}


def field_set(data: dict) -> frozenset[str]:
    """A sample's fields, images of any format counted as one field, `image`."""
    return frozenset("image" if suffix(e) in IMAGE_EXTS else e for e in data)


def clean(detail: str) -> str:
    """A detail fit to print: no object addresses, one line, at most 200 characters."""
    detail = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", detail)
    return " ".join(detail.split())[:200]


def _error(err: BaseException) -> str:
    return clean(f"{type(err).__name__}: {err}")


def decode_image(data: bytes) -> Image.Image:
    """Decodes every pixel (a truncated file fails here, not at open)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def _check_field(ext: str, data: bytes) -> tuple[str, str] | None:
    kind = suffix(ext)
    try:
        if kind in IMAGE_EXTS:
            decode_image(data)
        elif kind == "json":
            json.loads(data)
        elif kind in TEXT_EXTS:
            data.decode("utf-8")
        elif kind == "npy":
            np.load(io.BytesIO(data), allow_pickle=False)
        else:
            return None
    except Exception as err:  # each decoder raises its own types for broken data
        reason = {"json": "corrupt_json", "npy": "corrupt_npy"}.get(kind)
        reason = reason or ("corrupt_image" if kind in IMAGE_EXTS else "corrupt_text")
        return reason, f".{ext}: {_error(err)}"
    return None


def generic_check(raw: dict) -> tuple[str, str] | None:
    fields = payload(raw)
    if not fields:
        return "empty_sample", "no members besides the key"
    for ext, data in fields.items():
        problem = _check_field(ext, data)
        if problem:
            return problem
    return None


# ---- families --------------------------------------------------------------------------

def available_families() -> list[str]:
    """Families with a batch module: `mmtrain.families.<name>.batch` (the convention)."""
    import mmtrain.families as families

    names = []
    for info in pkgutil.iter_modules(families.__path__):
        if info.ispkg and importlib.util.find_spec(f"mmtrain.families.{info.name}.batch"):
            names.append(info.name)
    return sorted(names)


def load_family(name: str) -> ModuleType:
    valid = available_families()
    if name not in valid:
        raise DataError(f"unknown family {name!r}; valid families: {', '.join(valid)}")
    module = importlib.import_module(f"mmtrain.families.{name}.batch")
    for attr in ("FIELDS", "decoder"):
        if not hasattr(module, attr):
            raise DataError(f"family {name}: mmtrain.families.{name}.batch has no {attr}, "
                            "so inspect cannot check its samples")
    return module


def default_resolution(name: str) -> int:
    """The family config's default resolution, or 64."""
    try:
        from mmtrain.families.registry import FAMILIES

        return int(FAMILIES[name].config_cls().resolution)
    except Exception:  # no registry entry, no resolution field, a config needing arguments
        return 64


def family_check(name: str, resolution: int | None = None) -> tuple[Check, dict]:
    """The family's own decoder as a check, and its FIELDS (field -> accepted extensions)."""
    module = load_family(name)
    params = inspect.signature(module.decoder).parameters
    kwargs = {}
    if "resolution" in params:
        kwargs["resolution"] = resolution or default_resolution(name)
    missing = [p for p, v in params.items() if p not in kwargs and v.default is v.empty]
    if missing:
        raise DataError(f"family {name}: its decoder needs {', '.join(missing)}, which "
                        "inspect cannot supply")
    decode = module.decoder(**kwargs)

    def check(raw: dict) -> tuple[str, str] | None:
        try:
            decode(raw)
        except BadSample as bad:
            return bad.reason, clean(bad.detail)
        except Exception as err:  # a decoder bug or data it did not foresee
            return "decoder_error", _error(err)
        return None

    return check, dict(module.FIELDS)


# ---- what a sample looks like (for the contact sheet) ----------------------------------

def preview_image(raw: dict) -> tuple[Image.Image | None, str | None]:
    """(first image of the sample, None), or (None, why there is none). An image field
    wins; else an npy array shaped like an image or a stack of views ([V,]H,W,C)."""
    fields = payload(raw)
    images = [e for e in fields if suffix(e) in IMAGE_EXTS]
    if images:
        try:
            return decode_image(fields[images[0]]), None
        except Exception as err:
            return None, f"corrupt_image: {_error(err)}"
    arrays = sorted((e for e in fields if suffix(e) == "npy"),
                    key=lambda e: not any(w in e for w in ("view", "image", "rgb")))
    for ext in arrays:
        try:
            array = np.load(io.BytesIO(fields[ext]), allow_pickle=False)
        except Exception:
            continue
        image = _array_image(array)
        if image is not None:
            return image, None
    return None, "no image"


def _array_image(array: np.ndarray) -> Image.Image | None:
    if array.ndim == 4:
        array = array[0]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or min(array.shape[:2]) < 8:
        return None
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number):
            return None
        scale = 255.0 if float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array) * scale, 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")


def preview_caption(raw: dict) -> str:
    """The sample's caption: a text field, else a caption-like entry of its json."""
    fields = payload(raw)
    for ext in fields:
        if suffix(ext) in ("txt", "caption", "text"):
            return fields[ext].decode("utf-8", errors="replace").strip()
    for ext in fields:
        if suffix(ext) != "json":
            continue
        try:
            meta = json.loads(fields[ext])
        except Exception:
            return ""
        if not isinstance(meta, dict):
            return ""
        for name in ("caption", "text", "question", "title"):
            if isinstance(meta.get(name), str):
                return meta[name]
        if isinstance(meta.get("fields"), dict):  # a document: its question -> answer pairs
            return "; ".join(f"{q}: {a}" for q, a in meta["fields"].items())
        if isinstance(meta.get("words"), list):
            return " ".join(str(w) for w in meta["words"][:30])
    return ""


def image_size(raw: dict) -> str | None:
    """"WxH" of the first image field, from its header only (cheap)."""
    for ext, data in payload(raw).items():
        if suffix(ext) in IMAGE_EXTS:
            try:
                width, height = Image.open(io.BytesIO(data)).size
            except Exception:
                return None
            return f"{width}x{height}"
    return None
