"""Tokenizers built locally from a word list (nothing is downloaded).

`clip_tokenizer` makes a CLIP-format BPE tokenizer: CLIP's 512 byte-level base symbols
(each also with the end-of-word marker), plus one merge chain per known word so that
every known word becomes one token; any other text still tokenizes through the base
symbols, never to an unknown token. Being a stock `CLIPTokenizer`, it saves and loads
with `save_pretrained` / `from_pretrained` and ships inside diffusers pipelines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def clip_tokenizer(words: Iterable[str], max_length: int = 77) -> CLIPTokenizer:
    base = sorted(ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(base + [c + "</w>" for c in base])}
    merges: list[tuple[str, str]] = []
    for word in sorted({w.lower() for w in words if re.fullmatch(r"[a-z0-9]+", w.lower())}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            if current + piece not in vocab:
                merges.append((current, piece))
                vocab[current + piece] = len(vocab)
            current += piece
    for token in SPECIAL:
        vocab[token] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=max_length,
        bos_token=SPECIAL[0], eos_token=SPECIAL[1], pad_token=SPECIAL[1], unk_token=SPECIAL[1],
    )


def words_of(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())}
