"""`python -m mmtrain.data inspect`: counts, bad samples by reason, manifests, contact sheet."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from mmtrain.data.__main__ import main
from mmtrain.data.inspect import SheetCollector, inspect_shards
from mmtrain.data.inspect.sheet import COLUMNS, THUMB, tile_size
from mmtrain.data.sources import DataError
from mmtrain.data.synth.writer import write_world
from tests.data.shardkit import png, truncate, write_shards

BROKEN = {"train-0-3": "image", "train-1-2": "caption"}


@pytest.fixture(scope="module")
def bad_shards(tmp_path_factory) -> Path:
    """3 shards of 10: a broken image in shard 0, a missing caption in shard 1, shard 2
    truncated (5 samples survive)."""
    folder = tmp_path_factory.mktemp("bad")
    shards = write_shards(folder, [10, 10, 10], broken=BROKEN)
    truncate(shards[2], keep=0.45)
    return folder


def cli(*args: str, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(["inspect", "--no-progress", *args])
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def test_counts_fields_bytes_and_keys_per_shard_and_in_total(tmp_path):
    shards = write_shards(tmp_path, [4, 6])
    report = inspect_shards(str(tmp_path))
    assert report.ok and report.shards_matched == 2 and report.samples == 10
    assert report.fields == {"png": 10, "txt": 10} and report.bad == {}
    assert [s.samples for s in report.shards] == [4, 6]
    assert all(s.complete for s in report.shards)
    assert report.shards[1].example_keys == ["train-1-0", "train-1-1", "train-1-2"]
    assert report.example_keys[:4] == ["train-0-0", "train-0-1", "train-0-2", "train-1-0"]
    assert [s.file_bytes for s in report.shards] == [os.path.getsize(s) for s in shards]
    assert report.file_bytes == sum(os.path.getsize(s) for s in shards)
    assert 0 < report.bytes == sum(s.bytes for s in report.shards) < report.file_bytes
    assert report.image_sizes == {"8x8": 10}
    # A pipe: pattern and a brace range read the same samples.
    piped = inspect_shards(f"pipe:cat {shards[1]}")
    assert piped.samples == 6 and piped.shards[0].file_bytes is None
    braced = inspect_shards(str(tmp_path / "train-{000000..000001}.tar"), limit=5)
    assert braced.samples == 5 and [s.samples for s in braced.shards] == [4, 1]
    assert [s.complete for s in braced.shards] == [True, False]


def test_family_decoder_reasons_with_shard_and_key(bad_shards):
    report = inspect_shards(str(bad_shards), family="t2i")
    assert report.bad == {"corrupt_image": 1, "missing_caption": 1, "unreadable_shard": 1}
    assert report.samples == 25 and report.bad_samples == 2 and not report.ok
    (image,), (caption,) = report.bad_examples["corrupt_image"], report.bad_examples[
        "missing_caption"]
    assert (Path(image.shard).name, image.key) == ("train-000000.tar", "train-0-3")
    assert (Path(caption.shard).name, caption.key) == ("train-000001.tar", "train-1-2")
    (broken,) = report.bad_examples["unreadable_shard"]
    assert Path(broken.shard).name == "train-000002.tar"
    assert "after 5 sample(s)" in broken.detail and "train-2-4" in broken.detail
    assert [s.bad for s in report.shards] == [
        {"corrupt_image": 1}, {"missing_caption": 1}, {"unreadable_shard": 1}]
    assert report.shards[2].error and not report.shards[2].complete
    assert report.family_fields == {"image": 25, "caption": 24}


def test_generic_checks_without_a_family(bad_shards, tmp_path):
    report = inspect_shards(str(bad_shards))
    assert report.bad == {"corrupt_image": 1, "missing_txt": 1, "unreadable_shard": 1}
    assert report.bad_examples["missing_txt"][0].key == "train-1-2"
    # Every generic field check, on hand-made samples.
    good = {"png": png(1), "txt": b"a caption", "json": b'{"caption": "x"}',
            "views.npy": _npy(np.zeros((2, 8, 8, 3), np.uint8))}
    bad = {"b-json": {"json": b"{not json"}, "b-npy": {"views.npy": b"\x93NUMPY nonsense"},
           "b-txt": {"txt": b"\xff\xfe\xfa"}, "b-img": {"png": png(2)[:-30]}}
    with wds.TarWriter(str(tmp_path / "mixed-000000.tar")) as tar:
        for i in range(6):
            tar.write({"__key__": f"good-{i}", **good})
        for key, fields in bad.items():
            tar.write({"__key__": key, **{**good, **fields}})
    report = inspect_shards(str(tmp_path / "mixed-*.tar"))
    assert report.bad == {"corrupt_json": 1, "corrupt_npy": 1, "corrupt_text": 1,
                          "corrupt_image": 1}
    assert {r: ex[0].key for r, ex in report.bad_examples.items()} == {
        "corrupt_json": "b-json", "corrupt_npy": "b-npy", "corrupt_text": "b-txt",
        "corrupt_image": "b-img"}


def test_cli_json_and_a_contact_sheet_with_drawn_thumbnails(bad_shards, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    code, out, _ = cli(str(bad_shards), "--family", "t2i", "--json", "--sheet", str(sheet),
                       "--sheet-samples", "12", capsys=capsys)
    assert code == 1  # problems found
    report = json.loads(out)
    assert report["samples"] == 25 and report["bad"]["corrupt_image"] == 1
    assert report["sheet"] == str(sheet) and report["ok"] is False
    image = np.asarray(Image.open(sheet).convert("RGB"))
    width, height = tile_size()
    assert image.shape == (2 * height, COLUMNS * width, 3)  # 12 tiles: 8 + 4
    # Thumbnails of random 8x8 images: many colours inside the first tile's image box.
    first = image[4:4 + THUMB, 4:4 + THUMB].reshape(-1, 3)
    assert len(np.unique(first, axis=0)) > 30
    # Tile 3 (train-0-3, broken image) is a grey placeholder, not an image.
    placeholder = image[4:4 + THUMB, 3 * width + 4:3 * width + 4 + THUMB].reshape(-1, 3)
    assert (placeholder == 225).all(axis=1).mean() > 0.7
    assert (first == 225).all(axis=1).mean() < 0.1
    # The caption text was drawn under the tiles (dark pixels in the text band).
    assert (image[THUMB + 8:height, :width] < 100).any()

    code, out, _ = cli(str(bad_shards), "--no-sheet", capsys=capsys)
    assert code == 1 and "corrupt_image" in out and "train-0-3" in out
    assert "unreadable_shard" in out and "train-000002.tar" in out and "missing_txt" in out


def test_world_manifest_matches_and_views_are_drawn(tmp_path):
    world = tmp_path / "world"
    write_world(world, kinds=["views3d", "documents"], train_samples=6, val_samples=2,
                shard_size=4, progress=False)
    sheet = SheetCollector(4)
    report = inspect_shards(str(world / "views3d"), sheet=sheet)
    assert report.ok and report.samples == 8 and report.manifest_shards == 3
    assert report.manifests == [str(world / "manifest.json")]
    assert report.fields == {"json": 8, "poses.npy": 8, "views.npy": 8}
    assert all(t.image is not None for t in sheet.tiles)  # the first view of each sample
    docs = SheetCollector(2)
    inspect_shards(str(world / "documents" / "train-*.tar"), sheet=docs)
    assert docs.tiles[0].image is not None and ":" in docs.tiles[0].caption  # json fields


def test_manifest_mismatches_are_reported(tmp_path, bad_shards):
    shards = write_shards(tmp_path, [3, 4])
    entries = [{"name": Path(s).name, "samples": n, "bytes": os.path.getsize(s)}
               for s, n in zip(shards, [3, 5], strict=True)]
    entries.append({"name": "train-000009.tar", "samples": 2, "bytes": 10})
    (tmp_path / "shards.json").write_text(json.dumps({
        "format": "mmtrain.shards", "version": 1, "complete": True,
        "splits": {"train": {"samples": 10, "shards": entries}}}))
    report = inspect_shards(str(tmp_path))
    problems = {Path(m.shard).name: m.problem for m in report.manifest_mismatches}
    assert problems == {"train-000001.tar": "manifest says 5 samples, read 4",
                        "train-000009.tar": "listed with 2 samples, but the file is missing"}
    assert not report.ok and report.manifest_shards == 2
    # --limit cuts a shard short: its count is not compared.
    assert inspect_shards(str(tmp_path), limit=2).manifest_mismatches[0].shard.endswith("09.tar")


def test_unknown_family_and_bad_patterns_fail_cleanly(tmp_path, capsys):
    write_shards(tmp_path, [2])
    code, _, err = cli(str(tmp_path), "--family", "nope", capsys=capsys)
    assert code == 2 and "unknown family 'nope'; valid families:" in err
    with pytest.raises(DataError, match="holds no samples"):
        write_shards(tmp_path / "empty", [0])
        inspect_shards(str(tmp_path / "empty"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all" * 40)
    code, _, err = cli(str(tmp_path / "junk.tar"), capsys=capsys)
    assert code == 2 and "not a readable tar file" in err
    # The real command line: a clean message, exit 2, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "mmtrain.data", "inspect", str(tmp_path / "nowhere/x-*.tar")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=os.environ.copy())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no shards match" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "inspect-contact-sheet.png").exists()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_truncated_tar_member_is_the_shard_not_the_sample(tmp_path):
    # A tar whose first member is whole and second is cut: one sample read, then the
    # shard reports unreadable with where it broke.
    with wds.TarWriter(str(tmp_path / "t-000000.tar")) as tar:
        for i in range(3):
            tar.write({"__key__": f"k{i}", "png": png(i, size=32), "txt": b"x"})
    data = (tmp_path / "t-000000.tar").read_bytes()
    with tarfile.open(tmp_path / "t-000000.tar") as t:
        cut = t.getmembers()[3].offset_data + 10  # inside k1's second member
    (tmp_path / "t-000000.tar").write_bytes(data[:cut])
    report = inspect_shards(str(tmp_path))
    assert report.samples == 1 and report.bad == {"unreadable_shard": 1}
    assert "after 1 sample(s)" in report.bad_examples["unreadable_shard"][0].detail
