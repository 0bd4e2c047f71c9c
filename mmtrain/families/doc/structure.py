"""Page structure from tagged words: entities, question->answer links, sections; and one
extraction rendered as JSON, XML or CSV.

The parser reads what the layout model predicts (a BIO tag per word) plus geometry:
an answer belongs to the nearest question it sits right of (on the same line) or below
(under its left part), each question taking at most one answer, nearest pairs first, as
forms are drawn. Sections start at a header or at a vertical gap much taller than a line.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

Box = list[float]


@dataclass
class Entity:
    id: int
    label: str  # header | question | answer | other
    text: str
    word_ids: list[int]
    box: Box


@dataclass
class Section:
    title: str | None
    entity_ids: list[int] = field(default_factory=list)


@dataclass
class Extraction:
    entities: list[Entity]
    links: list[list[int]]  # [question entity id, answer entity id]
    sections: list[Section]

    @property
    def fields(self) -> dict[str, str]:
        """question text without its trailing colon -> answer text (the reader's target)."""
        by_id = {e.id: e for e in self.entities}
        return {_key(by_id[q].text): by_id[a].text for q, a in self.links}

    def to_dict(self) -> dict:
        by_id = {e.id: e for e in self.entities}
        answer_of = dict((q, a) for q, a in self.links)
        sections = []
        for s in self.sections:
            pairs = [{"question": by_id[i].text, "answer": by_id[answer_of[i]].text}
                     for i in s.entity_ids if i in answer_of]
            sections.append({"title": s.title, "entities": s.entity_ids, "pairs": pairs})
        return {"fields": self.fields, "sections": sections, "links": self.links,
                "entities": [asdict(e) for e in self.entities]}


def _key(question: str) -> str:
    return question.strip().rstrip(":").strip()


def group_entities(words: list[str], boxes: list[Box], tags: list[str]) -> list[Entity]:
    """BIO tags (in reading order) -> entities; an I- tag of another type than the open
    entity starts a new one (strict reading), and runs of O words on one line become
    `other` entities."""
    entities: list[Entity] = []
    open_: list[int] = []
    open_label = ""

    def close() -> None:
        if open_:
            xs = [boxes[i] for i in open_]
            box = [min(b[0] for b in xs), min(b[1] for b in xs),
                   max(b[2] for b in xs), max(b[3] for b in xs)]
            entities.append(Entity(len(entities), open_label,
                                   " ".join(words[i] for i in open_), list(open_), box))
            open_.clear()

    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        label = kind.lower() if kind else "other"
        same_line = bool(open_) and _same_line(boxes[open_[-1]], boxes[i])
        continues = open_label == label and same_line and (prefix == "I" or label == "other")
        if not continues:
            close()
            open_label = label
        open_.append(i)
    close()
    return entities


def _same_line(a: Box, b: Box) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > 0.5 * min(a[3] - a[1], b[3] - b[1])


def link(entities: list[Entity]) -> list[list[int]]:
    """Answer -> question by geometry; nearest candidate pairs are taken first."""
    questions = [e for e in entities if e.label == "question"]
    answers = [e for e in entities if e.label == "answer"]
    candidates = []
    for q in questions:
        h = q.box[3] - q.box[1]
        for a in answers:
            if _same_line(q.box, a.box) and a.box[0] >= q.box[2] - h:
                gap = a.box[0] - q.box[2]
            elif a.box[1] >= q.box[3] - h / 2 and q.box[0] - 2 * h <= a.box[0] <= q.box[2]:
                gap = (a.box[1] - q.box[3]) + abs(a.box[0] - q.box[0]) / 4
            else:
                continue
            candidates.append((max(gap, 0.0), q.id, a.id))
    links, used_q, used_a = [], set(), set()
    for _, q, a in sorted(candidates):
        if q not in used_q and a not in used_a:
            links.append([q, a])
            used_q.add(q)
            used_a.add(a)
    return sorted(links)


def sections(entities: list[Entity], gap_lines: float = 2.5) -> list[Section]:
    """Top-to-bottom: a header opens a section, and so does a gap over `gap_lines` line
    heights (measured as the median entity height)."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda e: (e.box[1], e.box[0]))
    heights = sorted(e.box[3] - e.box[1] for e in entities)
    line = max(heights[len(heights) // 2], 1.0)
    out: list[Section] = []
    bottom = None
    for e in ordered:
        if e.label == "header" or not out or (bottom is not None and e.box[1] - bottom > gap_lines * line):
            out.append(Section(e.text if e.label == "header" else None))
        out[-1].entity_ids.append(e.id)
        bottom = e.box[3] if bottom is None else max(bottom, e.box[3])
    return out


def parse(words: list[str], boxes: list[Box], tags: list[str]) -> Extraction:
    entities = group_entities(words, boxes, tags)
    return Extraction(entities, link(entities), sections(entities))


# ---- writers: one extraction, three formats --------------------------------------------
def to_json(ex: Extraction) -> str:
    return json.dumps(ex.to_dict(), indent=2, ensure_ascii=False)


def to_xml(ex: Extraction) -> str:
    data = ex.to_dict()
    root = ET.Element("document")
    fields = ET.SubElement(root, "fields")
    for key, value in data["fields"].items():
        ET.SubElement(fields, "field", name=key).text = value
    for s in data["sections"]:
        sec = ET.SubElement(root, "section", title=s["title"] or "")
        for pair in s["pairs"]:
            p = ET.SubElement(sec, "pair")
            ET.SubElement(p, "question").text = pair["question"]
            ET.SubElement(p, "answer").text = pair["answer"]
    ents = ET.SubElement(root, "entities")
    for e in ex.entities:
        ET.SubElement(ents, "entity", id=str(e.id), label=e.label,
                      box=",".join(f"{v:g}" for v in e.box)).text = e.text
    return ET.tostring(root, encoding="unicode")


CSV_COLUMNS = ("section", "question", "answer", "question_box", "answer_box")


def to_csv(ex: Extraction) -> str:
    """One row per question->answer pair."""
    by_id = {e.id: e for e in ex.entities}
    section_of = {i: s.title or "" for s in ex.sections for i in s.entity_ids}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for q, a in ex.links:
        box = lambda e: " ".join(f"{v:g}" for v in e.box)  # noqa: E731
        writer.writerow([section_of.get(q, ""), _key(by_id[q].text), by_id[a].text,
                         box(by_id[q]), box(by_id[a])])
    return out.getvalue()


WRITERS = {"json": to_json, "xml": to_xml, "csv": to_csv}


def render(ex: Extraction, fmt: str) -> str:
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(WRITERS)}")
    return WRITERS[fmt](ex)
