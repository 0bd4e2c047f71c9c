"""The shard packer: every kind round-trips through webdataset, limits hold, the manifest
is right, splits are deterministic, a killed run resumes, bad input is counted, user
errors exit with code 2."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from mmtrain.data.__main__ import main
from mmtrain.data.manifest import read_shard_manifest, split_samples, split_shards
from mmtrain.data.pack import PackError, PackOptions, pack, parse_size
from mmtrain.data.pack.plan import make_plan, split_of
from mmtrain.files import sha256_file

QUIET = {"progress": False}


def _image(rng: np.random.Generator, path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    """A smooth gradient with noise: compresses like a photo, not like white noise."""
    w, h = size
    ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 50, h)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _read(out: Path, split: str = "train") -> list[dict]:
    return list(wds.WebDataset(split_shards(out, split), shardshuffle=False))


def _read_all(out: Path) -> list[dict]:
    manifest = read_shard_manifest(out)
    return [s for split in manifest["splits"] for s in _read(out, split)]


def _assert_estimates(manifest: dict, exact: bool = False) -> None:
    """Plan-time size bounds (what --max-shard-bytes relies on) hold for the real shards."""
    args = {k: v for k, v in manifest["arguments"].items() if k not in ("kind", "input", "out")}
    plan = make_plan(PackOptions(manifest["kind"], manifest["arguments"]["input"], "-", **args))
    written = [s for split in manifest["splits"].values() for s in split["shards"]]
    for planned, shard in zip(plan.shards, written, strict=True):
        assert planned.est_bytes == shard["bytes"] if exact else planned.est_bytes >= shard["bytes"]


# ---------------------------------------------------------------- images


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 good images (jpg/png/webp, two folders) with sidecar captions, plus bad input:
    one image without a caption, a truncated JPEG, a text file named .jpg, a BMP."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = root / ("b" if i % 2 else "a")
        path = folder / f"img{i:02d}.{('jpg', 'png', 'webp')[i % 3]}"
        _image(rng, path, (24 + i, 20))
        path.with_suffix(".txt").write_text(f"  caption number {i}\n")
    _image(rng, root / "a" / "nocaption.jpg", (20, 20))
    _image(rng, root / "a" / "truncated.jpg", (64, 64))
    data = (root / "a" / "truncated.jpg").read_bytes()
    (root / "a" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "a" / "notimage.jpg").write_bytes(b"this is not a JPEG")
    Image.new("RGB", (8, 8)).save(root / "a" / "bitmap.bmp")
    for name in ("truncated", "notimage", "bitmap"):
        (root / "a" / f"{name}.txt").write_text("a caption")
    return root


@pytest.fixture(scope="module")
def packed_images(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "images"
    pack("images", image_dir, out, shard_size=5, **QUIET)
    return out


def test_images_round_trip(image_dir: Path, packed_images: Path) -> None:
    samples = _read(packed_images)
    assert [s["__key__"] for s in samples] == sorted(s["__key__"] for s in samples)
    assert len({s["__key__"] for s in samples}) == len(samples) == 16
    for sample in samples:
        meta = json.loads(sample["json"])
        source = image_dir / meta["source"]
        field = {".jpg": "jpg", ".png": "png", ".webp": "webp"}[source.suffix]
        assert sample[field] == source.read_bytes()  # byte for byte, no re-encoding
        assert sample["txt"].decode() == source.with_suffix(".txt").read_text().strip()
        assert (meta["width"], meta["height"]) == Image.open(source).size
    decoded = next(
        iter(wds.WebDataset(split_shards(packed_images), shardshuffle=False).decode("pil"))
    )
    assert isinstance(next(v for k, v in decoded.items() if k in ("jpg", "png")), Image.Image)


def test_bad_inputs_are_skipped_and_counted(packed_images: Path) -> None:
    manifest = read_shard_manifest(packed_images)
    assert manifest["skipped"] == {
        "corrupt_image": 2,
        "missing_caption": 1,
        "unsupported_format": 1,
    }
    assert sorted(manifest["skipped_examples"]["corrupt_image"]) == [
        "a/notimage.jpg",
        "a/truncated.jpg",
    ]
    assert manifest["skipped_examples"]["missing_caption"] == ["a/nocaption.jpg"]
    assert manifest["skipped_examples"]["unsupported_format"] == ["a/bitmap.bmp"]


def test_manifest_counts_and_hashes(packed_images: Path) -> None:
    manifest = read_shard_manifest(packed_images)
    assert manifest["format"] == "mmtrain.shards" and manifest["complete"]
    assert manifest["kind"] == "images" and "txt" in manifest["schema"]
    train = manifest["splits"]["train"]
    assert list(manifest["splits"]) == ["train"]  # no --val-fraction: no val split
    for shard in train["shards"]:
        path = packed_images / shard["name"]
        assert shard["sha256"] == sha256_file(path)
        assert shard["bytes"] == path.stat().st_size
        assert shard["samples"] == len(list(wds.WebDataset([str(path)], shardshuffle=False)))
        assert shard["samples"] <= 5
    assert [s["name"] for s in train["shards"]] == [f"train-{i:06d}.tar" for i in range(4)]
    assert train["samples"] == split_samples(manifest) == manifest["totals"]["samples"] == 16
    assert manifest["totals"]["bytes"] == sum(s["bytes"] for s in train["shards"])
    assert manifest["plan"]["samples"] == 18  # the two corrupt images were planned
    assert len(manifest["plan"]["fingerprint"]) == 64


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_images_with_a_captions_file(image_dir: Path, tmp_path: Path, form: str) -> None:
    names = [f"a/img{i:02d}.{('jpg', 'png', 'webp')[i % 3]}" for i in range(0, 16, 2)]
    if form == "jsonl":  # HF imagefolder metadata.jsonl keys
        captions = tmp_path / "metadata.jsonl"
        lines = [json.dumps({"file_name": n, "text": f"jsonl {n}"}) for n in names]
        captions.write_text("\n".join([*lines, "{broken", json.dumps({"file_name": "x"})]))
    else:
        captions = tmp_path / "captions.csv"
        rows = [f"{n},csv {n}" for n in names] + ["a/gone.jpg,not there"]
        captions.write_text("path,caption\n" + "\n".join(rows) + "\n")
    manifest = pack("images", image_dir, tmp_path / "out", captions=captions, **QUIET)
    samples = _read(tmp_path / "out")
    assert {json.loads(s["json"])["source"]: s["txt"].decode() for s in samples} == {
        n: f"{form} {n}" for n in names
    }
    expected = {"bad_record": 2} if form == "jsonl" else {"missing_image": 1}
    # the folder's other images (8 in b/, 3 bad ones in a/) are not in the file
    assert manifest["skipped"]["missing_caption"] == 11
    assert {k: manifest["skipped"][k] for k in expected} == expected


def test_byte_limit_and_oversized_samples(image_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)).save(big)
    big.with_suffix(".txt").write_text("too big for a shard")
    for path in sorted(image_dir.glob("b/*")):
        (tmp_path / "in" / path.name).write_bytes(path.read_bytes())
    manifest = pack(
        "images",
        tmp_path / "in",
        tmp_path / "out",
        shard_size=None,
        max_shard_bytes="30KB",
        **QUIET,
    )
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) > 1 and all(s["bytes"] <= 30_000 for s in shards)
    _assert_estimates(manifest)
    assert manifest["skipped"] == {"larger_than_max_shard_bytes": 1}
    assert manifest["totals"]["samples"] == 8


def test_parse_size() -> None:
    assert parse_size("1GB") == 10**9 and parse_size("500MB") == 500 * 10**6
    assert parse_size("64MiB") == 64 * 2**20 and parse_size("1.5k") == 1500
    assert parse_size("2048") == 2048
    with pytest.raises(PackError, match="cannot read the size"):
        parse_size("lots")


# ---------------------------------------------------------------- splits and resume


def test_val_split_is_deterministic_and_disjoint(image_dir: Path, tmp_path: Path) -> None:
    runs = [
        pack(
            "images",
            image_dir,
            tmp_path / f"out{i}",
            val_fraction=0.4,
            shard_size=3,
            prefix="demo",
            **QUIET,
        )
        for i in range(2)
    ]
    hashes = [[s["sha256"] for sp in m["splits"].values() for s in sp["shards"]] for m in runs]
    assert hashes[0] == hashes[1]
    assert runs[0]["plan"]["fingerprint"] == runs[1]["plan"]["fingerprint"]
    keys = {}
    for split in ("train", "val"):
        samples = _read(tmp_path / "out0", split)
        assert samples and all(
            Path(s["__url__"]).name.startswith(f"demo-{split}-") for s in samples
        )
        for s in samples:  # the split follows the source path's hash, nothing else
            assert split_of(json.loads(s["json"])["source"], 0.4) == split
        keys[split] = {s["__key__"] for s in samples}
    assert not keys["train"] & keys["val"]
    assert len(keys["train"] | keys["val"]) == 16


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.tar")}


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in out.glob("*.tar")}


def _same_result(out: Path, clean: Path) -> None:
    assert _hashes(out) == _hashes(clean)
    ours, theirs = read_shard_manifest(out), read_shard_manifest(clean)
    for m in (ours, theirs):
        del m["arguments"]["out"]
    assert ours == theirs
    assert not list(out.glob(".*.tmp"))


@pytest.fixture(scope="module")
def clean_run(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    pack("images", image_dir, out, shard_size=3, **QUIET)
    return out


KILL_SCRIPT = """
import os, signal, sys
from mmtrain.data.pack import images, pack
build, seen = images.build, [0]
def dying_build(item):
    seen[0] += 1
    if seen[0] == 11:  # inside shard 3 (3 samples per shard): after shards 0-2 finished
        os.kill(os.getpid(), signal.SIGKILL)
    return build(item)
