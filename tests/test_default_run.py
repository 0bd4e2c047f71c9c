"""The README's main job, run as a user runs it: it finishes, learns, and exports a
pipeline that diffusers loads offline and that draws the colour it is asked for."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtrain.data.synth.scenes import COLOURS, dominant_colour
from mmtrain.export.bundle import verify
from tests.conftest import run_mmtrain

# The fixture below trains the full default run (several minutes on 2 cores).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, float, str]:
    cwd = tmp_path_factory.mktemp("default")
    start = time.time()
    out = run_mmtrain("+recipe=joint_finetune", cwd=cwd, timeout=1700)
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], time.time() - start, out.stdout


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_default_run_finishes_and_says_where_its_outputs_are(default_run):
    run, wall, stdout = default_run
    print(f"default run wall time: {wall:.0f} s")  # recorded in the CI log (-s / durations)
    assert f"run finished: {run}" in stdout
    for part in ("checkpoints/last.ckpt", "config.yaml", "provenance.json",
                 "metrics/metrics.csv", "export/t2i/model_index.json"):
        assert (run / part).exists(), part
    assert sorted(p.name for p in (run / "samples").glob("t2i-samples-*.png"))
    provenance = json.loads((run / "provenance.json").read_text())[0]
    assert provenance["packages"]["torch"] and provenance["argv"][-1] == "+recipe=joint_finetune"


@pytest.mark.slow
def test_default_run_learns(default_run):
    run, _, _ = default_run
    rows = metric_rows(run)
    diffusion = [float(r["train/t2i/diffusion"]) for r in rows if r.get("train/t2i/diffusion")]
    assert np.mean(diffusion[-5:]) < 0.7 * np.mean(diffusion[:5]), diffusion
    colour = [float(r["val/t2i/colour_match"]) for r in rows if r.get("val/t2i/colour_match")]
    assert colour[0] < 0.5  # the untrained model draws no particular colour
    # The bar: >= 80% of "a <colour> shape" samples show that colour (chance 1/6).
    # Measured 0.875 here (24 samples, seed 0, EMA weights, through the stock pipeline).
    # The small model is sensitive to the data order: other orders/lengths measured
    # 0.46-0.92 (see the issue notes); 800 diffusion steps cleared the bar.
    assert colour[-1] >= 0.8, colour


@pytest.mark.slow
def test_export_loads_offline_and_draws_the_prompted_colour(default_run):
    from diffusers import DiffusionPipeline

    run, _, _ = default_run
    bundle = run / "export" / "t2i"
    assert verify(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["family"] == "t2i" and manifest["source"]["step"] > 0
    pipe = DiffusionPipeline.from_pretrained(bundle)  # HF_HUB_OFFLINE=1 (conftest)
    art = manifest["artifact"]
    prompts = [f"a {c} shape" for c in COLOURS for _ in range(4)]
    images = pipe(prompts, num_inference_steps=art["sampling_steps"],
                  guidance_scale=art["guidance_scale"], height=art["resolution"],
                  width=art["resolution"], generator=torch.Generator().manual_seed(123)).images
    hits = sum(dominant_colour(img) == p.split()[1] for img, p in zip(images, prompts, strict=True))
    # Fresh seeds the run never validated on: measured 0.75-0.875 (seeds 0, 7, 123); the bar
    # is lower than validation's to leave room for seed variance.
    assert hits / len(prompts) >= 0.7, hits


@pytest.mark.slow
def test_export_cli_reproduces_the_end_of_run_bundle(default_run, tmp_path):
    run, _, _ = default_run
    run_mmtrain(f"run={run}", f"out={tmp_path}", module="mmtrain.export", cwd=tmp_path)
    ours = json.loads((run / "export" / "t2i" / "manifest.json").read_text())["files"]
    cli = json.loads((tmp_path / "t2i" / "manifest.json").read_text())["files"]
    assert ours == cli  # same weights, same bytes
    bad = run_mmtrain(f"run={tmp_path}", module="mmtrain.export", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "not a run directory" in bad.stderr
