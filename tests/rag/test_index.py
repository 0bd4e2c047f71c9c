"""VectorIndex on real MiniLM embeddings of real sentences: every kind's recall@10 against
exact search, incremental add/delete, save/load, and refusal of another encoder's index."""

from __future__ import annotations

import numpy as np
import pytest

from mmtrain.rag.index import EncoderMismatch, VectorIndex, choose


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                        strict=True)]))


@pytest.fixture(scope="module")
def split(embedded):
    """Corpus = all but the last 40 sentences; queries = those 40 (never seen)."""
    return embedded[:-40], embedded[-40:]


@pytest.fixture(scope="module")
def truth(split):
    corpus, queries = split
    return VectorIndex.build(corpus, kind="flat").search(queries, 10)[1]


@pytest.mark.parametrize("kind,params,floor", [
    ("ivf", {"nlist": 8, "nprobe": 4}, 0.90),
    ("hnsw", {"M": 16, "ef_search": 64}, 0.97),
    ("ivfpq", {"nlist": 8, "nprobe": 4, "m": 48, "rerank": 20}, 0.90),
])
def test_kinds_recall_against_exact_search(split, truth, kind, params, floor):
    corpus, queries = split
    index = VectorIndex.build(corpus, kind=kind, **params)
    assert index.kind == kind and len(index) == len(corpus)
    assert recall_at(index.search(queries, 10)[1], truth) >= floor


def test_ivfpq_exact_rerank_beats_codes_alone(split, truth):
    corpus, queries = split
    # few training points here cap the codebooks at 2**3 centroids: coarse codes, which is
    # exactly when re-ranking against the stored floats matters
    codes = VectorIndex.build(corpus, kind="ivfpq", nlist=4, nprobe=4, m=48, rerank=1)
    rerank = VectorIndex.build(corpus, kind="ivfpq", nlist=4, nprobe=4, m=48, rerank=20)
    r_codes = recall_at(codes.search(queries, 10)[1], truth)
    r_rerank = recall_at(rerank.search(queries, 10)[1], truth)
    assert r_rerank >= 0.97 and r_rerank > r_codes + 0.2, (r_codes, r_rerank)
    # re-ranked scores are the exact inner products
    scores, ids = rerank.search(queries[:1], 3)
    np.testing.assert_allclose(scores[0], corpus[ids[0]] @ queries[0], rtol=1e-5)


def test_auto_chooses_by_corpus_size(split):
    assert VectorIndex.build(split[0]).kind == "flat"
    assert [choose(n) for n in (1_000, 100_000, 5_000_000)] == ["flat", "hnsw", "ivfpq"]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_add_and_delete_without_rebuild(split, kind, tmp_path):
    corpus, queries = split
    first, rest = corpus[:200], corpus[200:]
    index = VectorIndex.build(first, np.arange(200) * 10, kind=kind, nlist=4, m=48,
                              rerank=20)
    inner = int(index._index.index.this)  # the trained FAISS index: it must survive edits
    gone = np.arange(0, 2000, 20)  # every other id
    assert index.delete(gone) == 100 and len(index) == 100
    assert index.delete(gone) == 0
    new_ids = 100_000 + np.arange(len(rest))
    index.add(rest, new_ids)
    assert int(index._index.index.this) == inner and len(index) == 100 + len(rest)
    # deleted ids never come back, even when queried with their own vectors
    _, found = index.search(first[::2], 10)
    assert not np.isin(found, gone).any()
    # new vectors are found as their own nearest neighbour
    _, top = index.search(rest, 1)
    assert np.mean(top[:, 0] == new_ids) >= 0.95
    with pytest.raises(ValueError, match="already in the index"):
        index.add(rest[:1], new_ids[:1])
    # a filtered search returns only allowed ids
    allowed = new_ids[:5]
    _, found = index.search(queries, 5, allowed=allowed)
    assert set(found.ravel()) <= set(allowed)
    # the edits survive a save/load round trip
    index.encoder_hash = "enc-a"
    loaded = VectorIndex.load(index.save(tmp_path / kind), encoder_hash="enc-a")
    assert len(loaded) == len(index)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])


def test_another_encoders_index_is_refused(split, tmp_path):
    index = VectorIndex.build(split[0][:50], kind="flat", encoder_hash="aaaa1111")
    index.save(tmp_path / "idx")
    manifest = (tmp_path / "idx" / "manifest.json").read_text()
    assert '"encoder_hash": "aaaa1111"' in manifest and '"format_version": 1' in manifest
    with pytest.raises(EncoderMismatch) as err:
        VectorIndex.load(tmp_path / "idx", encoder_hash="bbbb2222")
    message = str(err.value)
    assert "aaaa1111" in message and "bbbb2222" in message and "rebuild" in message
    assert len(VectorIndex.load(tmp_path / "idx", encoder_hash="aaaa1111")) == 50
