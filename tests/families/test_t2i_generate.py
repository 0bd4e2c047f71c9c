"""`python -m mmtrain.generate` over an exported t2i bundle (untrained tiny model with
style presets, retrieval and a one-stage cascade): every image is watermarked and tagged
with the bundle's manifest hash and its seed, C2PA-signed with a test CA, and bad input
fails with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmtrain.config.validate import validate
from mmtrain.curriculum.joint import JointModule
from mmtrain.export.bundle import export_families
from mmtrain.families.restore.config import RestoreConfig
from mmtrain.families.restore.export import export as export_restore
from mmtrain.families.restore.module import Restore
from mmtrain.families.t2i import rag
from mmtrain.families.t2i.module import TextToImage
from mmtrain.files import sha256_file
from mmtrain.generate.__main__ import main
from mmtrain.generate.bundle import load_bundle
from mmtrain.generate.images import generate
from mmtrain.provenance import ProvenanceConfig, verify
from mmtrain.provenance.metadata import prompt_sha256
from mmtrain.run.directory import RunDir
from tests.conftest import compose
from tests.provenance.conftest import test_ca  # noqa: F401 (the session's test CA fixture)

PROMPT = "a tomato on a white background"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny 16 px t2i model with styles, retrieval and an x2 refiner (an untrained restore
    model: its residual skip makes it exact bicubic), exported as `mmtrain.export` does."""
    tmp = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    export_restore(Restore(RestoreConfig(task="super_resolution", scale=2)), tmp / "sr")
    kb = rag.build_facts(tmp / "kb")
    run = validate(compose(
        "+recipe=t2i_pretrain", "model.t2i.sampler.steps=3",
        "model.t2i.styles.names=[photographic,illustration]",
        f"model.t2i.rag.knowledge_base={kb}", "model.t2i.rag.top_k=1",
        f"model.t2i.cascade=[{{refiner: '{tmp / 'sr'}', scale: 2}}]"))
    model = TextToImage(run.model["t2i"])
    model.latent_scale.fill_(1.0)
    [folder] = export_families(JointModule({"t2i": model}), run, RunDir(tmp / "run"),
                               tmp / "export", step=0)
    return folder


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtrain.generate", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_watermarked_images_whose_metadata_names_bundle_and_seed(bundle, tmp_path):
    out = tmp_path / "out"
    proc = cli("--bundle", str(bundle), "--prompt", PROMPT, "--seed", "7", "--n", "2",
               "--style", "illustration", "--sampler", "dpm", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = sha256_file(bundle / "manifest.json")
    report = json.loads((out / "report.json").read_text())
    assert report["manifest_sha256"] == digest and report["sampler"] == "dpm_solver"
    assert report["prompt_sha256"] == prompt_sha256(PROMPT)
    assert PROMPT not in (out / "report.json").read_text()  # only its hash travels
    assert [s["scale"] for s in report["cascade"]] == [2]
    for seed, entry in zip((7, 8), report["images"], strict=True):
        assert entry["seed"] == seed and entry["size"] == [32, 32]  # 16 px base, x2 stage
        assert entry["style"] == "illustration"
        assert entry["retrieved"][0]["source"] == "objects"  # "A tomato is a red circle."
        assert "tomato" in entry["retrieved"][0]["text"]
        found = verify(out / entry["file"])
        assert found.ok and found.watermark.found and found.watermark.bit_accuracy == 1.0
        assert found.metadata["manifest_sha256"] == digest
        assert found.metadata["seed"] == str(seed)
        assert found.metadata["prompt_sha256"] == prompt_sha256(PROMPT)
    # the verify CLI on a generated image
    check = subprocess.run([sys.executable, "-m", "mmtrain.provenance", "verify",
                            str(out / report["images"][1]["file"]), "--json"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    verdict = json.loads(check.stdout)
    assert verdict["watermark"]["found"] and verdict["metadata"]["seed"] == "8"
    assert verdict["metadata"]["manifest_sha256"] == digest
    # an image's recorded seed alone reproduces it (in process, same bundle)
    again = generate(load_bundle(bundle), PROMPT, tmp_path / "again", seed=8,
                     style="illustration", sampler="dpm")
    first = np.asarray(Image.open(out / report["images"][1]["file"]))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" /
                                                       again["images"][0]["file"])))


def test_signed_images_carry_a_c2pa_manifest_that_validates(bundle, test_ca, tmp_path):  # noqa: F811
    config = ProvenanceConfig(cert_path=str(test_ca["chain"]), key_path=str(test_ca["key"]))
    report = generate(load_bundle(bundle), PROMPT, tmp_path, seed=1, provenance=config)
    found = verify(tmp_path / report["images"][0]["file"], trust_anchors=str(test_ca["ca"]))
    assert found.ok and found.c2pa.present and found.c2pa.state == "Trusted"
    assert found.c2pa.generation["manifest_sha256"] == report["manifest_sha256"]
    assert found.c2pa.generation["seed"] == 1 and found.watermark.found


def test_base_images_too_small_for_the_watermark_get_metadata_and_a_warning(bundle, tmp_path,
                                                                             capsys):
    report = generate(load_bundle(bundle), PROMPT, tmp_path, seed=2, refine=False)
    entry = report["images"][0]
    assert entry["size"] == [16, 16] and entry["watermark"].startswith("skipped: a 16x16")
    assert "32 px" in capsys.readouterr().err
    found = verify(tmp_path / entry["file"])
    assert found.ok and found.metadata["seed"] == "2" and found.metadata["watermark"] == "none"


def test_bad_bundle_sampler_style_exit_2_with_the_fix(bundle, tmp_path, capsys):
    base = ["--prompt", "a red shape", "--out", str(tmp_path / "o")]
    cases = [
        (["--bundle", str(tmp_path / "nope")], "does not exist; export one with `python -m "
                                               "mmtrain.export"),
        (["--bundle", str(bundle / "unet")], "has no manifest.json, so it is not an mmtrain "
                                             "export bundle"),
        (["--bundle", str(bundle), "--sampler", "euler"], "unknown sampler 'euler'; valid: "
                                                          "ddim, ddpm, dpm"),
        (["--bundle", str(bundle), "--style", "anime"], "unknown style 'anime'; this bundle "
                                                        "knows photographic, illustration"),
        (["--bundle", str(bundle), "--sign-cert", str(tmp_path / "c.pem")],
         "set both cert_path and key_path"),
    ]
    for args, message in cases:
        assert main([*args, *base]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.png"))
    # a bundle whose files changed after export no longer names its model
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(bundle, tampered)
    (tampered / "refiners" / "cascade.json").write_text('{"stages": []}')
    assert main(["--bundle", str(tampered), *base]) == 2
    assert "differ from the manifest (refiners/cascade.json)" in capsys.readouterr().err
    # and the real entry point exits non-zero too
    proc = cli("--bundle", str(tmp_path / "nope"), *base)
    assert proc.returncode == 2 and "error: bundle" in proc.stderr
