"""Document queries in the retrieval family: the doc family's LayoutLMv3 as a document
tower, trained contrastively against the pages' summary texts, one ranked list over
images, texts and documents, and its export (docs/retrieval.md)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import LayoutLMv3ImageProcessorPil, LayoutLMv3Model, LayoutLMv3Tokenizer

from mmtrain.data.shards import read_shard
from mmtrain.data.synth.writer import world_shards, write_world
from mmtrain.families.doc import networks as doc_networks
from mmtrain.families.doc.batch import normalised_boxes
from mmtrain.families.doc.config import DocConfig
from mmtrain.families.retrieval import document_tower as dt
from mmtrain.families.retrieval.config import DocumentTowerConfig, RetrievalConfig
from mmtrain.families.retrieval.export import encoder_hash, export, gallery
from mmtrain.families.retrieval.loss import contrastive_loss
from mmtrain.families.retrieval.module import Retrieval
from mmtrain.rag.index import EncoderMismatch, VectorIndex
from tests.families import retrieval_ddp as ddp

STEPS, BATCH = 110, 16


def build(**document) -> Retrieval:
    torch.manual_seed(0)
    return Retrieval(RetrievalConfig(eval_samples=16, document=DocumentTowerConfig(
        enabled=True, eval_documents=32, **document)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Brief training from real shards: documents (png + json) and scenes (png + txt) in
    one mixed stream, decoded and collated by the family's own codec."""
    root = tmp_path_factory.mktemp("retrieval-docs")
    write_world(root, seed=0, kinds=["documents", "scenes"],
                train_samples={"documents": 160, "scenes": 160}, val_samples=8,
                shard_size=160, scene_size=32, progress=False)
    model = build()
    decode = model.sample_decoder()
    samples = {kind: [decode(s) for shard in world_shards(root, kind, "train")
                      for _, s in read_shard(shard)] for kind in ("documents", "scenes")}
    before = model.evaluate_documents(seed=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        picks = [samples[k][i] for k in samples
                 for i in torch.randperm(len(samples[k]), generator=g)[:BATCH // 2].tolist()]
        batch = model.collate(picks)
        losses = model.losses(batch, set(model.default_loss_weights), g)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return model, before, model.evaluate_documents(seed=0), losses


def test_document_tower_is_the_doc_family_layoutlmv3_and_loads_a_doc_layout_folder(tmp_path):
    model = build()
    tower = model.document_tower
    assert isinstance(tower.model, LayoutLMv3Model)
    layout = DocConfig().layout
    assert (tower.model.config.hidden_size, tower.model.config.num_hidden_layers,
            tower.model.config.input_size) == (layout.hidden_size, layout.num_layers,
                                               layout.input_size)
    doc_tokenizer, _ = doc_networks.build_tokenizers(DocConfig())
    assert tower.tokenizer.get_vocab() == doc_tokenizer.get_vocab()
    # a doc-family layout folder (as doc's export writes it: token-classification model +
    # tokenizer + image processor) loads as the tower's backbone, weights intact
    full = doc_networks.build_layout(DocConfig(), doc_tokenizer)
    full.save_pretrained(tmp_path)
    doc_tokenizer.save_pretrained(tmp_path)
    doc_networks.build_layout_image_processor(DocConfig(), 64).save_pretrained(tmp_path)
    loaded = build(pretrained_path=str(tmp_path)).document_tower.model
    ref = full.layoutlmv3.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())


def test_document_contrastive_needs_the_tower():
    off = Retrieval(RetrievalConfig(eval_samples=16))
    assert "document_contrastive" not in off.default_loss_weights
    page = dt.eval_pages(0, DocumentTowerConfig(eval_documents=4))[0]
    with pytest.raises(ValueError, match="document.enabled=true"):
        off.losses({"documents": [page], "summaries": [dt.summary(page)]},
                   {"document_contrastive"}, torch.Generator())


def test_uneven_and_empty_rank_shares_gather_to_the_concatenated_batch(tmp_path):
    """A mixed batch splits its samples between scenes and documents differently on each
    rank: 3 + 5 rows, and 0 + 8 (a rank with no documents still joins the gather)."""
    splits = [[0, 3, 8], [0, 0, 8]]
    torch.multiprocessing.spawn(ddp.run_rank_uneven,
                                args=(2, str(tmp_path / "init"), str(tmp_path), splits),
                                nprocs=2, join=True)
    image, text, scale, x, y = ddp.toy_setup()
    loss = contrastive_loss(image(x), text(y), scale.exp())
    loss.backward()
    single = [p.grad for p in ddp.params(image, text, scale)]
    for k in range(len(splits)):
        for rank in range(2):
            got = torch.load(tmp_path / f"split{k}-rank{rank}.pt")
            assert torch.allclose(got["loss"], loss, atol=1e-6), (k, rank)
            for a, b in zip(got["grads"], single, strict=True):
                assert torch.allclose(a, b, atol=1e-6), (k, rank)


def test_summary_is_the_title_and_the_fields():
    page = dt.eval_pages(3, DocumentTowerConfig(eval_documents=4))[0]
    text = dt.summary(page)
    header = next(e["text"] for e in page["entities"] if e["label"] == "header")
    assert text.startswith(header + ". ")
    assert all(f"{k} {v}" in text for k, v in page["fields"].items())


def test_documents_learn_to_find_their_text_far_above_chance(trained):
    model, before, after, losses = trained
    print("document retrieval, before:", before, "after:", after)
    assert set(losses) == {"contrastive", "document_contrastive"}  # mixed batches
    chance = after["document_chance_recall@1"]
    assert chance == pytest.approx(1 / 32)
    assert before["d2t_recall@1"] <= 3 * chance  # untrained: near chance
    # measured 0.34 (t2d 0.31) after 110 steps; chance 0.031
    assert after["d2t_recall@1"] >= max(0.2, 6 * chance), after
    assert after["t2d_recall@1"] >= max(0.15, 5 * chance), after
    assert after["d2t_recall@10"] >= 0.7, after


def test_one_ranked_list_over_images_texts_and_documents(trained):
    model = trained[0]
    vectors, meta = gallery(model, seed=0)
    assert {m["modality"] for m in meta} == {"image", "text", "document"}
    pages = model.eval_documents(0)
    # a document's summary as a text query: documents come first, and its own page is
    # on top far more often than chance (1 in 32 documents, 16 images, 16 captions)
    first_modalities, own_first = [], 0
    for i, page in enumerate(pages):
        hits = model.ranked(vectors, meta, dt.summary(page), top_k=5)
        first_modalities.append(hits[0]["modality"])
        own_first += hits[0]["id"] == f"document-{i}"
    print("mixed gallery: first hit modalities", first_modalities, "own page first", own_first)
    assert first_modalities.count("document") >= 0.9 * len(pages)
    assert own_first >= 6, own_first
    # a page as the query; everything ranked in one list, best first, with its source
    hits = model.ranked(vectors, meta, pages[0], top_k=len(meta))
    assert {h["modality"] for h in hits} == {"image", "text", "document"}
    assert [h["rank"] for h in hits] == list(range(1, len(meta) + 1))
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0] == {**meta[32], "rank": 1, "score": pytest.approx(1.0, abs=1e-4)}
    assert hits[0]["id"] == "document-0" and hits[0]["source"] == pages[0]["source"]
    # search() keeps its (id, modality, score) shape over the same ranking
    assert model.search(vectors, meta, pages[0], top_k=3) == [
        (h["id"], h["modality"], h["score"]) for h in hits[:3]]


def test_export_writes_the_document_tower_and_the_index_records_it(trained, tmp_path):
    model = trained[0]
    facts = export(model, tmp_path)
    digest = encoder_hash(model)
    assert facts["encoder_hash"] == digest
    assert facts["document_encoder"]["folder"] == "document_encoder"
    assert "document" in facts["index"]["modalities"]
    meta = json.loads((tmp_path / "index" / "metadata.json").read_text())
    docs = [m for m in meta if m["modality"] == "document"]
    assert len(docs) == 32 and all(m["source"].startswith("synthetic:") for m in docs)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["encoder_hash"] == digest and manifest["count"] == len(meta)
    # stock transformers classes + the heads reproduce a document's embedding
    folder = tmp_path / "document_encoder"
    enc, tok = LayoutLMv3Model.from_pretrained(folder), LayoutLMv3Tokenizer.from_pretrained(folder)
    proc = LayoutLMv3ImageProcessorPil.from_pretrained(folder, apply_ocr=False)
    heads = load_file(str(tmp_path / "heads.safetensors"))
    page = model.eval_documents(0)[5]
    batch = tok(page["words"], boxes=normalised_boxes(page["boxes"], *page["image"].size),
                return_tensors="pt")
    with torch.no_grad():
        hidden = enc(**batch, pixel_values=proc(page["image"], return_tensors="pt")
                     .pixel_values).last_hidden_state[:, : batch["input_ids"].shape[1]]
    theirs = torch.nn.functional.normalize(hidden.mean(1) @ heads["document_proj.weight"].T, dim=-1)
    assert torch.allclose(theirs, model.embed(page), atol=1e-5)
    # the index finds the page's own row first
    index = VectorIndex.load(tmp_path / "index", encoder_hash=digest)
    assert model.search(index, meta, page, top_k=1)[0][0] == "document-5"
    # reloaded through document.pretrained_path: the same encoder, the same hash
    again = Retrieval(dataclasses.replace(model.config, document=dataclasses.replace(
        model.config.document, pretrained_path=str(folder))))
    # every other weight copied: equal hashes prove the folder holds the tower's weights
    again.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("document_tower.")}, strict=False)
    assert encoder_hash(again) == digest
    # the document tower is part of the hash: one changed weight, and the index refuses
    with torch.no_grad():
        again.document_proj.weight[0, 0] += 1e-3
    assert encoder_hash(again) != digest
    with pytest.raises(EncoderMismatch, match="not comparable"):
        VectorIndex.load(tmp_path / "index", encoder_hash=encoder_hash(again))
    np.testing.assert_allclose(again.embed("Tax Invoice").numpy(),
                               model.embed("Tax Invoice").numpy(), atol=1e-6)
