"""`documents`: FUNSD-layout forms (`annotations/*.json` + `images/<same stem>.png`).

Sample: `png` page and `json` annotation in the synthetic `documents` schema (see
funsd.py), so a family decodes packed FUNSD exactly like synthetic pages. The page is
always an RGB PNG: an RGB PNG is stored byte for byte; any other page (JPEG, TIFF,
grayscale or palette PNG) is converted to RGB and written as PNG, losslessly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mmtrain.data.pack.common import (
    Item,
    PackError,
    Skip,
    Skips,
    json_bytes,
    read_bytes,
    relative,
    sample_bytes,
    stamp,
)
from mmtrain.data.pack.funsd import BadAnnotation, convert
from mmtrain.data.pack.options import PackOptions

SCHEMA = {
    "__key__": "9-digit index of the annotation in sorted name order",
    "png": "RGB page image (PNG)",
    "json": "form ('funsd'), source, width, height, words, boxes [x0,y0,x1,y1] px, labels "
    "(header|question|answer|other), entities [{id,label,text,word_ids,box}], "
    "links [[question_id, answer_id]], fields {question: answer}, linking (all FUNSD links)",
}
PAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _png_bound(width: int, height: int) -> int:
    """Upper bound of an RGB PNG's size: stored (incompressible) deflate blocks plus
    chunk overheads, with room to spare."""
    raw = height * (3 * width + 1)
    return raw + 5 * (raw // 16383 + 1) + 12 * (raw // 8192 + 2) + 1024


def _page(path: Path, source: str, skips: Skips) -> tuple[int, int, bool] | None:
    """(width, height, stored as is) from the page's header, or None when skipped."""
    try:
        with Image.open(path) as image:
            return image.width, image.height, image.format == "PNG" and image.mode == "RGB"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        skips.add("corrupt_image", source)
    except Image.DecompressionBombError:
        skips.add("too_many_pixels", source)
    return None


def scan(opts: PackOptions) -> tuple[list[Item], Skips]:
    root, skips = opts.input, Skips()
    annotations, images = root / "annotations", root / "images"
    if not annotations.is_dir() or not images.is_dir():
        hint = ""
        if (root / "training_data").is_dir():
            hint = f" (this looks like the FUNSD root: pass {root / 'training_data'})"
        raise PackError(f"{root} must hold annotations/*.json and images/ (the FUNSD layout){hint}")
    pages = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in PAGE_SUFFIXES}
    items = []
    for ann_path in sorted(annotations.glob("*.json")):
        source = relative(ann_path, root)
        page = pages.get(ann_path.stem)
        if page is None:
            skips.add("missing_image", source)
            continue
        probed = _page(page, relative(page, root), skips)
        if probed is None:
            continue
        width, height, as_is = probed
        try:
            meta = convert(json.loads(ann_path.read_text(encoding="utf-8")), width, height)
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            BadAnnotation,
            TypeError,
            AttributeError,
            ValueError,
        ):
            skips.add("bad_annotation", source)
            continue
        meta = {"form": "funsd", "source": source, **meta}
        stamps = [stamp(ann_path, source), stamp(page, relative(page, root))]
        png = stamps[1][1] if as_is else _png_bound(width, height)
        est = sample_bytes([png, len(json_bytes(meta))])
        items.append(Item(source, [page], stamps, {"meta": meta, "as_is": as_is}, est))
    return items, skips


def build(item: Item) -> dict[str, bytes]:
    data = read_bytes(item.paths[0])
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        if not item.data["as_is"]:
            page = Image.new("RGB", image.size)
            page.paste(image.convert("RGB"))  # a fresh image: no ICC/EXIF chunks to size
            buffer = io.BytesIO()
            page.save(buffer, format="PNG")
            data = buffer.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Skip("corrupt_image") from e
    if image.size != (item.data["meta"]["width"], item.data["meta"]["height"]):
        raise Skip("changed_while_packing")
    return {"png": data, "json": json_bytes(item.data["meta"])}
