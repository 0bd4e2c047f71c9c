"""Measures the watermark at the sizes mmtrain makes: exact decodes and bit accuracy after
PNG, JPEG q90 and q75, and false positives on unmarked images. Prints a markdown table.
Not a test (about 2 min on one core; the photos need scikit-image): `python tests/provenance/measure_watermark.py`."""

from __future__ import annotations

import io
import itertools

import numpy as np
from PIL import Image
from skimage import data

from mmtrain.data.synth.scenes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    render_scene,
)
from mmtrain.provenance import watermark

MESSAGE = "mt"


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


def psnr(a, b) -> float:
    err = ((np.asarray(a, float) - np.asarray(b, float)) ** 2).mean()
    return 10 * np.log10(255**2 / err) if err else float("inf")


def main(n: int = 24) -> None:
    rng = np.random.default_rng(0)
    scenes = [Scene(*s) for s in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS)]
    photos = [Image.fromarray(f()) for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)]
    print("| size | images | PSNR dB | PNG exact | JPEG q90 exact, found (bit acc.) | JPEG q75 exact, found (bit acc.) |")
    print("|---|---|---|---|---|---|")
    for size, kind in itertools.product((32, 48, 64, 128, 256, 512), ("scenes", "photos")):
        rows = {"psnr": [], "png": 0, "q90": [], "q75": []}
        for i in range(n):
            if kind == "scenes":
                img = render_scene(scenes[rng.integers(len(scenes))], size)
            else:
                img = photos[i % len(photos)].resize((size, size), Image.LANCZOS)
            marked = watermark.embed(img, watermark.message_bits(MESSAGE))
            rows["psnr"].append(psnr(img, marked))
            rows["png"] += watermark.detect(marked, MESSAGE).bit_accuracy == 1
            for q in (90, 75):
                rows[f"q{q}"].append(watermark.detect(jpeg(marked, q), MESSAGE).bit_accuracy)
        def fmt(acc: list[float]) -> str:
            found = sum(a >= watermark.FOUND_ACCURACY for a in acc)
            return f"{sum(a == 1 for a in acc)}/{n}, found {found}/{n} ({np.mean(acc):.3f})"

        print(f"| {size} | {kind} | {np.mean(rows['psnr']):.1f} | {rows['png']}/{n} | "
              f"{fmt(rows['q90'])} | {fmt(rows['q75'])} |", flush=True)
    # false positives: every scene of the world unmarked at 32 and 64 px, photo crops, noise
    fp, total = 0, 0
    for size in (32, 64):
        for s in scenes:
            fp += watermark.detect(render_scene(s, size), MESSAGE).found
            total += 1
    for i in range(200):
        photo = photos[i % len(photos)]
        x, y = rng.integers(0, 200, 2)
        for img in (photo.crop((x, y, x + 64, y + 64)),
                    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))):
            fp += watermark.detect(img, MESSAGE).found
            total += 1
    print(f"\nfalse positives on unmarked images: {fp}/{total}")


if __name__ == "__main__":
    main()