images.build = dying_build
pack("images", sys.argv[1], sys.argv[2], shard_size=3, progress=False)
"""


def test_resume_after_sigkill(image_dir: Path, clean_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(image_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = read_shard_manifest(out)
    assert not manifest["complete"]
    assert [s["name"] for s in manifest["splits"]["train"]["shards"]] == [
        f"train-{i:06d}.tar" for i in range(3)
    ]
    assert (out / ".train-000003.tar.tmp").exists()  # the half-written shard, not renamed
    with pytest.raises(ValueError, match="unfinished"):
        split_shards(out)
    before = _stats(out)
    pack("images", image_dir, out, shard_size=3, **QUIET)
    after = _stats(out)
    assert {name: after[name] for name in before} == before  # finished shards untouched
    _same_result(out, clean_run)


def test_resume_rewrites_missing_and_damaged_shards(
    image_dir: Path, clean_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    def crash_after_two(entry: dict) -> None:
        if entry["name"] == "train-000002.tar":
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        pack("images", image_dir, out, shard_size=3, on_shard=crash_after_two, **QUIET)
    assert sorted(_stats(out)) == [f"train-{i:06d}.tar" for i in range(3)]
    (out / "train-000000.tar").unlink()
    with open(out / "train-000001.tar", "ab") as f:
        f.write(b"\0" * 512)
    kept = _stats(out)["train-000002.tar"]
    pack("images", image_dir, out, shard_size=3, **QUIET)
    stats = _stats(out)
    assert stats["train-000002.tar"] == kept
    _same_result(out, clean_run)
    pack("images", image_dir, out, shard_size=3, **QUIET)  # complete: nothing rewritten
    assert _stats(out) == stats


def test_different_plan_needs_overwrite(image_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    pack("images", image_dir, out, shard_size=3, **QUIET)
    argv = [
        "pack",
        "images",
        str(image_dir),
        "--out",
        str(out),
        "--shard-size",
        "8",
        "--no-progress",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "different inputs or options" in err and "--overwrite" in err
    assert "Traceback" not in err
    main([*argv, "--overwrite"])
    # 18 planned (2 turn out corrupt), 8 per shard; the old 3-sample shards are gone
    assert sorted(p.name for p in out.glob("*.tar")) == [f"train-{i:06d}.tar" for i in range(3)]
    assert "packed 16 samples" in capsys.readouterr().out
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PackError, match="no packer shards.json"):
        pack("images", image_dir, foreign, **QUIET)


# ---------------------------------------------------------------- vqa


def test_vqa_groups_questions_per_image(image_dir: Path, tmp_path: Path) -> None:
    records = [
        {"image": "a/img00.jpg", "question": "what is it?", "answer": "a gradient"},
        {"image": "b/img01.png", "question": "is it noisy?", "answer": True},
        {"image": "./a/img00.jpg", "question": "how many?", "answer": 2},
        {"image": "a/missing.jpg", "question": "where?", "answer": "nowhere"},
        {"image": "a/img02.webp", "question": "no answer"},
    ]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    manifest = pack("vqa", jsonl, tmp_path / "out", images_root=image_dir, **QUIET)
    samples = {json.loads(s["json"])["source"]: s for s in _read(tmp_path / "out")}
    assert list(samples) == ["a/img00.jpg", "b/img01.png"]
    meta = json.loads(samples["a/img00.jpg"]["json"])
    assert meta["questions"] == [
        {"question": "what is it?", "answer": "a gradient"},
        {"question": "how many?", "answer": "2"},
    ]
    assert (meta["width"], meta["height"]) == (24, 20)
    assert samples["a/img00.jpg"]["jpg"] == (image_dir / "a/img00.jpg").read_bytes()
    assert json.loads(samples["b/img01.png"]["json"])["questions"][0]["answer"] == "true"
    assert manifest["skipped"] == {"bad_record": 1, "missing_image": 1}
    assert manifest["skipped_examples"]["bad_record"] == ["qa.jsonl:5"]
    _assert_estimates(manifest)


# ---------------------------------------------------------------- documents


def _funsd_entity(
    id_: int, label: str, words: list[tuple[str, list[int]]], linking: list[list[int]]
) -> dict:
    text = " ".join(w for w, _ in words)
    return {
        "id": id_,
        "text": text,
        "label": label,
        "box": [0, 0, 1, 1],
        "words": [{"text": w, "box": b} for w, b in words],
        "linking": linking,
    }


@pytest.fixture(scope="module")
def funsd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("funsd")
    (root / "annotations").mkdir()
    rng = np.random.default_rng(2)
    _image(rng, root / "images" / "page_a.png", (120, 80))  # RGB PNG: stored as is
    form_a = [
        _funsd_entity(0, "header", [("ORDER", [10, 2, 50, 12])], [[0, 1]]),
        _funsd_entity(1, "question", [("Name:", [10, 20, 40, 30])], [[0, 1], [1, 2]]),
        _funsd_entity(
            2, "answer", [("Alice", [45, 20, 70, 30]), ("Smith", [72, 20, 99, 30])], [[1, 2]]
        ),
        _funsd_entity(7, "other", [("", [0, 0, 0, 0])], []),  # no text: dropped
        _funsd_entity(5, "answer", [("2024", [45, 40, 70, 50])], [[6, 5]]),
        _funsd_entity(6, "question", [("Date:", [10, 40, 40, 50])], [[6, 5]]),
    ]
    (root / "annotations" / "page_a.json").write_text(json.dumps({"form": form_a}))
    _image(rng, root / "images" / "page_b.jpg", (60, 90), mode="L")  # converted to RGB PNG
    form_b = [_funsd_entity(0, "other", [("Page", [1, 1, 20, 9]), ("2", [22, 1, 28, 9])], [])]
    (root / "annotations" / "page_b.json").write_text(json.dumps({"form": form_b}))
    (root / "annotations" / "page_c.json").write_text(json.dumps({"form": []}))  # no image
    (root / "annotations" / "page_d.json").write_text("{not json")
    _image(rng, root / "images" / "page_d.png", (10, 10))
    return root


def test_documents_match_the_synthetic_schema(funsd_dir: Path, tmp_path: Path) -> None:
    from mmtrain.data.synth.documents import sample_document

    manifest = pack("documents", funsd_dir, tmp_path / "out", shard_size=1, **QUIET)
    assert manifest["skipped"] == {"bad_annotation": 1, "missing_image": 1}
    _assert_estimates(manifest)
    a, b = _read(tmp_path / "out")
    synthetic = sample_document(np.random.default_rng(0)).annotation()
    for sample in (a, b):
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"png", "json"}
        meta = json.loads(sample["json"])
        assert set(synthetic) <= set(meta)
        for key, value in synthetic.items():
            assert type(meta[key]) is type(value), key
        page = Image.open(io.BytesIO(sample["png"]))
        assert page.format == "PNG" and page.mode == "RGB"
        assert page.size == (meta["width"], meta["height"])

    assert a["png"] == (funsd_dir / "images/page_a.png").read_bytes()
    meta = json.loads(a["json"])
    assert meta["words"] == ["ORDER", "Name:", "Alice", "Smith", "2024", "Date:"]
    assert meta["labels"] == ["header", "question", "answer", "answer", "answer", "question"]
    assert meta["boxes"][2] == [45, 20, 70, 30]
    assert [e["id"] for e in meta["entities"]] == [0, 1, 2, 3, 4]
    assert meta["entities"][2] == {
        "id": 2,
        "label": "answer",
        "text": "Alice Smith",
        "word_ids": [2, 3],
        "box": [45, 20, 99, 30],
    }
    assert meta["links"] == [[1, 2], [4, 3]]  # [question, answer], renumbered
    assert meta["linking"] == [[0, 1], [1, 2], [4, 3]]
    assert meta["fields"] == {"Name": "Alice Smith", "Date": "2024"}

    gray = Image.open(funsd_dir / "images/page_b.jpg")
    converted = Image.open(io.BytesIO(b["png"]))
    assert np.array_equal(np.asarray(converted), np.asarray(gray.convert("RGB")))  # lossless
    assert json.loads(b["json"])["fields"] == {}


# ---------------------------------------------------------------- views3d


def _rgba_view(rng: np.random.Generator, size: int) -> np.ndarray:
    pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    pixels[..., 3] = np.where(rng.random((size, size)) < 0.3, 0, 255)  # some transparent
    pixels[0, 0, 3] = 128
    return pixels


@pytest.fixture(scope="module")
def nerf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scenes: nerf_synthetic style (transforms_train.json, RGBA, paths without .png,
    caption.txt) and plain transforms.json with near/far and a caption."""
    root = tmp_path_factory.mktemp("nerf")
    rng = np.random.default_rng(3)
    for scene, transforms, n in (
        ("lego", "transforms_train.json", 4),
        ("chair", "transforms.json", 3),
    ):
        frames = []
        for i in range(n):
            name = f"train/r_{i}"
            (root / scene / "train").mkdir(parents=True, exist_ok=True)
            if scene == "lego":
                Image.fromarray(_rgba_view(rng, 16)).save(root / scene / f"{name}.png")
            else:
                _image(rng, root / scene / f"{name}.png", (16, 16))
                name += ".png"
            pose = np.eye(4)
            pose[:3, 3] = rng.normal(size=3)
            frames.append({"file_path": f"./{name}", "transform_matrix": pose.tolist()})
        meta = {"camera_angle_x": 0.6911, "frames": frames}
        if scene == "chair":
            meta |= {"near": 2.0, "far": 6.0, "caption": "a chair"}
        else:
            (root / scene / "caption.txt").write_text("a lego bulldozer\n")
        (root / scene / transforms).write_text(json.dumps(meta))
    (root / "broken").mkdir()
    (root / "broken" / "transforms.json").write_text(json.dumps({"frames": []}))
    return root


