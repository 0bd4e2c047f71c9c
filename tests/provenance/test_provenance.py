"""Provenance: watermark, PNG metadata and C2PA round trips on real images, tampering,
and the verify CLI."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from mmtrain.data.synth.scenes import render_scene, sample_scene
from mmtrain.provenance import ProvenanceConfig, UnreadableImage, stamp, verify, watermark
from mmtrain.provenance.metadata import prompt_sha256

DIGEST = "3f" * 32
PROMPT = "a large red circle at the left, Jane Doe's kitchen"


def scene(size: int, seed: int = 0) -> Image.Image:
    return render_scene(sample_scene(np.random.default_rng(seed)), size)


def photo(size: int, seed: int = 0) -> Image.Image:
    """A photo-like texture (smooth colour fields + grain), not a flat synthetic scene."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (size, size), Image.BICUBIC)
    grain = rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(coarse, float) + grain, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize("image", [scene(32), scene(64, 1), photo(48), photo(256)],
                         ids=["scene32", "scene64", "photo48", "photo256"])
def test_watermark_round_trip_decodes_the_payload(image, tmp_path):
    png = stamp(image, manifest_sha256=DIGEST, seed=1, prompt=PROMPT, out=tmp_path / "a.png")
    report = verify(tmp_path / "a.png")
    mark = report.watermark
    assert mark.found and mark.payload_text == "mt" and mark.bit_accuracy == 1.0
    assert report.message_source == "metadata" and report.ok
    marked = Image.open(io.BytesIO(png)).convert("RGB")
    diff = np.abs(np.asarray(marked, int) - np.asarray(image.convert("RGB"), int))
    assert diff.mean() < 1.5, "the watermark should be invisible"  # PSNR ~42 dB measured


def test_unmarked_images_are_not_flagged():
    hits = [watermark.detect(img, "mt").found
            for img in [scene(32, s) for s in range(40)] + [photo(64), photo(256)]]
    assert sum(hits) == 0


def test_watermark_survives_jpeg_q90_from_256_px():
    for image in (scene(256, 3), scene(256, 4), photo(256), photo(512, 1)):
        marked = watermark.embed(image, watermark.message_bits("mt"))
        result = watermark.detect(jpeg(marked, 90), "mt")
        assert result.payload_text == "mt" and result.found, result


def test_images_too_small_for_the_message_are_refused_and_reported(tmp_path):
    with pytest.raises(ValueError, match="holds 4 watermark bits.*at least 32 px"):
        stamp(scene(16), manifest_sha256=DIGEST, seed=0, prompt="x")
    # watermark off: the metadata still goes in; verify says why it did not look
    stamp(scene(16), manifest_sha256=DIGEST, seed=0, prompt="x", out=tmp_path / "s.png",
          config=ProvenanceConfig(watermark=False))
    report = verify(tmp_path / "s.png")
    assert "too small" in report.watermark.note and report.metadata["watermark"] == "none"
    assert report.ok  # the metadata was found and nothing contradicts it


def test_png_metadata_round_trip_keeps_only_the_prompt_hash(tmp_path):
    png = stamp(scene(32), manifest_sha256=DIGEST, seed=1234, prompt=PROMPT, out=tmp_path / "a.png")
    fields = verify(tmp_path / "a.png").metadata
    assert fields["manifest_sha256"] == DIGEST and fields["seed"] == "1234"
    assert fields["prompt_sha256"] == prompt_sha256(PROMPT) and fields["version"]
    assert b"Jane Doe" not in png and b"kitchen" not in png
    # a plain re-save drops the text chunks; the watermark in the pixels stays
    Image.open(tmp_path / "a.png").save(tmp_path / "b.png")
    resaved = verify(tmp_path / "b.png")
    assert resaved.metadata == {} and resaved.watermark.found and resaved.message_source == "default"


def _signed(tmp_path, test_ca, image=None) -> bytes:
    config = ProvenanceConfig(cert_path=str(test_ca["chain"]), key_path=str(test_ca["key"]))
    return stamp(image or scene(64, 2), manifest_sha256=DIGEST, seed=7, prompt=PROMPT,
                 config=config, out=tmp_path / "signed.png")


def test_c2pa_manifest_signs_and_validates(tmp_path, test_ca):
    _signed(tmp_path, test_ca)
    report = verify(tmp_path / "signed.png")
    c2pa = report.c2pa
    assert c2pa.present and c2pa.state == "Valid" and report.ok
    assert c2pa.failures == ["signingCredential.untrusted"]  # our CA is in no trust list
    assert c2pa.signer["common_name"] == "mmtrain test signer"
    assert c2pa.generation == {**report.metadata, "seed": 7}
    assert c2pa.claim_generator.startswith("mmtrain")
    trusted = verify(tmp_path / "signed.png", trust_anchors=str(test_ca["ca"]))
    assert trusted.c2pa.state == "Trusted" and trusted.c2pa.failures == []
    assert report.watermark.found  # signing keeps the pixels


