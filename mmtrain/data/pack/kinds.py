"""The input kinds: each module has SCHEMA, scan(options) -> (items, skips) and
build(item) -> {field: bytes} (raising Skip for a sample it cannot pack)."""

from __future__ import annotations

from types import ModuleType

from mmtrain.data.pack import documents, images, views3d, vqa

KINDS: dict[str, ModuleType] = {
    "images": images,
    "vqa": vqa,
    "documents": documents,
    "views3d": views3d,
}
