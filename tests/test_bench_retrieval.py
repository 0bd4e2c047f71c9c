"""The retrieval benchmark's quick mode runs end to end on a small fresh corpus (real
docstrings, the real MiniLM encoder) and writes a well-formed results line. Latencies
and recall of a quick run are informational; only exact search being exact is checked."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_mmtrain


@pytest.mark.slow
def test_retrieval_benchmark_quick_run(tmp_path):
    out = run_mmtrain("retrieval", "--quick", "--strict", f"--results-dir={tmp_path}",
                      module="benchmarks", cwd=REPO)
    assert "retrieval" in out.stdout
    record = json.loads((tmp_path / "retrieval.jsonl").read_text().splitlines()[-1])
    assert record["checks"] == {"flat_is_exact": True}
    rows = record["results"]["rows"]
    assert {r["kind"] for r in rows} == {"flat", "ivf", "hnsw", "ivfpq"}
    for r in rows:
        assert r["bytes_per_vector"] > 0 and r["build_s"] >= 0
        assert 0 <= r["chosen"]["recall_at_10"] <= 1 and r["chosen"]["p50_ms_2t"] > 0
        assert r["real_vectors"] <= r["n"]
    assert record["results"]["embedding"]["per_s"] > 0
    assert record["threads"]["OMP_NUM_THREADS"] == "1"
