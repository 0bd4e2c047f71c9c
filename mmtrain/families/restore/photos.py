"""Real photographs that ship with scikit-image, as restoration data (no download).

A fixed split by image: the held-out photos (astronaut, coffee, camera) are never cut
into training crops; evaluation reads them whole. Training reads webdataset shards of
crops of the other photos, written once by `ensure_photos` (the launcher calls it for a
run whose families read the `photos` source; `python -m mmtrain.families.restore.photos
--out DIR` writes them by hand). Crops are a pure function of the seed.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image

VERSION = 1  # bump when the crops change for the same arguments
HELD_OUT = ("astronaut", "coffee", "camera")  # 2 colour photos + 1 grey, all 512 px class
TRAIN = ("chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
         "stereo_motorcycle", "brick", "grass", "gravel", "coins", "moon", "page", "text",
         "cell", "clock")


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grey photos repeated over the channels."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo pairs: the left view
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def held_out_photos() -> list[tuple[str, np.ndarray]]:
    return [(name, load_photo(name)) for name in HELD_OUT]


def _crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list:
    """`count` crops at random positions, skipping nearly flat ones (retina and hubble are
    mostly black) after a bounded number of tries."""
    h, w, _ = image.shape
    out = []
    for _ in range(count):
        for attempt in range(20):
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop = image[top:top + size, left:left + size]
            if crop.std() >= 6 or attempt == 19:
                break
        out.append((crop, top, left))
    return out


def write_photo_shards(out_dir: str | os.PathLike, *, crop: int = 128, crops_per_image: int = 48,
                       val_crops_per_image: int = 8, seed: int = 0,
                       shard_size: int = 256) -> dict:
    """Writes `train-*.tar` (crops of TRAIN) and `val-*.tar` (crops of HELD_OUT) plus
    manifest.json into out_dir, atomically (a temp dir renamed into place)."""
    import webdataset as wds

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    args = {"crop": crop, "crops_per_image": crops_per_image,
            "val_crops_per_image": val_crops_per_image, "seed": seed, "version": VERSION}
    manifest = {"generator": "mmtrain.families.restore.photos", "args": args, "splits": {}}
    for split, names, per in (("train", TRAIN, crops_per_image), ("val", HELD_OUT, val_crops_per_image)):
        samples = []
        for k, name in enumerate(names):
            rng = np.random.default_rng([seed, VERSION, k, split == "val"])
            for crop_img, top, left in _crops(load_photo(name), per, crop, rng):
                buffer = io.BytesIO()
                Image.fromarray(crop_img).save(buffer, format="PNG", compress_level=1)
                meta = {"photo": name, "top": top, "left": left, "size": crop}
                samples.append({"png": buffer.getvalue(), "json": json.dumps(meta).encode()})
        # interleave photos across shards so every shard sees every photo
        order = np.random.default_rng([seed, VERSION, 99]).permutation(len(samples))
        shards = []
        for first in range(0, len(samples), shard_size):
            name = f"{split}-{first // shard_size:06d}.tar"
            with wds.TarWriter(str(tmp / name), encoder=False, mtime=0, user="mmtrain",
                               group="mmtrain") as tar:
                for i in order[first:first + shard_size]:
                    tar.write({"__key__": f"photos_{split}_{i:06d}", **samples[i]})
            shards.append(name)
        manifest["splits"][split] = {"photos": list(names), "samples": len(samples),
                                     "shards": shards}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


def ensure_photos(pattern: str, **kwargs) -> Path:
    """The shard directory of a `photos` source pattern (e.g. `.../skimage/train-*.tar`),
    written on first use; a no-op when its manifest matches (locked across processes)."""
    out = Path(os.path.expanduser(pattern))
    if glob.has_magic(str(out)) or out.suffix == ".tar":
        out = out.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        try:
            manifest = json.loads((out / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            manifest = None
        wanted = {"crop": 128, "crops_per_image": 48, "val_crops_per_image": 8, "seed": 0} | kwargs
        if manifest is None or {k: manifest["args"].get(k) for k in wanted} != wanted \
                or manifest["args"].get("version") != VERSION:
            print(f"mmtrain: writing scikit-image photo crops to {out}")
            write_photo_shards(out, **wanted)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mmtrain.families.restore.photos",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--crops-per-image", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    m = write_photo_shards(a.out, crop=a.crop, crops_per_image=a.crops_per_image, seed=a.seed)
    print(json.dumps({s: v["samples"] for s, v in m["splits"].items()}))


if __name__ == "__main__":
    main()
