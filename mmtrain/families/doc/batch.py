"""webdataset sample -> a decoded page for the document family.

A `documents` sample (synthetic, or FUNSD packed by `python -m mmtrain.data pack
documents`) is a page image (`png`/`jpg`) and a `json` annotation: words, their pixel
boxes and FUNSD labels, entities, question->answer links and `fields`. Decoding keeps the
page as PIL + lists; tokenizing happens in the module (it owns the tokenizers), so one
decoded sample serves both the layout model and the reader.
"""

from __future__ import annotations

import io
import json

from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg")
FIELDS = {"image": IMAGE_KEYS, "annotation": ("json",)}
LABELS = ("header", "question", "answer", "other")


def decode_sample(raw: dict) -> dict:
    image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    if image_bytes is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    if "json" not in raw:
        raise BadSample("missing_annotation", "no json member")
    try:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    try:
        meta = raw["json"]
        meta = json.loads(meta) if isinstance(meta, bytes | str) else meta
        words, boxes, labels = list(meta["words"]), list(meta["boxes"]), list(meta["labels"])
    except Exception as err:
        raise BadSample("bad_annotation", f"{type(err).__name__}: {err}") from None
    if not words:
        raise BadSample("no_words", "the page has no words")
    if not len(words) == len(boxes) == len(labels):
        raise BadSample("bad_annotation", f"{len(words)} words, {len(boxes)} boxes, "
                                          f"{len(labels)} labels")
    unknown = set(labels) - set(LABELS)
    if unknown:
        raise BadSample("bad_annotation", f"unknown labels {sorted(unknown)}")
    return {
        "image": image, "words": words, "boxes": [[float(v) for v in b] for b in boxes],
        "labels": labels, "entities": meta.get("entities", []), "links": meta.get("links", []),
        "fields": meta.get("fields", {}),
    }


def collate(samples: list[dict]) -> dict:
    """Pages stay lists: the module tokenizes and pads per model."""
    return {"pages": samples}


def word_tags(page: dict) -> list[str]:
    """Per word BIO tag (FUNSD scheme: `other` is O). Entities mark where one starts; a
    page without entities starts a new entity wherever the label changes."""
    starts = {e["word_ids"][0] for e in page.get("entities", []) if e.get("word_ids")}
    tags = []
    for i, label in enumerate(page["labels"]):
        if label == "other":
            tags.append("O")
            continue
        first = i in starts if starts else (i == 0 or page["labels"][i - 1] != label)
        tags.append(f"{'B' if first else 'I'}-{label.upper()}")
    return tags


def normalised_boxes(boxes: list[list[float]], width: int, height: int) -> list[list[int]]:
    """Pixel boxes -> LayoutLMv3's 0..1000 grid, clamped (FUNSD boxes can overhang)."""
    def scale(v: float, size: int) -> int:
        return max(0, min(1000, round(1000 * v / size)))

    return [[scale(x0, width), scale(y0, height), scale(x1, width), scale(y1, height)]
            for x0, y0, x1, y1 in boxes]
