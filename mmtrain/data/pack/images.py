"""`images`: a folder of images with captions (sidecar .txt, or a JSONL/CSV file).

Sample: the image bytes as they are under jpg/png/webp, `txt` the caption, `json`
{source, width, height}. The img2dataset layout, so img2dataset-style readers work.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mmtrain.data.pack.common import (
    IMAGE_SUFFIXES,
    OTHER_IMAGE_SUFFIXES,
    Item,
    PackError,
    Skip,
    Skips,
    json_bytes,
    probe_image,
    read_bytes,
    relative,
    sample_bytes,
    stamp,
    walk_files,
)
from mmtrain.data.pack.options import PackOptions

SCHEMA = {
    "__key__": "9-digit index of the image in sorted path order",
    "jpg|png|webp": "the original image bytes (field named by the detected format)",
    "txt": "caption, UTF-8",
    "json": "source (path relative to the input folder), width, height",
}
PATH_KEYS = ("image", "file_name", "path")
CAPTION_KEYS = ("caption", "text")
_DIM_BOUND = 10**9  # json size bound at plan time: dimensions are read when writing


def _meta(source: str, width: int, height: int) -> bytes:
    return json_bytes({"source": source, "width": width, "height": height})


def _item(path: Path, source: str, caption: str) -> Item:
    st = stamp(path, source)
    sizes = [st[1], len(caption.encode()), len(_meta(source, _DIM_BOUND, _DIM_BOUND))]
    return Item(source, [path], [st], {"caption": caption}, sample_bytes(sizes))


def _records(path: Path, skips: Skips) -> list[tuple[str, str]]:
    """(image path, caption) pairs from a JSONL or CSV captions file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError) as e:
        raise PackError(f"captions file {path} does not exist; check --captions") from e
    except UnicodeDecodeError as e:
        raise PackError(f"captions file {path} is not UTF-8 text") from e
    if path.suffix.lower() == ".csv":
        try:
            rows = [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines()))]
        except csv.Error as e:
            raise PackError(f"captions file {path} is not valid CSV: {e}") from e
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError:
                    skips.add("bad_record", f"{path.name}:{i}")
    else:
        raise PackError(f"--captions {path}: expected a .jsonl or .csv file")
    pairs = []
    for line, row in rows:
        image = next((row[k] for k in PATH_KEYS if isinstance(row, dict) and row.get(k)), None)
        caption = next((row[k] for k in CAPTION_KEYS if isinstance(row, dict) and k in row), None)
        if not isinstance(image, str) or not isinstance(caption, str):
            skips.add("bad_record", f"{path.name}:{line}")
        else:
            pairs.append((image, caption))
    return pairs


def scan(opts: PackOptions) -> tuple[list[Item], Skips]:
    root, skips = opts.input, Skips()
    if not root.is_dir():
        raise PackError(
            f"input folder {root} does not exist or is not a folder; `images` takes a "
            "folder of images with .txt captions next to them (or --captions FILE)"
        )
    files = walk_files(root)
    listed: dict[str, str] = {}  # --captions: source -> caption
    if opts.captions is not None:
        for image, caption in _records(opts.captions, skips):
            source = relative(root / image, root)
            if source in listed:
                skips.add("duplicate_record", source)
            else:
                listed[source] = caption
    items = []
    for source, path in files:
        suffix = path.suffix.lower()
        if suffix in OTHER_IMAGE_SUFFIXES:
            skips.add("unsupported_format", source)
        if suffix not in IMAGE_SUFFIXES:
            continue
        if opts.captions is not None:
            caption = listed.pop(source, None)
        else:
            try:
                caption = _sidecar_caption(path)
            except Skip as skip:
                skips.add(skip.reason, source)
                continue
        if caption is None or not caption.strip():
            skips.add("missing_caption", source)
            continue
        items.append(_item(path, source, caption.strip()))
    for source in sorted(listed):  # captions naming images that are not in the folder
        path = root / source
        if path.suffix.lower() not in IMAGE_SUFFIXES and path.is_file():
            skips.add("unsupported_format", source)
        else:
            skips.add("missing_image", source)
    return items, skips


def _sidecar_caption(path: Path) -> str | None:
    try:
        return path.with_suffix(".txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise Skip("unreadable_caption") from e


def build(item: Item) -> dict[str, bytes]:
    data = read_bytes(item.paths[0])
    field, width, height = probe_image(data)
    return {
        field: data,
        "txt": item.data["caption"].encode(),
        "json": _meta(item.source, width, height),
    }
