"""The restore benchmark runs end to end (--quick): step time and memory with and without
gradient checkpointing are recorded, the recipe trains through the launcher and its
ONNX export scores what the run validated."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_restore_benchmark_quick_run(tmp_path):
    out = run_mmtrain("restore", "--quick", "--strict", f"--results-dir={tmp_path}",
                      "--param", "step_sizes=tiny", module="benchmarks", cwd=REPO)
    assert "restore" in out.stdout
    record = json.loads((tmp_path / "restore.jsonl").read_text().splitlines()[-1])
    assert record["checks"] and all(record["checks"].values()), record["checks"]
    tiny = record["results"]["step"]["tiny"]
    assert tiny["plain"]["step_s"] > 0 and tiny["checkpointed"]["peak_mib"] > 0
    # checkpointing keeps far less for backward (it recomputes each Swin stage)
    assert tiny["saved_ratio"] < 0.5
    sr = record["results"]["sr_x2"]
    assert sr["sr_psnr"]["psnr_y"] > 25 and sr["sr_gan"]["step"] > sr["sr_psnr"]["step"]
