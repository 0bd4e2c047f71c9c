"""The synthetic world: determinism, readable shards, per-kind invariants, idempotence, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from mmtrain.data.__main__ import main
from mmtrain.data.synth import writer
from mmtrain.data.synth.documents import LABELS, PAPER
from mmtrain.data.synth.scenes import BACKGROUNDS, COLOURS, dominant_colour
from mmtrain.data.synth.views3d import AMBIENT, BACKGROUND
from mmtrain.data.synth.writer import KINDS, SCHEMAS, world_shards, write_world

SMALL = {"train_samples": 6, "val_samples": 3, "shard_size": 4, "progress": False}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    write_world(out, seed=0, **SMALL)
    return out


def _read(world: Path, kind: str, split: str = "train") -> list[dict]:
    urls = world_shards(world, kind, split)
    return list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))


def _shard_hashes(manifest: dict) -> dict[str, str]:
    return {
        shard["name"]: shard["sha256"]
        for kind in manifest["kinds"].values()
        for split in kind["splits"].values()
        for shard in split["shards"]
    }


def _manifest(world: Path) -> dict:
    return json.loads((world / "manifest.json").read_text())


def test_manifest_describes_every_shard(world: Path) -> None:
    manifest = _manifest(world)
    assert manifest["seed"] == 0 and manifest["version"] == writer.VERSION
    for kind in KINDS:
        entry = manifest["kinds"][kind]
        assert entry["schema"] == SCHEMAS[kind]
        train, val = entry["splits"]["train"], entry["splits"]["val"]
        assert [s["name"] for s in train["shards"]] == [
            f"{kind}/train-000000.tar",
            f"{kind}/train-000001.tar",
        ]
        assert [s["samples"] for s in train["shards"]] == [4, 2] and val["samples"] == 3
    for name, sha in _shard_hashes(manifest).items():
        assert hashlib.sha256((world / name).read_bytes()).hexdigest() == sha


def test_same_seed_same_bytes_and_a_new_seed_regenerates(world: Path, tmp_path: Path) -> None:
    again = write_world(tmp_path / "again", seed=0, **SMALL)
    assert _shard_hashes(again) == _shard_hashes(_manifest(world))
    other = write_world(tmp_path / "again", seed=1, **SMALL)  # replaces the seed-0 world
    assert other["seed"] == 1 and _manifest(tmp_path / "again") == other
    old = _shard_hashes(again)
    assert all(sha != old[name] for name, sha in _shard_hashes(other).items())


def test_val_draws_from_its_own_stream(world: Path) -> None:
    train, val = _read(world, "views3d", "train"), _read(world, "views3d", "val")
    assert not np.array_equal(train[0]["poses.npy"], val[0]["poses.npy"])


@pytest.mark.parametrize("kind", KINDS)
def test_samples_have_every_field_and_decode(world: Path, kind: str) -> None:
    for split, count in (("train", 6), ("val", 3)):
        samples = _read(world, kind, split)
        assert len(samples) == count
        for sample in samples:
            assert set(SCHEMAS[kind]) <= set(sample)
            assert sample["__key__"].startswith(f"{kind}_{split}_")
            assert isinstance(sample["json"], dict)


def test_scene_caption_colour_is_the_dominant_colour(world: Path) -> None:
    samples = _read(world, "scenes") + _read(world, "scenes", "val")
    for sample in samples:
        colour = sample["json"]["colour"]
        assert colour in sample["txt"].split()
        assert sample["png"].mode == "RGB" and sample["png"].size == (64, 64)
        assert dominant_colour(sample["png"]) == colour
        assert sample["json"]["questions"][0] == {
            "question": "what colour is the shape?",
            "answer": colour,
        }
    assert len({s["json"]["caption_template"] for s in samples}) > 1


def test_document_boxes_labels_and_links(world: Path) -> None:
    for sample in _read(world, "documents"):
        doc, page = sample["json"], np.asarray(sample["png"])
        height, width = page.shape[:2]
        assert (doc["width"], doc["height"]) == (width, height) == (256, 256)
        assert len(doc["words"]) == len(doc["boxes"]) == len(doc["labels"])
        assert set(doc["labels"]) <= set(LABELS) and "question" in doc["labels"]

        ink = (page != PAPER).any(-1)
        covered = np.zeros_like(ink)
        for x0, y0, x1, y1 in doc["boxes"]:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert ink[y0:y1, x0:x1].any()  # every box holds drawn text
            covered[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = True
        assert not (ink & ~covered).any()  # and no text lies outside the boxes

        entities = {e["id"]: e for e in doc["entities"]}
        for entity in entities.values():
            assert {doc["labels"][i] for i in entity["word_ids"]} == {entity["label"]}
            assert " ".join(doc["words"][i] for i in entity["word_ids"]) == entity["text"]
        fields = {}
        for question, answer in doc["links"]:
            assert entities[question]["label"] == "question"
            assert entities[answer]["label"] == "answer"
            fields[entities[question]["text"].removesuffix(":")] = entities[answer]["text"]
        assert fields == doc["fields"] and fields


def test_views3d_poses_are_rigid_and_the_object_is_seen_everywhere(world: Path) -> None:
    background = np.array(BACKGROUNDS[BACKGROUND])
    for sample in _read(world, "views3d"):
        meta, views, poses = sample["json"], sample["views.npy"], sample["poses.npy"]
        assert views.shape == (8, 32, 32, 3) and views.dtype == np.uint8
        assert poses.shape == (8, 4, 4) and poses.dtype == np.float32
        assert meta["caption"] == f"a {meta['colour']} {meta['kind']}"
        assert 0 < meta["near"] < meta["far"] and meta["focal"] > 0

        rotations, eyes = poses[:, :3, :3], poses[:, :3, 3]
        np.testing.assert_allclose(
            rotations @ rotations.transpose(0, 2, 1), np.eye(3)[None].repeat(8, 0), atol=1e-5
        )
        np.testing.assert_allclose(np.linalg.det(rotations), 1, atol=1e-5)
        np.testing.assert_array_equal(poses[:, 3], [[0, 0, 0, 1]] * 8)
        forward = -rotations[:, :, 2]  # OpenGL: the camera looks down its -z axis
        to_origin = -eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
        np.testing.assert_allclose(forward, to_origin, atol=1e-5)

        foreground = (views != background).any(-1)
        assert foreground.sum(axis=(1, 2)).min() > 20  # visible in every view
        ys, xs = np.nonzero(foreground[0])  # cameras aim at the object: it is centred
        assert abs(xs.mean() + 0.5 - 16) < 3 and abs(ys.mean() + 0.5 - 16) < 3
        # Lambertian shading only scales the object's colour.
        colour, pixels = np.array(COLOURS[meta["colour"]], float), views[foreground].astype(float)
        scale = pixels.sum(-1) / colour.sum()
        assert scale.min() >= AMBIENT - 0.02
        assert np.abs(pixels - scale[:, None] * colour).max() <= 1.5


def test_second_call_reuses_the_world(world: Path) -> None:
    files = [world / "manifest.json", *world.glob("*/*.tar")]
    before = [f.stat().st_mtime_ns for f in files]
    assert write_world(world, seed=0, **SMALL) == _manifest(world)
    assert [f.stat().st_mtime_ns for f in files] == before


def test_concurrent_writers_generate_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generations, real_generate = [], writer._generate

    def counted_generate(*args: object) -> dict:
        generations.append(args)
        return real_generate(*args)

    monkeypatch.setattr(writer, "_generate", counted_generate)
    kwargs = {**SMALL, "kinds": ["scenes"]}
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(write_world(tmp_path / "w", **kwargs)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(generations) == 1 and len(results) == 2 and results[0] == results[1]


def test_failed_generation_keeps_the_last_good_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "w"
    good = write_world(out, kinds=["scenes"], **SMALL)

    def broken(*args: object) -> dict:
        raise RuntimeError("killed mid-generation")

    monkeypatch.setitem(writer._SAMPLERS, "documents", broken)
    with pytest.raises(RuntimeError, match="killed"):
        write_world(out, kinds=["scenes", "documents"], **SMALL)
    assert _manifest(out) == good and writer._is_complete(out, good)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lock", "w"]  # no temp dir left


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing"):
        write_world(tmp_path, kinds=["scenes"], **SMALL)


def test_cli_writes_a_world(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "mmtrain.data",
        "synth",
        "--out",
        str(out),
        "--samples",
        "3",
        "--val-samples",
        "1",
        "--kinds",
        "scenes,views3d",
        "--shard-size",
        "2",
        "--scene-size",
        "32",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and "train 3 samples" in result.stdout
    manifest = _manifest(out)
    assert list(manifest["kinds"]) == ["scenes", "views3d"]
    assert manifest["arguments"]["scene_size"] == 32
    assert _read(out, "scenes")[0]["png"].size == (32, 32)


def test_cli_rejects_an_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path / "x"), "--kinds", "scenes,videos"])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert "videos" in error and "valid kinds: scenes, documents, views3d" in error
    assert not (tmp_path / "x").exists()
