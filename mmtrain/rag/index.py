"""VectorIndex: a FAISS index over unit-norm embeddings with stable ids, incremental
add/delete and a versioned on-disk form tied to the encoder that made the vectors.

Kinds (inner product = cosine on unit vectors):
- flat:  exact search (IndexFlatIP); the reference for recall.
- ivf:   IndexIVFFlat, `nlist` lists (default ~4*sqrt(n)), `nprobe` probed per query.
- hnsw:  IndexHNSWFlat, `M` links, `ef_search`. FAISS cannot remove from an HNSW graph,
         so deleted ids are tombstoned and excluded during the graph walk with an
         IDSelector (recorded in the manifest; `compact()` rebuilds without them).
- ivfpq: IndexIVFPQ codes for the candidate search, then exact re-ranking of the
         `rerank` * k best candidates against the float vectors kept next to it
         (PQ alone caps recall far below 1 on clustered embeddings: platform-facts).
- auto:  picks one of the above from the corpus size at the first build/add (`choose`).
Every kind sits in an IndexIDMap2, so ids are the caller's int64 ids, not positions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

FORMAT_VERSION = 1
KINDS = ("flat", "ivf", "hnsw", "ivfpq", "auto")
DEFAULTS = {"flat": {}, "ivf": {"nlist": None, "nprobe": 32},
            "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 64},
            "ivfpq": {"nlist": None, "nprobe": 32, "m": 48, "nbits": 8, "rerank": 10}}


TRAIN_MAX = 50_000  # IVF / PQ codebooks train on at most this many vectors
EXACT_FILTERED = 4096  # filtered searches over at most this many ids are exact


class EncoderMismatch(ValueError):
    """The index was built from another encoder's vectors: its neighbours mean nothing."""


def choose(n: int) -> str:
    """`auto`: exact search while it is cheap, a graph while the floats fit in memory
    comfortably, compressed codes + exact re-rank beyond (see docs/rag.md)."""
    if n < 20_000:
        return "flat"
    if n < 2_000_000:
        return "hnsw"
    return "ivfpq"


def default_nlist(n: int) -> int:
    # ~4 sqrt(n) lists, but at least 39 training points per centroid (FAISS's floor)
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


