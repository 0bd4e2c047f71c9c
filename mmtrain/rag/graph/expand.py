"""Graph expansion of retrieved context: the entities a retrieved passage names (its
document's node, and any stored entity whose name occurs in its text) bring their graph
neighbours along, e.g. the other fields of the form a passage came from, or the other
forms that share a value with it.

Given the knowledge base (`kb=`), nothing of a deleted document comes back: passages of
documents the base no longer holds are dropped, and a graph that still holds such a
document (not attached to the base, not synced) is refused before it is queried."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.rag.graph.store import GraphStore, Neighbour


@dataclass
class Context:
    passages: list  # the retrieved Passages, unchanged and in order
    neighbours: dict[str, list[Neighbour]] = field(default_factory=dict)  # entity -> near

    def text(self) -> str:
        """Passages with their sources, then the graph facts: a prompt-ready block."""
        lines = [f"[{p.source}:{p.doc_id}#{p.chunk}] {p.text}" for p in self.passages]
        for entity, near in self.neighbours.items():
            if near:
                lines.append(f"{entity}: " + "; ".join(f"{n.name} ({n.type})" for n in near))
        return "\n".join(lines)


def entities_in(passage, names: list[str], min_len: int = 3) -> list[str]:
    found = [passage.doc_id] if passage.doc_id in names else []
    found += [n for n in names if len(n) >= min_len and n != passage.doc_id and n in passage.text]
    return found


class StaleGraph(ValueError):
    """The graph holds documents the knowledge base has deleted."""


def expand_context(passages: list, store: GraphStore, hops: int = 1,
                   names: list[str] | None = None, kb=None) -> Context:
    """Add the graph neighbours (within `hops`) of every entity found in `passages`.
    `names` (the store's entity names) can be passed in to skip fetching them per call.
    `kb`: the KnowledgeBase the passages came from; see the module docstring."""
    if kb is not None:
        passages = [p for p in passages if p.doc_id in kb.documents]
        stale = sorted(set(store.document_ids()) - set(kb.documents))
        if stale:
            raise StaleGraph(
                f"the knowledge graph still holds {len(stale)} document(s) the knowledge base "
                f"has deleted ({', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''}); "
                "attach it to the base (kb.attach_graph(store), which syncs it and mirrors "
                "every later delete) or call store.sync(kb.documents)")
    names = store.entity_names() if names is None else names
    context = Context(list(passages))
    for passage in passages:
        for entity in entities_in(passage, names):
            if entity not in context.neighbours:
                context.neighbours[entity] = store.neighbours(entity, hops)
    return context
