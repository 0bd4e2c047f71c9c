"""VQA accuracy (VQAv2's answer normalisation + exact match) and caption scores
(pycocoevalcap's CIDEr-D and BLEU-4: no Java needed on pre-tokenised lowercase text)."""

from __future__ import annotations

import re

NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {"dont": "don't", "doesnt": "doesn't", "isnt": "isn't", "arent": "aren't",
                "cant": "can't", "wont": "won't", "whats": "what's", "thats": "that's"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:]")


def normalize_answer(text: str) -> str:
    """VQAv2's processing: lowercase, punctuation dropped (a period only when not a
    decimal point), number words to digits, articles removed, common contractions fixed."""
    text = text.lower().replace("\n", " ").replace("\t", " ").strip()
    text = _PUNCT.sub("", text)
    text = re.sub(r"(?!<=\d)(\.)(?!\d)", "", text)
    words = [NUMBERS.get(w, w) for w in text.split() if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """min(#annotators who gave the answer / 3, 1), VQAv2's formula; with a single ground
    truth (our synthetic world) it is normalised exact match."""
    pred = normalize_answer(prediction)
    hits = sum(normalize_answer(a) == pred for a in answers)
    return min(1.0, hits / 3) if len(answers) >= 3 else float(hits > 0)


def _tokens(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """CIDEr-D and BLEU-4 over the whole set (CIDEr's idf comes from these references,
    so it needs more than one image)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) < 2:
        raise ValueError("CIDEr-D needs at least two images (idf comes from the corpus)")
    res = {i: [_tokens(p) or "empty"] for i, p in enumerate(predictions)}
    gts = {i: [_tokens(r) for r in refs] for i, refs in enumerate(references)}
    cider, _ = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"cider_d": float(cider), "bleu4": float(bleu[3])}
