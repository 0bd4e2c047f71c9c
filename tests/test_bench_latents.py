"""The latents benchmark runs end to end (--quick): loader and step ratios are recorded,
and training from latents gives the pixel path's loss."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_latents_benchmark_quick_run(tmp_path):
    out = run_mmtrain("latents", "--quick", "--strict", f"--results-dir={tmp_path}",
                      module="benchmarks", cwd=REPO)
    assert "latents" in out.stdout
    record = json.loads((tmp_path / "latents.jsonl").read_text().splitlines()[-1])
    assert record["checks"] and all(record["checks"].values()), record["checks"]
    loader = record["results"]["loader"]["workers"]["0"]
    assert loader["jpeg_samples_per_s"] > 0 and loader["latent_vs_jpeg"] > 0
    assert record["results"]["step"]["tiny"]["pixels_vs_latents"] > 0
