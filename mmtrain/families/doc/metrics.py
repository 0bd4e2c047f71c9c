"""Document metrics: strict entity F1 (seqeval), key-value link F1, and the OCR-free
reader's field accuracy and ANLS (average normalised Levenshtein similarity)."""

from __future__ import annotations

import json
import re


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Strict span F1 over BIO sequences: type and both boundaries must match (seqeval's
    default mode is lenient; strict needs mode="strict" and the IOB2 scheme)."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    return float(f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0))


def link_pairs(entities: list[dict], links: list[list[int]]) -> set[tuple]:
    """Links as (question word ids, answer word ids): comparable across entity numbering."""
    words = {e["id"]: tuple(e["word_ids"]) for e in entities}
    return {(words[q], words[a]) for q, a in links}


def f1(gold: set, pred: set) -> float:
    hits = len(gold & pred)
    if not gold and not pred:
        return 1.0
    return 2 * hits / (len(gold) + len(pred)) if hits else 0.0


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def similarity(a: str, b: str) -> float:
    """1 - normalised edit distance."""
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def anls(gold: str, pred: str, threshold: float = 0.5) -> float:
    """ANLS of one answer (DocVQA): similarity, 0 under the threshold."""
    s = similarity(gold.strip().lower(), pred.strip().lower())
    return s if s >= threshold else 0.0


def parse_fields(text: str) -> dict[str, str]:
    """The reader's output -> fields: JSON when it parses, else every `"key": "value"`
    pair it managed to write (a half-trained reader often misses a brace)."""
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    except ValueError:
        pass
    return dict(re.findall(r'"([^"]*)"\s*:\s*"([^"]*)"', text))


def reader_scores(gold: list[dict[str, str]], texts: list[str]) -> dict[str, float]:
    """Per gold field: exact accuracy and ANLS of the predicted value ("" when missing);
    plus the whole output string's similarity to the target JSON."""
    exact, soft, seq = [], [], []
    for fields, text in zip(gold, texts, strict=True):
        pred = parse_fields(text)
        for key, value in fields.items():
            exact.append(float(pred.get(key, "").strip() == value.strip()))
            soft.append(anls(value, pred.get(key, "")))
        seq.append(similarity(json.dumps(fields, ensure_ascii=False), text))
    n = max(len(exact), 1)
    return {"reader_field_accuracy": sum(exact) / n, "reader_anls": sum(soft) / n,
            "reader_similarity": sum(seq) / max(len(seq), 1)}
