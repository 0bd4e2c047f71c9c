"""`views3d`: multi-view scenes in the NeRF-synthetic layout.

A scene is a folder with `transforms.json` (or, as in nerf_synthetic, `transforms_train.json`):
{camera_angle_x, frames: [{file_path, transform_matrix}]}, optional `near`, `far`,
`caption` (or a `caption.txt` next to it). `file_path` is relative to the scene folder,
with or without its `.png`. The input is one scene folder or a folder of them.

Sample, as the synthetic views3d kind: `views.npy` uint8 (V, H, W, 3) with transparent
pixels composited over --background, `poses.npy` float32 (V, 4, 4) camera-to-world
(OpenGL, as transforms.json stores them), `json` {source, focal (px), height, width,
views, background, caption?, near?, far?}.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmtrain.data.pack.common import (
    Item,
    PackError,
    Skip,
    Skips,
    json_bytes,
    relative,
    sample_bytes,
    stamp,
)
from mmtrain.data.pack.options import PackOptions

SCHEMA = {
    "__key__": "9-digit index of the scene in sorted folder order",
    "views.npy": "uint8 (V, H, W, 3) views, transparency composited over the background",
    "poses.npy": "float32 (V, 4, 4) camera-to-world, OpenGL convention (camera looks down -z)",
    "json": "source, focal (px), height, width, views, background, caption, near, far "
    "(the last three when the scene gives them)",
}
TRANSFORMS = ("transforms.json", "transforms_train.json")  # first found wins
BACKGROUNDS = {"white": 255, "black": 0}


def _npy_bytes(shape: tuple[int, ...], dtype: str) -> int:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        },
    )
    return len(header.getvalue()) + math.prod(shape) * np.dtype(dtype).itemsize


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _scene_dirs(root: Path) -> list[Path]:
    if any((root / name).is_file() for name in TRANSFORMS):
        return [root]
    found = {p.parent for name in TRANSFORMS for p in root.rglob(name)}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _frame_path(scene: Path, file_path: str) -> Path:
    path = scene / file_path
    return path if path.suffix and path.is_file() else path.with_name(path.name + ".png")


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _read_transforms(path: Path) -> tuple[dict, list[np.ndarray], list[str]]:
    """(transforms dict, 4x4 matrices, file paths); Skip when it is not NeRF-style."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        frames = meta["frames"]
        matrices = [np.asarray(f["transform_matrix"], dtype=np.float32) for f in frames]
        files = [str(f["file_path"]) for f in frames]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise Skip("bad_transforms") from e
    focal_given = any(isinstance(meta.get(k), int | float) for k in ("camera_angle_x", "fl_x"))
    if not frames or any(m.shape != (4, 4) for m in matrices) or not focal_given:
        raise Skip("bad_transforms")
    return meta, matrices, files


def _plan_scene(scene: Path, root: Path, opts: PackOptions) -> Item:
    transforms = next(scene / n for n in TRANSFORMS if (scene / n).is_file())
    source = relative(scene, root) if scene != root else scene.name
    meta, matrices, files = _read_transforms(transforms)
    paths = [_frame_path(scene, f) for f in files]
    fl_x = meta["fl_x"] if isinstance(meta.get("fl_x"), int | float) else None
    if opts.max_views and len(paths) > opts.max_views:  # evenly spaced, first and last kept
        keep = sorted(set(np.linspace(0, len(paths) - 1, opts.max_views).round().astype(int)))
        matrices, paths = [matrices[i] for i in keep], [paths[i] for i in keep]
    if not all(p.is_file() for p in paths):
        raise Skip("missing_image")
    try:
        sizes = {_size(p) for p in paths}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Skip("corrupt_image") from e
    if len(sizes) != 1:
        raise Skip("inconsistent_views")
    (width, height), scale = sizes.pop(), 1.0
    if opts.view_size and opts.view_size != width:
        scale = opts.view_size / width
        width, height = opts.view_size, max(1, round(height * scale))
    focal = (
        float(fl_x)
        if fl_x is not None
        else 0.5 * (width / scale) / math.tan(0.5 * float(meta["camera_angle_x"]))
    )
    out = {
        "source": source,
        "focal": focal * scale,
        "height": height,
        "width": width,
        "views": len(paths),
        "background": opts.background,
    }
    caption_file = scene / "caption.txt"
    if isinstance(meta.get("caption"), str):
        out["caption"] = meta["caption"].strip()
    elif caption_file.is_file():
        out["caption"] = caption_file.read_text(encoding="utf-8", errors="replace").strip()
    for bound in ("near", "far"):
        if isinstance(meta.get(bound), int | float):
            out[bound] = float(meta[bound])
    views = len(paths)
    est = sample_bytes(
        [
            _npy_bytes((views, height, width, 3), "uint8"),
            _npy_bytes((views, 4, 4), "float32"),
            len(json_bytes(out)),
        ]
    )
    stamps = [stamp(transforms, relative(transforms, root))]
    stamps += [stamp(p, relative(p, root)) for p in paths]
    data = {"json": out, "poses": [m.tolist() for m in matrices]}
    return Item(source, paths, stamps, data, est)


def scan(opts: PackOptions) -> tuple[list[Item], Skips]:
    root, skips = opts.input, Skips()
    if not root.is_dir():
        raise PackError(
            f"input folder {root} does not exist; `views3d` takes a scene folder with "
            "transforms.json, or a folder of such scene folders"
        )
    items = []
    for scene in _scene_dirs(root):
        try:
            items.append(_plan_scene(scene, root, opts))
        except Skip as skip:
            skips.add(skip.reason, relative(scene, root))
    return items, skips


def _load_view(path: Path, size: tuple[int, int], background: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (background,) * 3 + (255,))
                image = Image.alpha_composite(flat, rgba)
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Skip("corrupt_image") from e
    if image.size != size:
        image = image.resize(size, Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def build(item: Item) -> dict[str, bytes]:
    meta = item.data["json"]
    size, background = (meta["width"], meta["height"]), BACKGROUNDS[meta["background"]]
    views = np.stack([_load_view(p, size, background) for p in item.paths])
    poses = np.asarray(item.data["poses"], dtype=np.float32)
    return {"views.npy": _npy(views), "poses.npy": _npy(poses), "json": json_bytes(meta)}
