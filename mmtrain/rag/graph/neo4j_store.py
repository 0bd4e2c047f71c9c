"""Neo4jStore: the same GraphStore over Bolt with Neo4j's official driver, for users
who run a Neo4j server (or any Bolt + Cypher server; the tests use FalkorDB's)."""

from __future__ import annotations

from mmtrain.rag.graph.store import GraphStore


class Neo4jStore(GraphStore):
    # FalkorDB 4.16's Bolt endpoint aborts (SIGABRT, server gone) on an UNWIND whose
    # parameters pass a few KB (64 relation rows of ~110 B crashed it, 32 did not);
    # Neo4j itself takes far more. Small statements cost little over a local socket.
    batch = 500
    batch_bytes = 2000

    def __init__(self, uri: str, auth=None, database: str | None = None) -> None:
        from neo4j import GraphDatabase

        self.uri, self.database = uri, database
        self._driver = GraphDatabase.driver(uri, auth=auth)

    def run(self, query: str, params: dict | None = None) -> list[tuple]:
        with self._driver.session(database=self.database) as session:
            return [tuple(record.values()) for record in session.run(query, params or {})]

    def close(self) -> None:
        self._driver.close()