def _composite_white(path: Path) -> np.ndarray:
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:] / 255
    return rgba[..., :3] * alpha + 255 * (1 - alpha)


def test_views3d_round_trip(nerf_dir: Path, tmp_path: Path) -> None:
    manifest = pack("views3d", nerf_dir, tmp_path / "out", shard_size=1, **QUIET)
    assert manifest["skipped"] == {"bad_transforms": 1}
    _assert_estimates(manifest, exact=True)
    samples = {json.loads(s["json"])["source"]: s for s in _read(tmp_path / "out")}
    assert list(samples) == ["chair", "lego"]
    focal = 0.5 * 16 / math.tan(0.5 * 0.6911)
    for scene, sample in samples.items():
        meta = json.loads(sample["json"])
        views = np.load(io.BytesIO(sample["views.npy"]))
        poses = np.load(io.BytesIO(sample["poses.npy"]))
        transforms = next((nerf_dir / scene).glob("transforms*.json"))
        frames = json.loads(transforms.read_text())["frames"]
        assert views.dtype == np.uint8 and views.shape == (len(frames), 16, 16, 3)
        assert poses.dtype == np.float32 and poses.shape == (len(frames), 4, 4)
        expected = np.array([f["transform_matrix"] for f in frames], dtype=np.float32)
        np.testing.assert_array_equal(poses, expected)
        assert meta["focal"] == pytest.approx(focal) and meta["views"] == len(frames)
        assert (meta["height"], meta["width"], meta["background"]) == (16, 16, "white")
    chair = json.loads(samples["chair"]["json"])
    assert (chair["caption"], chair["near"], chair["far"]) == ("a chair", 2.0, 6.0)
    lego = json.loads(samples["lego"]["json"])
    assert lego["caption"] == "a lego bulldozer" and "near" not in lego
    views = np.load(io.BytesIO(samples["lego"]["views.npy"]))
    expected = _composite_white(nerf_dir / "lego/train/r_1.png")
    assert np.abs(views[1].astype(np.float64) - expected).max() <= 1  # alpha rounding


