"""Retrieval for the text-to-image family: a prompt's top-k passages from a knowledge base
(mmtrain/rag/knowledge_base.py), and a small knowledge base of facts about the synthetic
world to train and test it on.

The facts name everyday objects by what they look like in the synthetic world ("A tomato
is a red circle."), so a prompt that names an object ("a tomato") retrieves the passage
that says which colour to draw. Build it with

    python -m mmtrain.families.t2i.rag --out kb/t2i-facts

and point `model.t2i.rag.knowledge_base` at the folder.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

from mmtrain.rag.knowledge_base import Document, KnowledgeBase, Passage

# name -> (colour, shape), in the synthetic world's vocabulary (mmtrain/data/synth/scenes.py)
OBJECTS: dict[str, tuple[str, str]] = {
    "tomato": ("red", "circle"), "cherry": ("red", "circle"), "brick": ("red", "square"),
    "ruby": ("red", "diamond"), "strawberry": ("red", "triangle"),
    "lime": ("green", "circle"), "kiwi": ("green", "circle"), "emerald": ("green", "diamond"),
    "chalkboard": ("green", "square"), "fir tree": ("green", "triangle"),
    "blueberry": ("blue", "circle"), "marble": ("blue", "circle"), "sapphire": ("blue", "diamond"),
    "swimming pool": ("blue", "square"), "sail": ("blue", "triangle"),
    "lemon": ("yellow", "circle"), "sun": ("yellow", "circle"), "topaz": ("yellow", "diamond"),
    "butter block": ("yellow", "square"), "cheese wedge": ("yellow", "triangle"),
    "plum": ("purple", "circle"), "grape": ("purple", "circle"),
    "amethyst": ("purple", "diamond"), "violet tile": ("purple", "square"),
    "wizard hat": ("purple", "triangle"),
    "tangerine": ("orange", "circle"), "basketball": ("orange", "circle"),
    "amber": ("orange", "diamond"), "crate": ("orange", "square"),
    "traffic cone": ("orange", "triangle"),
}


def object_fact(name: str, colour: str, shape: str) -> str:
    article = "An" if name[0] in "aeiou" else "A"
    return f"{article} {name} is a {colour} {shape}."


def facts_documents(objects: dict[str, tuple[str, str]] | None = None) -> list[Document]:
    """One document per object (source "objects") and one per colour (source "colours")."""
    objects = OBJECTS if objects is None else objects
    docs = [Document(id=f"object-{name.replace(' ', '-')}", source="objects",
                     text=object_fact(name, colour, shape))
            for name, (colour, shape) in objects.items()]
    for colour in dict.fromkeys(c for c, _ in objects.values()):
        names = [n for n, (c, _) in objects.items() if c == colour]
        docs.append(Document(id=f"colour-{colour}", source="colours",
                             text=f"Things that are {colour}: {', '.join(names)}."))
    return docs


def build_facts(out: str | Path, objects: dict[str, tuple[str, str]] | None = None,
                encoder=None) -> Path:
    kb = KnowledgeBase(encoder, index_kind="flat")
    kb.add_documents(facts_documents(objects))
    return kb.save(out)


class Retriever:
    """prompt -> its top_k passages (best first), cached per prompt: training captions
    repeat, and embedding a query is the slow part. The base loads on first use, so
    building a module (e.g. on the meta device) does not load the MiniLM encoder."""

    def __init__(self, knowledge_base: KnowledgeBase | str | Path, source: str | None = None,
                 top_k: int = 2, cache_size: int = 8192) -> None:
        if not isinstance(knowledge_base, KnowledgeBase):
            path = Path(knowledge_base).expanduser()
            if not (path / "kb.json").exists():
                raise FileNotFoundError(
                    f"rag.knowledge_base: {path} is not a knowledge base folder (no kb.json). "
                    "Build one with mmtrain.rag.knowledge_base.KnowledgeBase(...).save(PATH), or "
                    "the synthetic world's facts with `python -m mmtrain.families.t2i.rag --out PATH`")
            knowledge_base = path
        self._kb = knowledge_base
        self.source, self.top_k, self.cache_size = source, top_k, cache_size
        self._cache: OrderedDict[str, list[Passage]] = OrderedDict()

    @property
    def knowledge_base(self) -> KnowledgeBase:
        if not isinstance(self._kb, KnowledgeBase):
            self._kb = KnowledgeBase.load(self._kb)
            if self.source is not None and self.source not in self._kb.sources():
                raise ValueError(f"rag.knowledge_source: no source {self.source!r} in the "
                                 f"knowledge base; it has {', '.join(self._kb.sources()) or 'none'}")
        return self._kb

    @property
    def path(self) -> Path | None:
        return None if isinstance(self._kb, KnowledgeBase) else self._kb

    def __call__(self, prompt: str) -> list[Passage]:
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        hits = self.knowledge_base.query(prompt, source=self.source, top_k=self.top_k) \
            if prompt.strip() else []
        self._cache[prompt] = hits
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return hits

    def clear_cache(self) -> None:
        """Call after editing the knowledge base in place."""
        self._cache.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mmtrain.families.t2i.rag",
        description="Write the synthetic world's facts knowledge base (objects and colours).")
    parser.add_argument("--out", required=True, help="folder to write the knowledge base to")
    args = parser.parse_args(argv)
    path = build_facts(args.out)
    print(f"wrote {len(facts_documents())} documents to {path}")


if __name__ == "__main__":
    main()
