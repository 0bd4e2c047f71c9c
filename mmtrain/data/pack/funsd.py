"""FUNSD annotation -> the synthetic `documents` annotation (synth/documents.py).

FUNSD: {"form": [{id, text, box, label, words: [{text, box}], linking: [[a, b]]}]}.
Entities are renumbered 0..n-1 in file order; words with no text, and entities left
with no words, are dropped with their links. As in the synthetic pages, an entity's box
is the union of its word boxes, `links` are the [question, answer] pairs and `fields`
maps question text without its colon to the answer text. FUNSD's other links
(header -> question, ...) are kept, renumbered, in `linking`.
"""

from __future__ import annotations

LABELS = ("header", "question", "answer", "other")


class BadAnnotation(ValueError):
    pass


def _box(value: object) -> list[int]:
    if not (isinstance(value, list | tuple) and len(value) == 4):
        raise BadAnnotation(f"a box must be [x0, y0, x1, y1], got {value!r}")
    return [int(round(float(v))) for v in value]


def convert(annotation: dict, width: int, height: int) -> dict:
    form = annotation.get("form") if isinstance(annotation, dict) else None
    if not isinstance(form, list):
        raise BadAnnotation("no `form` list")
    words: list[str] = []
    boxes: list[list[int]] = []
    labels: list[str] = []
    entities: list[dict] = []
    new_id: dict[object, int] = {}
    pairs: list[tuple[object, object]] = []
    for entity in form:
        label = str(entity.get("label", "other")).lower()
        if label not in LABELS:
            raise BadAnnotation(f"unknown label {label!r}; FUNSD labels are {LABELS}")
        word_ids = []
        for word in entity.get("words", []):
            text = str(word.get("text", "")).strip()
            if text:
                word_ids.append(len(words))
                words.append(text)
                boxes.append(_box(word.get("box")))
                labels.append(label)
        pairs += [tuple(link) for link in entity.get("linking", []) if len(link) == 2]
        if not word_ids:
            continue
        new_id[entity.get("id")] = len(entities)
        text = str(entity.get("text", "")).strip() or " ".join(words[i] for i in word_ids)
        own = [boxes[i] for i in word_ids]
        box = [
            min(b[0] for b in own),
            min(b[1] for b in own),
            max(b[2] for b in own),
            max(b[3] for b in own),
        ]
        entities.append(
            {"id": len(entities), "label": label, "text": text, "word_ids": word_ids, "box": box}
        )
    linking = sorted({(new_id[a], new_id[b]) for a, b in pairs if a in new_id and b in new_id})
    links = sorted({_question_answer(entities, a, b) for a, b in linking} - {None})
    return {
        "width": width,
        "height": height,
        "words": words,
        "boxes": boxes,
        "labels": labels,
        "entities": entities,
        "links": [list(link) for link in links],
        "fields": _fields(entities, links),
        "linking": [list(link) for link in linking],
    }


def _question_answer(entities: list[dict], a: int, b: int) -> tuple[int, int] | None:
    kinds = (entities[a]["label"], entities[b]["label"])
    if kinds == ("question", "answer"):
        return a, b
    if kinds == ("answer", "question"):
        return b, a
    return None


def _fields(entities: list[dict], links: list[tuple[int, int]]) -> dict[str, str]:
    """Question text without its colon -> answer text. Several answers of one question
    join with a space; a question text that repeats keeps its first question's answer."""
    fields: dict[str, str] = {}
    owner: dict[str, int] = {}
    for q, a in links:
        key = entities[q]["text"].strip().rstrip(":").strip()
        if not key or owner.setdefault(key, q) != q:
            continue
        answer = entities[a]["text"]
        fields[key] = f"{fields[key]} {answer}" if key in fields else answer
    return fields