def _replace_pixels(png: bytes, pixels: np.ndarray) -> bytes:
    """The same PNG chunks (text, C2PA) around new pixel data: an edit that keeps the
    manifest, as a forger would."""
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels.astype(np.uint8))
    body = zlib.compress(raw)
    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    out, pos, done = [png[:8]], 8, False
    while pos < len(png):
        length = struct.unpack(">I", png[pos:pos + 4])[0]
        kind, chunk = png[pos + 4:pos + 8], png[pos:pos + 12 + length]
        if kind != b"IDAT":
            out.append(chunk)
        elif not done:
            out.append(idat)
            done = True
        pos += 12 + length
    return b"".join(out)


def _set_seed(png: bytes, seed: str) -> bytes:
    """Rewrites the seed text chunk with a valid CRC (Pillow refuses bad CRCs)."""
    old = png.index(b"mmtrain:seed\x00") - 4
    length = struct.unpack(">I", png[old - 4:old])[0]
    body = b"tEXt" + b"mmtrain:seed\x00" + seed.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:old - 4] + chunk + png[old + 4 + length + 4:]


def test_tampered_pixels_and_metadata_fail_c2pa_validation(tmp_path, test_ca):
    png = _signed(tmp_path, test_ca)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).copy()
    pixels[10:14, 10:14] = 255
    (tmp_path / "pixels.png").write_bytes(_replace_pixels(png, pixels))
    report = verify(tmp_path / "pixels.png")
    assert report.c2pa.state == "Invalid" and "assertion.dataHash.mismatch" in report.c2pa.failures
    assert not report.ok and "fails validation" in report.problems[0]
    (tmp_path / "seed.png").write_bytes(_set_seed(png, "8"))
    report = verify(tmp_path / "seed.png")
    assert report.c2pa.state == "Invalid" and report.metadata["seed"] == "8"
    assert any("disagrees" in p for p in report.problems)


def test_bad_signing_setups_are_refused_with_a_fix(tmp_path, test_ca):
    config = ProvenanceConfig(cert_path=str(test_ca["bare"]), key_path=str(test_ca["key"]))
    with pytest.raises(ValueError, match="extended key usage.*authority key identifier"):
        stamp(scene(32), manifest_sha256=DIGEST, seed=0, prompt="x", config=config)
    with pytest.raises(ValueError, match="both cert_path and key_path"):
        ProvenanceConfig(cert_path="a.pem")
    with pytest.raises(UnreadableImage, match="not an image"):
        (tmp_path / "x.png").write_text("hello")
        verify(tmp_path / "x.png")


def test_cli_verify_and_stamp(tmp_path, test_ca):
    """One process per command, as a user runs them: stamp+sign, verify (text and JSON),
    then exit codes for an unmarked image, a tampered one and a non-image."""
    scene(64, 5).save(tmp_path / "in.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(tmp_path / "plain.png")
    (tmp_path / "notes.txt").write_text("not an image")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mmtrain.provenance", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    made = cli("stamp", tmp_path / "in.png", tmp_path / "out.png", "--manifest-sha256", DIGEST,
               "--seed", 5, "--prompt", "a blue square", "--cert", test_ca["chain"],
               "--key", test_ca["key_sec1"])
    assert made.returncode == 0, made.stderr
    ok = cli("verify", tmp_path / "out.png", "--json", "--trust-anchors", test_ca["ca"])
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["watermark"]["payload_text"] == "mt"
    assert report["c2pa"]["state"] == "Trusted" and report["metadata"]["seed"] == "5"
    text = cli("verify", tmp_path / "out.png")
    assert text.returncode == 0 and "FOUND" in text.stdout and "c2pa: Valid" in text.stdout
    plain = cli("verify", tmp_path / "plain.png")
    assert plain.returncode == 1 and "no provenance found" in plain.stderr
    png = (tmp_path / "out.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(_set_seed(png, "6"))
    bad = cli("verify", tmp_path / "bad.png")
    assert bad.returncode == 1 and "PROBLEM" in bad.stdout and "FAILED" in bad.stdout
    junk = cli("verify", tmp_path / "notes.txt")
    assert junk.returncode == 2 and "not an image format" in junk.stderr
