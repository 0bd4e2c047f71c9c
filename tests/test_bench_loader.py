"""The loader benchmark runs both loops over one epoch and both deliver every sample once.

Only what cannot flake is asserted: the sanity checks (same sample count, every sample
exactly once per epoch, on both sides and at every worker count) and the shape of the
results line. The throughput ratio of a quick run is informational (too short to time).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_loader_benchmark_quick_run_sees_every_sample_once(tmp_path):
    out = run_mmtrain("loader", "--quick", "--strict", f"--results-dir={tmp_path}",
                      module="benchmarks", cwd=REPO)
    assert "loader" in out.stdout
    record = json.loads((tmp_path / "loader.jsonl").read_text().splitlines()[-1])
    checks = record["checks"]
    assert checks and all(checks.values()), checks
    assert "ratio_ge_0.9" not in checks  # a quick run does not judge the ratio
    for w in ("0", "2"):
        assert f"mmtrain_each_sample_once_w{w}" in checks
        entry = record["results"]["workers"][w]
        assert entry["bare_samples_per_s"] > 0 and entry["mmtrain_samples_per_s"] > 0
        assert entry["position_bytes_per_batch"]["max"] > 0
    assert record["results"]["data"]["samples"] == record["params"]["samples"]
    assert record["threads"]["OMP_NUM_THREADS"] == "1"
