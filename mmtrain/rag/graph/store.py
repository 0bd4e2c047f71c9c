"""GraphStore: one Cypher vocabulary over two backends.

One node table `Entity(name PRIMARY KEY, type)` and one relation table
`REL(type, label, source)`: a single relation table keeps every query identical on
ladybug (which needs a schema) and on Neo4j/FalkorDB (which do not). Writes are bulk
`UNWIND $rows` statements (row-at-a-time CREATE costs ~4 ms each on ladybug).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmtrain.rag.graph.extract import Entity, Relation, extract

MERGE_ENTITIES = ("UNWIND $rows AS x MERGE (e:Entity {name: x.name}) "
                  "ON CREATE SET e.type = x.type")
CREATE_RELATIONS = ("UNWIND $rows AS r MATCH (a:Entity {name: r.src}), (b:Entity {name: r.dst}) "
                    "CREATE (a)-[:REL {type: r.type, label: r.label, source: r.source}]->(b)")
# hops is formatted in (variable-length bounds cannot be parameters); it is an int
NEIGHBOURS = ("MATCH (a:Entity {{name: $name}})-[*1..{hops}]-(b:Entity) "
              "WHERE b.name <> $name RETURN DISTINCT b.name, b.type ORDER BY b.name")
ENTITY_NAMES = "MATCH (e:Entity) RETURN e.name ORDER BY e.name"
COUNT_RELATIONS = "MATCH ()-[r:REL]->() RETURN count(r)"
DELETE_SOURCE = "MATCH ()-[r:REL]->() WHERE r.source = $source DELETE r"
DELETE_ORPHANS = "MATCH (e:Entity) WHERE NOT (e)--() DELETE e"
DELETE_ALL = "MATCH (e:Entity) DETACH DELETE e"


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

    def run(self, query: str, params: dict | None = None) -> list[tuple]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing --------------------------------------------------------------------
    def add(self, entities: list[Entity], relations: list[Relation]) -> None:
        ents = [{"name": e.name, "type": e.type} for e in entities]
        rels = [{"src": r.src, "dst": r.dst, "type": r.type, "label": r.label,
                 "source": r.source} for r in relations]
        for rows in self._batches(ents):
            self.run(MERGE_ENTITIES, {"rows": rows})
        for rows in self._batches(rels):
            self.run(CREATE_RELATIONS, {"rows": rows})

    def add_documents(self, docs) -> int:
        """Extract and store the graph of knowledge-base Documents; returns relations."""
        entities: dict[str, Entity] = {}
        relations: list[Relation] = []
        for doc in docs:
            ents, rels = extract(doc)
            for e in ents:
                entities.setdefault(e.name, e)
            relations.extend(rels)
        self.add(list(entities.values()), relations)
        return len(relations)

    def delete_source(self, source: str) -> None:
        """Drop the facts of one source and the entities left without any relation."""
        self.run(DELETE_SOURCE, {"source": source})
        self.run(DELETE_ORPHANS)

    def clear(self) -> None:
        self.run(DELETE_ALL)

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

    def relation_count(self) -> int:
        return int(self.run(COUNT_RELATIONS)[0][0])
