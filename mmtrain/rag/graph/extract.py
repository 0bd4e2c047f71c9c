"""Entities and relations from knowledge-base documents.

- Documents with structured `fields` (the synthetic world's forms: {"Name": "Alice
  Smith", ...}) give exact facts: (document)-[HAS_FIELD {label: field}]->(value), the
  value typed by its field name. A value shared by two forms joins them at 2 hops.
- Free text goes through a small rule-based extractor, documented so its limits are
  plain: "X is a/an Y" sentences give (X)-[IS_A]->(Y); every capitalised span (one or
  more Capitalised words, not a lone sentence-initial function word) is an entity the
  document MENTIONS. No coreference, no relation types beyond these two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_CAPS = re.compile(r"\b[A-Z][\w-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w-]*)*")
_IS_A = re.compile(r"\b([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)\s+(?:is|was)\s+(?:a|an|the)\s+"
                   r"([a-z][\w-]*(?:\s+[a-z][\w-]*){0,2})")
_FUNCTION = {"The", "A", "An", "This", "That", "These", "Those", "It", "In", "On", "At",
             "For", "If", "When", "We", "They", "He", "She", "Its", "There", "And", "But",
             "Or", "Of", "To", "With", "As", "By", "From", "Is", "Was", "Each", "Every"}


@dataclass(frozen=True)
class Entity:
    name: str
    type: str


@dataclass(frozen=True, order=True)
class Relation:
    src: str
    type: str  # HAS_FIELD, IS_A, MENTIONS
    dst: str
    label: str  # the field name for HAS_FIELD, else ""
    source: str  # the knowledge-base source the fact came from
    doc: str = ""  # the knowledge-base document id it came from (its provenance)


_STOP = {"in", "of", "on", "at", "for", "with", "that", "which", "and", "or", "from", "to",
         "by", "is", "was", "who", "where"}


def _trim(phrase: str) -> str:
    """The noun phrase of "is a <phrase>" up to its first preposition or conjunction."""
    words = []
    for w in phrase.split():
        if w in _STOP:
            break
        words.append(w)
    return " ".join(words) or phrase


def mentions(text: str) -> list[str]:
    """Capitalised spans, sentence-initial function words dropped, in order, unique."""
    found: list[str] = []
    for sentence in _SENTENCES.split(text):
        for m in _CAPS.finditer(sentence):
            words = m.group(0).split()
            while words and words[0] in _FUNCTION:
                words = words[1:]
            span = " ".join(words)
            if len(span) >= 2 and span not in found:
                found.append(span)
    return found


def extract(doc) -> tuple[list[Entity], list[Relation]]:
    """Entities and relations of one knowledge-base Document (id, source, text, fields)."""
    doc_type = str(doc.fields.get("_form", "Document")) if doc.fields else "Document"
    entities = {doc.id: Entity(doc.id, doc_type)}
    relations: list[Relation] = []
    if doc.fields:
        for key, value in doc.fields.items():
            if key.startswith("_") or not str(value).strip():
                continue
            value = str(value).strip()
            entities.setdefault(value, Entity(value, key))
            relations.append(Relation(doc.id, "HAS_FIELD", value, key, doc.source, doc.id))
        return list(entities.values()), relations
    for m in _IS_A.finditer(doc.text):
        x, y = m.group(1), _trim(m.group(2))
        entities.setdefault(x, Entity(x, "Mention"))
        entities.setdefault(y, Entity(y, "Class"))
        relations.append(Relation(x, "IS_A", y, "", doc.source, doc.id))
    for span in mentions(doc.text):
        entities.setdefault(span, Entity(span, "Mention"))
        relations.append(Relation(doc.id, "MENTIONS", span, "", doc.source, doc.id))
    return list(entities.values()), relations
