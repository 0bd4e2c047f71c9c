"""KnowledgeBase: documents -> chunks -> embeddings -> VectorIndex, with attribution.

Every chunk keeps its document id, source and position, so every query result says
where it came from. Documents are replaced by id (re-adding an id deletes its old chunks
first) and deleted by id or by source, without rebuilding the index. The whole base is
one versioned folder: kb.json (format version, encoder hash, chunking), documents.jsonl,
chunks.jsonl and index/ (the VectorIndex with its manifest); loading it with another
encoder is refused by the index's manifest check.

A knowledge graph (mmtrain.rag.graph, any backend) can be attached: every add, replace and
delete is then mirrored into it, so the graph never holds facts of a deleted document.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmtrain.rag.chunking import chunk_text
from mmtrain.rag.encoder import Encoder
from mmtrain.rag.index import VectorIndex

FORMAT_VERSION = 1


@dataclass
class Document:
    id: str
    source: str
    text: str
    fields: dict = field(default_factory=dict)  # structured facts (e.g. a form's fields)


@dataclass(frozen=True)
class Passage:
    text: str
    source: str
    doc_id: str
    chunk: int
    score: float


class KnowledgeBase:
    def __init__(self, encoder: Encoder | None = None, *, index_kind: str = "auto",
                 index_params: dict | None = None, max_words: int = 64,
                 overlap: int = 16, graph=None) -> None:
        if encoder is None:
            from mmtrain.rag.encoder import MiniLMEncoder

            encoder = MiniLMEncoder()
        self.encoder = encoder
        self.max_words, self.overlap = max_words, overlap
        self.index = VectorIndex(dim=encoder.dim, kind=index_kind, params=index_params or {},
                                 encoder_hash=encoder.hash)
        self.documents: dict[str, Document] = {}
        self.chunks: dict[int, dict] = {}  # chunk id -> {doc_id, source, chunk, text}
        self._next_id = 0
        self.graph = None
        if graph is not None:
            self.attach_graph(graph)

    def __len__(self) -> int:
        return len(self.documents)

    def attach_graph(self, graph) -> dict[str, int]:
        """Mirror this base's documents into `graph` (a GraphStore) from now on; first
        brings it in line (drops documents the base no longer holds, adds missing ones).
        Returns those counts."""
        self.graph = graph
        return graph.sync(self.documents)

    # ---- writing --------------------------------------------------------------------
    def add_documents(self, docs) -> int:
        """Add (or replace, by id) documents: Document objects or dicts with id, source,
        text (and optional fields). Returns the number of chunks added."""
        docs = [d if isinstance(d, Document) else Document(**d) for d in docs]
        docs = list({d.id: d for d in docs}.values())  # a repeated id: its last copy wins
        self.delete(doc_ids=[d.id for d in docs if d.id in self.documents])
        texts, ids = [], []
        for doc in docs:
            self.documents[doc.id] = doc
            for ch in chunk_text(doc.text, max_words=self.max_words, overlap=self.overlap):
                self.chunks[self._next_id] = {"doc_id": doc.id, "source": doc.source,
                                              "chunk": ch.index, "text": ch.text}
                texts.append(ch.text)
                ids.append(self._next_id)
                self._next_id += 1
        if texts:
            self.index.add(self.encoder.embed(texts), np.asarray(ids, dtype=np.int64))
        if self.graph is not None:
            self.graph.add_documents(docs)
        return len(texts)

    def delete(self, source: str | None = None, doc_ids=None) -> int:
        """Delete every document of `source` and/or the listed document ids; returns the
        number of documents removed."""
        doomed = set(doc_ids or [])
        if source is not None:
            doomed |= {i for i, d in self.documents.items() if d.source == source}
        doomed &= set(self.documents)
        if not doomed:
            return 0
        chunk_ids = [c for c, meta in self.chunks.items() if meta["doc_id"] in doomed]
        self.index.delete(np.asarray(chunk_ids, dtype=np.int64))
        for c in chunk_ids:
            del self.chunks[c]
        for d in doomed:
            del self.documents[d]
        if self.graph is not None:
            self.graph.delete_documents(doomed)
        return len(doomed)

    # ---- reading --------------------------------------------------------------------
    def query(self, text: str, source: str | None = None, top_k: int = 5) -> list[Passage]:
        """The `top_k` passages nearest to `text` (optionally only from `source`), best
        first, each with its source, document id and chunk number."""
        allowed = None
        if source is not None:
            allowed = np.fromiter((c for c, m in self.chunks.items() if m["source"] == source),
                                  np.int64)
            if len(allowed) == 0:
                return []
        scores, ids = self.index.search(self.encoder.embed([text]), top_k, allowed=allowed)
        out = []
        for score, cid in zip(scores[0], ids[0], strict=True):
            if cid < 0:
                continue
            m = self.chunks[int(cid)]
            out.append(Passage(m["text"], m["source"], m["doc_id"], m["chunk"], float(score)))
        return out

    def sources(self) -> list[str]:
        return sorted({d.source for d in self.documents.values()})

    # ---- persistence ----------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder / "index")
        with open(folder / "documents.jsonl", "w") as f:
            for doc in self.documents.values():
                f.write(json.dumps(asdict(doc)) + "\n")
        with open(folder / "chunks.jsonl", "w") as f:
            for cid, meta in self.chunks.items():
                f.write(json.dumps({"id": cid, **meta}) + "\n")
        meta = {"format_version": FORMAT_VERSION, "encoder_hash": self.encoder.hash,
                "max_words": self.max_words, "overlap": self.overlap,
                "next_id": self._next_id, "documents": len(self.documents),
                "chunks": len(self.chunks)}
        (folder / "kb.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, encoder: Encoder | None = None,
             graph=None) -> KnowledgeBase:
        """Load a saved base; `encoder` (default MiniLM) must be the one that built it.
        `graph` is attached (and synced to the loaded documents) when given."""
        folder = Path(folder)
        meta = json.loads((folder / "kb.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: knowledge base format {meta.get('format_version')}, "
                             f"this mmtrain reads {FORMAT_VERSION}; rebuild it")
        kb = cls(encoder, max_words=meta["max_words"], overlap=meta["overlap"])
        kb.index = VectorIndex.load(folder / "index", encoder_hash=kb.encoder.hash)
        for line in (folder / "documents.jsonl").read_text().splitlines():
            doc = Document(**json.loads(line))
            kb.documents[doc.id] = doc
        for line in (folder / "chunks.jsonl").read_text().splitlines():
            row = json.loads(line)
            kb.chunks[row.pop("id")] = row
        kb._next_id = meta["next_id"]
        if graph is not None:
            kb.attach_graph(graph)
        return kb
