"""`vqa`: a JSONL of {image, question, answer} records.

All records of one image become one sample, like the synthetic scenes: the image bytes
as they are, `json` {source, width, height, questions: [{question, answer}]} with the
questions in file order.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmtrain.data.pack.common import (
    IMAGE_SUFFIXES,
    Item,
    PackError,
    Skips,
    json_bytes,
    probe_image,
    read_bytes,
    relative,
    sample_bytes,
    stamp,
)
from mmtrain.data.pack.options import PackOptions

SCHEMA = {
    "__key__": "9-digit index of the image in sorted path order",
    "jpg|png|webp": "the original image bytes (field named by the detected format)",
    "json": "source (image path relative to the images root), width, height, "
    "questions [{question, answer}] in file order",
}
_DIM_BOUND = 10**9


def _meta(source: str, width: int, height: int, questions: list[dict]) -> bytes:
    return json_bytes({"source": source, "width": width, "height": height, "questions": questions})


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()  # yes/no answers stored as JSON booleans
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _read(path: Path, skips: Skips) -> dict[str, list[dict]]:
    """image path (as written) -> questions, in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PackError(f"{path} is not UTF-8 text; `vqa` takes a JSONL file") from e
    grouped: dict[str, list[dict]] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        record = record if isinstance(record, dict) else {}
        image = record.get("image", record.get("file_name"))
        question, answer = _text(record.get("question")), _text(record.get("answer"))
        if not isinstance(image, str) or question is None or answer is None:
            skips.add("bad_record", f"{path.name}:{i}")
            continue
        grouped.setdefault(image, []).append({"question": question, "answer": answer})
    return grouped


def scan(opts: PackOptions) -> tuple[list[Item], Skips]:
    if not opts.input.is_file():
        raise PackError(
            f"input file {opts.input} does not exist or is not a file; `vqa` takes a JSONL of "
            '{"image": path, "question": ..., "answer": ...} records'
        )
    root = opts.images_root or opts.input.parent
    if not root.is_dir():
        raise PackError(f"--images-root {root} does not exist or is not a folder")
    skips, by_source = Skips(), {}
    for image, questions in _read(opts.input, skips).items():
        path = root / image
        source = relative(path, root)
        if source in by_source:  # "a.jpg" and "./a.jpg": one image
            by_source[source][1].extend(questions)
        else:
            by_source[source] = (path, questions)
    items = []
    for source in sorted(by_source):
        path, questions = by_source[source]
        if path.suffix.lower() not in IMAGE_SUFFIXES and path.is_file():
            skips.add("unsupported_format", source)
            continue
        if not path.is_file():
            skips.add("missing_image", source)
            continue
        st = stamp(path, source)
        est = sample_bytes([st[1], len(_meta(source, _DIM_BOUND, _DIM_BOUND, questions))])
        items.append(Item(source, [path], [st], {"questions": questions}, est))
    return items, skips


def build(item: Item) -> dict[str, bytes]:
    data = read_bytes(item.paths[0])
    field, width, height = probe_image(data)
    return {field: data, "json": _meta(item.source, width, height, item.data["questions"])}
