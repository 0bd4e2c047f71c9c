"""KnowledgeBase with the real MiniLM encoder: paraphrased questions find the right
passage with its source; filters, replacement, deletion and the saved folder."""

from __future__ import annotations

import json

import pytest

from mmtrain.rag.index import EncoderMismatch
from mmtrain.rag.knowledge_base import KnowledgeBase

DOCS = [
    {"id": "eiffel", "source": "travel", "text": "The Eiffel Tower is a wrought-iron lattice "
     "tower on the Champ de Mars in Paris. It was completed in 1889 for the World's Fair."},
    {"id": "kyoto", "source": "travel", "text": "Kyoto was the capital of Japan for more than "
     "a thousand years and is known for its Buddhist temples and wooden teahouses."},
    {"id": "bread", "source": "cooking", "text": "To bake sourdough bread, feed the starter "
     "the night before, mix flour and water, let the dough rise slowly, then bake it hot."},
    {"id": "espresso", "source": "cooking", "text": "An espresso is brewed by forcing hot "
     "water through finely ground coffee under about nine bars of pressure."},
    {"id": "mitochondria", "source": "biology", "text": "Mitochondria produce most of the "
     "chemical energy of a cell in the form of ATP through cellular respiration."},
    {"id": "photosynthesis", "source": "biology", "text": "Plants use photosynthesis to turn "
     "sunlight, carbon dioxide and water into glucose, releasing oxygen."},
    {"id": "gpu", "source": "computing", "text": "A graphics processing unit runs thousands "
     "of threads in parallel, which makes it fast at matrix multiplication."},
    {"id": "tcp", "source": "computing", "text": "TCP guarantees that bytes arrive in order "
     "and retransmits lost packets, unlike UDP."},
]
QUESTIONS = {  # paraphrases: few words shared with the answer
    "When was the iron tower in the French capital finished?": ("eiffel", "travel"),
    "Which old Japanese imperial city is famous for shrines and tea houses?": ("kyoto", "travel"),
    "How do I make a naturally leavened loaf?": ("bread", "cooking"),
    "How is a strong small coffee made with a machine?": ("espresso", "cooking"),
    "Which organelle supplies the fuel a cell runs on?": ("mitochondria", "biology"),
    "How do green leaves make sugar from light?": ("photosynthesis", "biology"),
    "Why are graphics cards good for deep learning?": ("gpu", "computing"),
    "Which network protocol resends dropped packets and keeps order?": ("tcp", "computing"),
}


@pytest.fixture()
def kb(encoder):
    base = KnowledgeBase(encoder)
    assert base.add_documents(DOCS) == len(DOCS)
    return base


def test_paraphrased_questions_find_the_passage_and_its_source(kb):
    for question, (doc_id, source) in QUESTIONS.items():
        top = kb.query(question, top_k=3)
        assert len(top) == 3 and top[0].score >= top[1].score
        assert (top[0].doc_id, top[0].source) == (doc_id, source), (question, top)
        assert top[0].text in next(d["text"] for d in DOCS if d["id"] == doc_id)


def test_source_filter_replace_and_delete(kb):
    only = kb.query("Why are graphics cards good for deep learning?", source="cooking", top_k=5)
    assert {p.source for p in only} == {"cooking"} and len(only) == 2
    assert kb.query("anything", source="no-such-source") == []
    # replacing a document by id swaps its chunks
    kb.add_documents([{"id": "tcp", "source": "computing", "text": "QUIC runs over UDP and "
                       "multiplexes streams without head-of-line blocking."}])
    assert len(kb) == len(DOCS)
    assert kb.query("Which transport avoids head-of-line blocking?", top_k=1)[0].doc_id == "tcp"
    assert all("retransmits" not in p.text for p in kb.query("resend lost packets", top_k=8))
    # deleting a source removes its passages from every later answer
    assert kb.delete(source="biology") == 2
    hits = kb.query("Which organelle supplies the fuel a cell runs on?", top_k=10)
    assert "biology" not in {p.source for p in hits} and len(hits) == len(DOCS) - 2
    assert kb.delete(doc_ids=["gpu"]) == 1 and "gpu" not in {p.doc_id for p in
                                                           kb.query("graphics", top_k=10)}


def test_saved_folder_round_trips_and_refuses_another_encoder(kb, encoder, tmp_path):
    folder = kb.save(tmp_path / "kb")
    meta = json.loads((folder / "kb.json").read_text())
    manifest = json.loads((folder / "index" / "manifest.json").read_text())
    assert meta["encoder_hash"] == manifest["encoder_hash"] == encoder.hash
    loaded = KnowledgeBase.load(folder, encoder)
    q = "How do I make a naturally leavened loaf?"
    assert loaded.query(q, top_k=3) == kb.query(q, top_k=3)

    class OtherEncoder:  # same vectors, different identity: must still be refused
        dim, hash = encoder.dim, "0123456789abcdef"

        def embed(self, texts):
            return encoder.embed(texts)

    with pytest.raises(EncoderMismatch, match=f"{encoder.hash}.*0123456789abcdef"):
        KnowledgeBase.load(folder, OtherEncoder())
