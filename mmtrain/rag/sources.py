"""Knowledge-base Documents from the synthetic world's `documents` shards.

Only the json member is read (no page images): the document text is the form's header
followed by one "Field: value." sentence per field, the source is the form type
(invoice, registration), and `fields` (plus `_form`) feeds the knowledge graph.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from mmtrain.rag.knowledge_base import Document


def document_from_sample(key: str, sample: dict) -> Document:
    headers = [e["text"] for e in sample.get("entities", []) if e.get("label") == "header"]
    fields = {k: str(v) for k, v in sample.get("fields", {}).items()}
    text = " ".join([f"{h}." for h in headers] + [f"{k}: {v}." for k, v in fields.items()])
    return Document(id=key, source=sample.get("form", "document"), text=text,
                    fields={**fields, "_form": sample.get("form", "document")})


def documents_from_shards(shards: list[str | Path], limit: int | None = None) -> list[Document]:
    docs: list[Document] = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.name.endswith(".json"):
                    continue
                key = member.name.rsplit("/", 1)[-1].removesuffix(".json")
                sample = json.load(tar.extractfile(member))
                docs.append(document_from_sample(key, sample))
                if limit is not None and len(docs) >= limit:
                    return docs
    return docs
