"""GraphStore: one Cypher vocabulary over two backends.

Facts live in one node table `Entity(name PRIMARY KEY, type)` and one relation table
`REL(type, label, source, doc)`: a single relation table keeps every query identical on
ladybug (which needs a schema) and on Neo4j/FalkorDB (which do not). Writes are bulk
`UNWIND $rows` statements (row-at-a-time CREATE costs ~4 ms each on ladybug).

Provenance, per knowledge-base document: every REL edge carries the `doc` id it was
extracted from (a fact two documents state is two parallel edges, one per document), and
a `Doc(id, source)` node links by `SUPPORTS` to every entity the document names. So
deleting a document drops exactly its edges, and an entity goes when no `Doc` supports
it any more; what another document also states stays. Neighbour queries walk `REL` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmtrain.rag.graph.extract import Entity, Relation, extract

MERGE_ENTITIES = ("UNWIND $rows AS x MERGE (e:Entity {name: x.name}) "
                  "ON CREATE SET e.type = x.type")
CREATE_DOCS = "UNWIND $rows AS x CREATE (:Doc {id: x.id, source: x.source})"
CREATE_SUPPORTS = ("UNWIND $rows AS x MATCH (d:Doc {id: x.doc}), (e:Entity {name: x.name}) "
                   "CREATE (d)-[:SUPPORTS]->(e)")
CREATE_RELATIONS = ("UNWIND $rows AS r MATCH (a:Entity {name: r.src}), (b:Entity {name: r.dst}) "
                    "CREATE (a)-[:REL {type: r.type, label: r.label, source: r.source, "
                    "doc: r.doc}]->(b)")
# hops is formatted in (variable-length bounds cannot be parameters); it is an int
NEIGHBOURS = ("MATCH (a:Entity {{name: $name}})-[:REL*1..{hops}]-(b:Entity) "
              "WHERE b.name <> $name RETURN DISTINCT b.name, b.type ORDER BY b.name")
ENTITY_NAMES = "MATCH (e:Entity) RETURN e.name ORDER BY e.name"
DOCUMENT_IDS = "MATCH (d:Doc) RETURN d.id ORDER BY d.id"
SOURCE_DOCS = "MATCH (d:Doc) WHERE d.source = $source RETURN d.id"
SUPPORTING_DOCS = "MATCH (d:Doc)-[:SUPPORTS]->(e:Entity {name: $name}) RETURN d.id ORDER BY d.id"
RELATIONS = ("MATCH (a:Entity)-[r:REL]->(b:Entity) "
             "RETURN a.name, r.type, b.name, r.label, r.source, r.doc")
COUNT_RELATIONS = "MATCH ()-[r:REL]->() RETURN count(r)"
DELETE_DOC_RELATIONS = "MATCH ()-[r:REL]->() WHERE r.doc IN $docs DELETE r"
DELETE_DOCS = "MATCH (d:Doc) WHERE d.id IN $docs DETACH DELETE d"
DELETE_UNSUPPORTED = "MATCH (e:Entity) WHERE NOT (:Doc)-[:SUPPORTS]->(e) DETACH DELETE e"
DELETE_ALL = ("MATCH (e:Entity) DETACH DELETE e", "MATCH (d:Doc) DETACH DELETE d")


@dataclass(frozen=True)
class Neighbour:
    name: str
    type: str


class GraphStore:
    """Subclasses implement `run(query, params) -> list[tuple]` and `close()`."""

    batch = 5000  # rows per UNWIND statement
    batch_bytes = 1 << 30  # and about this many bytes of parameters

    def _batches(self, rows: list[dict]):
        start, size = 0, 0
        for i, row in enumerate(rows):
            size += sum(len(str(v)) + 8 for v in row.values())
            if i - start >= self.batch or (size > self.batch_bytes and i > start):
                yield rows[start:i]
                start, size = i, sum(len(str(v)) + 8 for v in row.values())
        if start < len(rows):
            yield rows[start:]

    def _bulk(self, query: str, rows: list[dict]) -> None:
        for chunk in self._batches(rows):
            self.run(query, {"rows": chunk})

    def run(self, query: str, params: dict | None = None) -> list[tuple]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing --------------------------------------------------------------------
    def add_documents(self, docs) -> int:
        """Extract and store the graph of knowledge-base Documents, each with its
        provenance; a document already in the graph is replaced (its old facts dropped
        first, as the knowledge base replaces its chunks). Returns relations added."""
        docs = list({d.id: d for d in docs}.values())  # the last copy of an id wins
        self.delete_documents([d.id for d in docs])
        entities: dict[str, Entity] = {}
        supports: list[dict] = []
        relations: list[Relation] = []
        for doc in docs:
            ents, rels = extract(doc)
            for e in ents:
                entities.setdefault(e.name, e)
                supports.append({"doc": doc.id, "name": e.name})
            relations.extend(rels)
        self._bulk(MERGE_ENTITIES, [{"name": e.name, "type": e.type} for e in entities.values()])
        self._bulk(CREATE_DOCS, [{"id": d.id, "source": d.source} for d in docs])
        self._bulk(CREATE_SUPPORTS, supports)
        self._bulk(CREATE_RELATIONS, [{"src": r.src, "dst": r.dst, "type": r.type,
                                       "label": r.label, "source": r.source, "doc": r.doc}
                                      for r in relations])
        return len(relations)

    def delete_documents(self, doc_ids) -> int:
        """Drop the given documents' relations and provenance, then every entity no
        remaining document names; returns how many of them the graph held."""
        doc_ids = sorted(set(doc_ids))
        held = sorted(set(doc_ids) & set(self.document_ids())) if doc_ids else []
        if held:
            self.run(DELETE_DOC_RELATIONS, {"docs": held})
            self.run(DELETE_DOCS, {"docs": held})
            self.run(DELETE_UNSUPPORTED)
        return len(held)

    def delete_source(self, source: str) -> int:
        """Drop the documents of one knowledge-base source (as delete_documents)."""
        return self.delete_documents([str(r[0]) for r in self.run(SOURCE_DOCS, {"source": source})])

    def sync(self, documents) -> dict[str, int]:
        """Make the graph hold exactly `documents` (a KnowledgeBase's `documents` dict or
        Documents): drops the graph's documents that are not there, adds the missing
        ones. For a graph kept outside the knowledge base (e.g. reopened next to a saved
        base); documents present in both are left as they are."""
        docs = {d.id: d for d in (documents.values() if isinstance(documents, dict) else documents)}
        held = set(self.document_ids())
        deleted = self.delete_documents(held - set(docs))
        missing = [d for i, d in docs.items() if i not in held]
        if missing:
            self.add_documents(missing)
        return {"deleted": deleted, "added": len(missing)}

    def clear(self) -> None:
        for query in DELETE_ALL:
            self.run(query)

    # ---- reading --------------------------------------------------------------------
    def neighbours(self, entity: str, hops: int = 1) -> list[Neighbour]:
        """Entities within `hops` relations of `entity` (either direction), by name."""
        hops = int(hops)
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        rows = self.run(NEIGHBOURS.format(hops=hops), {"name": entity})
        return [Neighbour(str(n), str(t)) for n, t in rows]

    def entity_names(self) -> list[str]:
        return [str(r[0]) for r in self.run(ENTITY_NAMES)]

    def document_ids(self) -> list[str]:
        """The knowledge-base documents whose facts the graph holds."""
        return [str(r[0]) for r in self.run(DOCUMENT_IDS)]

    def supporting_documents(self, entity: str) -> list[str]:
        """The documents that name `entity` (its provenance)."""
        return [str(r[0]) for r in self.run(SUPPORTING_DOCS, {"name": entity})]

    def relations(self) -> list[Relation]:
        """Every stored relation, one per supporting document, in a stable order."""
        return sorted(Relation(*(str(v) for v in row)) for row in self.run(RELATIONS))

    def relation_count(self) -> int:
        return int(self.run(COUNT_RELATIONS)[0][0])
