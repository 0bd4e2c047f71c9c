"""Knowledge graph: extraction (extract.py), stores behind one Cypher interface
(store.py; LadybugStore embedded by default, Neo4jStore over Bolt) and context
expansion (expand.py)."""

from mmtrain.rag.graph.expand import Context, StaleGraph, expand_context
from mmtrain.rag.graph.extract import Entity, Relation, extract
from mmtrain.rag.graph.store import GraphStore, Neighbour

__all__ = ["Context", "Entity", "GraphStore", "Neighbour", "Relation", "StaleGraph",
           "expand_context", "extract", "open_store"]


def open_store(backend: str = "ladybug", **kwargs) -> GraphStore:
    """`ladybug` (path=...) or `neo4j` (uri=..., auth=..., database=...)."""
    if backend == "ladybug":
        from mmtrain.rag.graph.ladybug_store import LadybugStore

        return LadybugStore(**kwargs)
    if backend == "neo4j":
        from mmtrain.rag.graph.neo4j_store import Neo4jStore

        return Neo4jStore(**kwargs)
    raise ValueError(f"unknown graph backend {backend!r}; use 'ladybug' or 'neo4j'")
