"""LadybugStore: the default graph store, embedded (in-process, a folder on disk).

ladybug is the maintained successor of kuzu (same API); it cannot share a process with
kuzu. Its extensions download at run time, so none are used (vectors live in FAISS).
"""

from __future__ import annotations

from pathlib import Path

from mmtrain.rag.graph.store import GraphStore

SCHEMA = ("CREATE NODE TABLE IF NOT EXISTS Entity(name STRING, type STRING, PRIMARY KEY(name))",
          "CREATE REL TABLE IF NOT EXISTS REL(FROM Entity TO Entity, type STRING, "
          "label STRING, source STRING)")


class LadybugStore(GraphStore):
    def __init__(self, path: str | Path) -> None:
        import ladybug

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._db = ladybug.Database(str(path))
        self._conn = ladybug.Connection(self._db)
        for statement in SCHEMA:
            self._conn.execute(statement)

    def run(self, query: str, params: dict | None = None) -> list[tuple]:
        result = self._conn.execute(query, params or {})
        rows = []
        while result.has_next():
            rows.append(tuple(result.get_next()))
        return rows

    def close(self) -> None:
        self._conn.close()
        self._db.close()