@dataclass
class VectorIndex:
    dim: int
    kind: str = "auto"
    params: dict = field(default_factory=dict)
    encoder_hash: str = ""
    deleted: set[int] = field(default_factory=set)  # hnsw tombstones
    _index: faiss.IndexIDMap2 | None = None
    _vectors: faiss.IndexIDMap2 | None = None  # ivfpq: floats for exact re-ranking

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; choose one of {KINDS}")

    # ---- building -------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None, *, kind: str = "auto",
              encoder_hash: str = "", **params) -> VectorIndex:
        index = cls(dim=int(vectors.shape[1]), kind=kind, params=params,
                    encoder_hash=encoder_hash)
        index.add(vectors, np.arange(len(vectors)) if ids is None else ids)
        return index

    def _create(self, train: np.ndarray) -> None:
        if self.kind == "auto":
            self.kind = choose(len(train))
        self.params = {**DEFAULTS[self.kind], **self.params}
        p, d, ip = self.params, self.dim, faiss.METRIC_INNER_PRODUCT
        if self.kind in ("ivf", "ivfpq") and not p.get("nlist"):
            p["nlist"] = default_nlist(len(train))
        if self.kind == "ivfpq":  # 2**nbits PQ centroids need >= 39 training points each
            p["nbits"] = max(1, min(p["nbits"], int(math.log2(max(len(train) // 39, 2)))))
        if self.kind == "flat":
            base = faiss.IndexFlatIP(d)
        elif self.kind == "hnsw":
            base = faiss.IndexHNSWFlat(d, p["M"], ip)
            base.hnsw.efConstruction = p["ef_construction"]
        elif self.kind == "ivf":
            base = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, p["nlist"], ip)
        else:
            base = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, p["nlist"], p["m"], p["nbits"], ip)
            self._vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        if not base.is_trained:  # k-means on a fixed sample: cost bounded at any size
            if len(train) > TRAIN_MAX:
                rows = np.random.default_rng(0).choice(len(train), TRAIN_MAX, replace=False)
                train = train[np.sort(rows)]
            base.train(np.ascontiguousarray(train, dtype=np.float32))
        self._index = faiss.IndexIDMap2(base)

    def add(self, vectors: np.ndarray, ids) -> None:
        """Add vectors under the given int64 ids (no rebuild). An id already present is an
        error: delete it first to replace it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        if len(ids) == 0:
            return
        if self._index is None:
            self._create(vectors)
        clash = np.isin(ids, self.ids(), assume_unique=False)
        if clash.any():
            raise ValueError(f"ids already in the index: {ids[clash][:10].tolist()}")
        self.deleted.difference_update(ids.tolist())
        self._index.add_with_ids(vectors, ids)
        if self._vectors is not None:
            self._vectors.add_with_ids(vectors, ids)

    def delete(self, ids) -> int:
        """Remove ids (no rebuild); returns how many were present."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        present = ids[np.isin(ids, self.ids())]
        if self._index is None or len(present) == 0:
            return 0
        if self.kind == "hnsw":
            self.deleted.update(present.tolist())
        else:
            self._index.remove_ids(faiss.IDSelectorBatch(present))
        if self._vectors is not None:
            self._vectors.remove_ids(faiss.IDSelectorBatch(present))
        return len(present)

    def compact(self) -> None:
        """Rebuild an HNSW graph without its tombstones (other kinds remove in place)."""
        if self.kind != "hnsw" or not self.deleted:
            return
        keep = self.ids()
        vectors = self._index.reconstruct_batch(keep)
        self._index, self.deleted = None, set()
        self.kind = "hnsw"
        self.add(vectors, keep)

    # ---- querying -------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        if self._index is None:
            return np.empty(0, dtype=np.int64)
        all_ids = faiss.vector_to_array(self._index.id_map)
        if self.deleted:
            all_ids = all_ids[~np.isin(all_ids, np.fromiter(self.deleted, np.int64))]
        return all_ids

    def __len__(self) -> int:
        return 0 if self._index is None else self._index.ntotal - len(self.deleted)

    def search(self, queries: np.ndarray, k: int = 10,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k); missing results have id -1. `allowed`
        restricts the search to those ids (a filter inside FAISS, not a post-filter, so
        k results come back whenever k allowed ids exist)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self._index is None or len(self) == 0:
            return (np.full((len(queries), k), -np.inf, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        if allowed is not None and self.kind in ("hnsw", "ivfpq") and len(allowed) <= max(
                EXACT_FILTERED, len(self) // 50):
            return self._exact(queries, k, np.asarray(allowed, dtype=np.int64))
        p, sel = self.params, self._selector(allowed)
        if self.kind == "flat":
            return self._index.search(queries, k, params=faiss.SearchParameters(sel=sel))
        if self.kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=max(p["ef_search"], k), sel=sel)
            return self._index.search(queries, k, params=sp)
        # a filtered IVFFlat search probes every list: exact over the allowed ids
        nprobe = p["nlist"] if allowed is not None and self.kind == "ivf" else p["nprobe"]
        sp = faiss.SearchParametersIVF(nprobe=min(nprobe, p["nlist"]), sel=sel)
        if self.kind == "ivf":
            return self._index.search(queries, k, params=sp)
        return self._rerank(queries, k, sp)

    def _exact(self, queries, k, allowed) -> tuple[np.ndarray, np.ndarray]:
        # A narrow filter starves HNSW walks and IVF-PQ probes of candidates: score the
        # few allowed float vectors exactly instead.
        allowed = allowed[np.isin(allowed, self.ids())]
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(allowed):
            store = self._vectors if self._vectors is not None else self._index
            exact = queries @ store.reconstruct_batch(allowed).T
            top = np.argsort(-exact, axis=1)[:, :k]
            n = top.shape[1]
            scores[:, :n] = np.take_along_axis(exact, top, 1)
            ids[:, :n] = allowed[top]
        return scores, ids

    def _selector(self, allowed: np.ndarray | None):
        sel = None
        if self.deleted:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self.deleted, np.int64)))
        if allowed is not None:
            keep = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            sel = keep if sel is None else faiss.IDSelectorAnd(keep, sel)
        self._keepalive = sel  # the SWIG params hold a raw pointer to the selector
        return sel

    def _rerank(self, queries, k, sp) -> tuple[np.ndarray, np.ndarray]:
        _, cand = self._index.search(queries, k * self.params["rerank"], params=sp)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for q, row in enumerate(cand):
            row = row[row >= 0]
            if len(row) == 0:
                continue
            exact = self._vectors.reconstruct_batch(row) @ queries[q]
            top = np.argsort(-exact)[:k]
            scores[q, :len(top)], ids[q, :len(top)] = exact[top], row[top]
        return scores, ids

    # ---- persistence ----------------------------------------------------------------
    def manifest(self) -> dict:
        return {"format_version": FORMAT_VERSION, "kind": self.kind, "params": self.params,
                "dim": self.dim, "count": len(self), "encoder_hash": self.encoder_hash,
                "metric": "inner_product", "deleted": sorted(self.deleted),
                "faiss_version": faiss.__version__}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            faiss.write_index(self._index, str(folder / "index.faiss"))
        if self._vectors is not None:
            faiss.write_index(self._vectors, str(folder / "vectors.faiss"))
        (folder / "manifest.json").write_text(json.dumps(self.manifest(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, encoder_hash: str | None = None) -> VectorIndex:
        """Load a saved index; with `encoder_hash`, refuse one built by another encoder."""
        folder = Path(folder)
        m = json.loads((folder / "manifest.json").read_text())
        if m.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: index format version {m.get('format_version')} "
                             f"but this mmtrain reads version {FORMAT_VERSION}; rebuild it")
        if encoder_hash is not None and m["encoder_hash"] != encoder_hash:
            raise EncoderMismatch(
                f"{folder}: the index was built with encoder {m['encoder_hash']!r} but the "
                f"current encoder is {encoder_hash!r}; its vectors are not comparable. "
                f"Re-embed the corpus with the current encoder and rebuild the index, or "
                f"load it with the encoder whose hash is {m['encoder_hash']!r}.")
        index = cls(dim=m["dim"], kind=m["kind"], params=m["params"],
                    encoder_hash=m["encoder_hash"], deleted=set(m["deleted"]))
        if (folder / "index.faiss").exists():
            index._index = faiss.read_index(str(folder / "index.faiss"))
        if (folder / "vectors.faiss").exists():
            index._vectors = faiss.read_index(str(folder / "vectors.faiss"))
        return index

    def memory_bytes(self) -> int:
        """Serialized size of everything search needs (codes, graph, lists, ids, floats)."""
        total = 0
        for part in (self._index, self._vectors):
            if part is not None:
                total += faiss.serialize_index(part).nbytes
        return total
