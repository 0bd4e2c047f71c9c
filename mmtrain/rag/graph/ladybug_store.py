"""LadybugStore: the default graph store, embedded (in-process, a folder on disk).

ladybug is the maintained successor of kuzu (same API); it cannot share a process with
kuzu. Its extensions download at run time, so none are used (vectors live in FAISS).
"""

from __future__ import annotations

from pathlib import Path

from mmtrain.rag.graph.store import GraphStore

SCHEMA = ("CREATE NODE TABLE IF NOT EXISTS Entity(name STRING, type STRING, PRIMARY KEY(name))",
          "CREATE NODE TABLE IF NOT EXISTS Doc(id STRING, source STRING, PRIMARY KEY(id))",
          "CREATE REL TABLE IF NOT EXISTS REL(FROM Entity TO Entity, type STRING, "
          "label STRING, source STRING, doc STRING)",
          "CREATE REL TABLE IF NOT EXISTS SUPPORTS(FROM Doc TO Entity)")


class LadybugStore(GraphStore):
    def __init__(self, path: str | Path) -> None:
        import ladybug

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._db = ladybug.Database(str(path))
        self._conn = ladybug.Connection(self._db)
        for statement in SCHEMA:
            self._conn.execute(statement)
        try:  # a graph written before per-document provenance has no REL.doc
            self.run("MATCH ()-[r:REL]->() RETURN r.doc LIMIT 1")
        except RuntimeError as err:
            self.close()
            raise ValueError(
                f"{path}: this knowledge graph predates per-document provenance (its REL "
                "table has no `doc` property), so deletes cannot be mirrored into it. Delete "
                "the folder and rebuild it: open_store('ladybug', path=...).add_documents("
                "kb.documents.values())") from err

    def run(self, query: str, params: dict | None = None) -> list[tuple]:
        result = self._conn.execute(query, params or {})
        rows = []
        while result.has_next():
            rows.append(tuple(result.get_next()))
        return rows

    def close(self) -> None:
        self._conn.close()
        self._db.close()
