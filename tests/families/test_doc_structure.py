"""The structure parser and writers on synthetic pages' gold tags, and the metrics."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import numpy as np

from mmtrain.data.synth.documents import sample_document
from mmtrain.families.doc import metrics, structure
from mmtrain.families.doc.batch import word_tags


def test_gold_tags_give_every_link_field_and_section():
    for i in range(30):
        page = sample_document(np.random.default_rng([5, i])).annotation()
        ex = structure.parse(page["words"], page["boxes"], word_tags(page))
        gold = metrics.link_pairs(page["entities"], page["links"])
        assert metrics.link_pairs([vars(e) for e in ex.entities], ex.links) == gold, i
        assert ex.fields == page["fields"], i
        header = next(e["text"] for e in page["entities"] if e["label"] == "header")
        assert ex.sections[0].title == header


def test_one_extraction_three_formats():
    page = sample_document(np.random.default_rng(3)).annotation()
    ex = structure.parse(page["words"], page["boxes"], word_tags(page))
    data = json.loads(structure.render(ex, "json"))
    assert data["fields"] == page["fields"]
    root = ET.fromstring(structure.render(ex, "xml"))
    assert {f.get("name"): f.text for f in root.iter("field")} == page["fields"]
    rows = list(csv.DictReader(io.StringIO(structure.render(ex, "csv"))))
    assert {r["question"]: r["answer"] for r in rows} == page["fields"]


def test_sections_split_at_headers_and_large_gaps():
    words = ["Part", "A", "Name:", "Bo", "Part", "B", "Note"]
    boxes = [[0, 0, 20, 10], [22, 0, 30, 10], [0, 14, 20, 24], [24, 14, 40, 24],
             [0, 40, 20, 50], [22, 40, 30, 50], [0, 100, 20, 110]]
    tags = ["B-HEADER", "I-HEADER", "B-QUESTION", "B-ANSWER", "B-HEADER", "I-HEADER", "O"]
    ex = structure.parse(words, boxes, tags)
    assert [s.title for s in ex.sections] == ["Part A", "Part B", None]
    assert ex.fields == {"Name": "Bo"}


def test_strict_entity_f1_and_anls():
    gold = [["B-QUESTION", "I-QUESTION", "B-ANSWER"]]
    assert metrics.entity_f1(gold, gold) == 1.0
    # an I- without its B- is a wrong boundary in strict mode (lenient seqeval accepts it)
    assert metrics.entity_f1(gold, [["I-QUESTION", "I-QUESTION", "B-ANSWER"]]) == 2 / 3
    assert metrics.anls("Alice Smith", "alice smith") == 1.0
    assert metrics.anls("Alice Smith", "Bob") == 0.0
    scores = metrics.reader_scores([{"Name": "Bo", "Date": "2020"}], ['{"Name": "Bo", "Date": "20'])
    assert scores["reader_field_accuracy"] == 0.5  # a truncated output still yields Name
