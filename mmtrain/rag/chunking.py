"""Split documents into passages for embedding.

Word windows with overlap: MiniLM was trained on sentence-length inputs (it truncates at
256 word pieces here) and retrieval attributes a hit to a chunk, so chunks stay short
(default 64 words) and overlap a little so that a fact cut at a boundary appears whole
in one of the two neighbours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int  # position of the chunk inside its document


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def chunk_text(text: str, *, max_words: int = 64, overlap: int = 16) -> list[Chunk]:
    """Overlapping word windows; a document shorter than `max_words` is one chunk.
    An empty document yields no chunks."""
    if max_words < 1 or not 0 <= overlap < max_words:
        raise ValueError(f"need max_words >= 1 and 0 <= overlap < max_words, "
                         f"got max_words={max_words}, overlap={overlap}")
    words = normalise(text).split(" ")
    if words == [""]:
        return []
    step = max_words - overlap
    chunks = []
    for i, start in enumerate(range(0, max(len(words) - overlap, 1), step)):
        chunks.append(Chunk(" ".join(words[start:start + max_words]), i))
    return chunks