def test_views3d_resize_and_subsample(nerf_dir: Path, tmp_path: Path) -> None:
    pack(
        "views3d",
        nerf_dir / "lego",
        tmp_path / "out",
        view_size=8,
        max_views=2,
        background="black",
        **QUIET,
    )
    (sample,) = _read(tmp_path / "out")
    meta = json.loads(sample["json"])
    views = np.load(io.BytesIO(sample["views.npy"]))
    poses = np.load(io.BytesIO(sample["poses.npy"]))
    frames = json.loads((nerf_dir / "lego/transforms_train.json").read_text())["frames"]
    assert views.shape == (2, 8, 8, 3) and meta["views"] == 2
    expected = [frames[0]["transform_matrix"], frames[3]["transform_matrix"]]
    np.testing.assert_array_equal(poses, np.array(expected, dtype=np.float32))
    assert meta["focal"] == pytest.approx(0.5 * 8 / math.tan(0.5 * 0.6911))
    assert meta["source"] == "lego" and meta["background"] == "black"


# ---------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pack", "images", "{tmp}/nowhere", "--out", "{tmp}/o"], "does not exist"),
        (["pack", "images", "{tmp}/empty", "--out", "{tmp}/o"], "no samples to pack"),
        (["pack", "vqa", "{tmp}/none.jsonl", "--out", "{tmp}/o"], "does not exist"),
        (["pack", "documents", "{tmp}/empty", "--out", "{tmp}/o"], "annotations/*.json"),
        (
            ["pack", "pictures", "{tmp}/empty", "--out", "{tmp}/o"],
            "invalid choice: 'pictures' (choose from 'images', 'vqa', 'documents', 'views3d')",
        ),
        (
            ["pack", "images", "{tmp}/empty", "--out", "{tmp}/o", "--max-shard-bytes", "big"],
            "cannot read the size",
        ),
        (
            ["pack", "images", "{tmp}/empty", "--out", "{tmp}/o", "--val-fraction", "1.5"],
            "--val-fraction must be in [0, 1)",
        ),
    ],
)
def test_cli_user_errors_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_manifest_reader(tmp_path: Path) -> None:
    assert read_shard_manifest(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="pack the data first"):
        split_shards(tmp_path)
    (tmp_path / "shards.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a mmtrain.shards manifest"):
        read_shard_manifest(tmp_path)
