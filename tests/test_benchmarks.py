"""The benchmark harness runs, and mmtrain's step stays bit-identical to a plain loop."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_train_step_benchmark_quick_run_is_bit_identical(tmp_path):
    out = run_mmtrain("train_step", "--quick", "--strict", f"--results-dir={tmp_path}",
                      module="benchmarks", cwd=REPO)
    assert "train_step" in out.stdout
    record = json.loads((tmp_path / "train_step.jsonl").read_text().splitlines()[-1])
    assert record["checks"] and all(record["checks"].values()), record["checks"]
