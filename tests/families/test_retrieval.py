"""The retrieval family: the contrastive loss (also across 2 real gloo ranks), one ranked
list across modalities, metrics, learning on real shards, and the exported encoder+index."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time

import faiss
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, CLIPVisionConfig, CLIPVisionModel

from mmtrain.data.shards import BadSample, read_shard
from mmtrain.data.synth.scenes import Scene, render_scene
from mmtrain.data.synth.writer import world_shards, write_world
from mmtrain.families.retrieval import metrics as M
from mmtrain.families.retrieval.config import ImageTowerConfig, RetrievalConfig, TextTowerConfig
from mmtrain.families.retrieval.export import encoder_hash, export
from mmtrain.families.retrieval.loss import contrastive_loss
from mmtrain.families.retrieval.module import Retrieval, relevance
from mmtrain.families.shared import minilm
from mmtrain.rag.index import VectorIndex
from tests.families import retrieval_ddp as ddp

VIT = ImageTowerConfig(kind="vit", hidden_size=32, num_layers=1, num_heads=2,
                       intermediate_size=64, patch_size=8)


@pytest.fixture(scope="module")
def model() -> Retrieval:
    torch.manual_seed(0)
    return Retrieval(RetrievalConfig(eval_samples=32))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval-world")
    write_world(root, seed=0, kinds=["scenes"], train_samples=256, val_samples=16,
                shard_size=128, scene_size=32, progress=False)
    return root


def scene_batch(model: Retrieval, n: int = 6) -> dict:
    scenes = [Scene(c, s, "large", "center", "gray")
              for c, s in zip(["red", "green", "blue", "yellow", "purple", "orange"],
                              ["circle", "square", "triangle", "diamond", "circle", "square"],
                              strict=True)][:n]
    return {"pixels": model.pixels([render_scene(s, 32) for s in scenes]),
            "captions": [s.caption(0) for s in scenes]}


# ---- loss --------------------------------------------------------------------------
def test_contrastive_loss_is_symmetric_infonce_with_clamped_scale(model):
    torch.manual_seed(1)
    img, txt = (torch.nn.functional.normalize(torch.randn(5, 8), dim=-1) for _ in range(2))
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.T
    by_hand = -(logits.log_softmax(1).diag().mean() + logits.log_softmax(0).diag().mean()) / 2
    assert torch.allclose(contrastive_loss(img, txt, scale), by_hand)
    assert math.isclose(model.scale().item(), 1 / 0.07, rel_tol=1e-5)  # CLIP's init
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.scale().item() == 100.0  # clamped like CLIP
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))


def test_negatives_gathered_across_two_gloo_ranks_equal_the_concatenated_batch(tmp_path):
    torch.multiprocessing.spawn(ddp.run_rank, args=(2, str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    image, text, scale, x, y = ddp.toy_setup()
    loss = contrastive_loss(image(x), text(y), scale.exp())
    loss.backward()
    single = [p.grad for p in ddp.params(image, text, scale)]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["loss"], loss, atol=1e-6), rank
        for a, b in zip(got["grads"], single, strict=True):
            assert torch.allclose(a, b, atol=1e-6), rank
    # without the gather each rank would see only its own 4 negatives: another loss
    assert not torch.allclose(contrastive_loss(image(x[:4]), text(y[:4]), scale.exp()), loss)


def test_frozen_text_tower_trains_only_its_projection(model):
    model.train()
    loss = model.losses(scene_batch(model), {"contrastive"}, torch.Generator())["contrastive"]
    assert torch.isfinite(loss)
    model.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in model.text_encoder.parameters())
    for p in (model.text_proj.weight, model.image_proj.weight, model.logit_scale,
              next(model.image_encoder.parameters())):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # cached frozen features follow the weights: a load_state_dict invalidates them
    before = model.embed("a red circle")
    state = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    model.text_encoder.load_state_dict({k: v * 1.01 for k, v in state.items()})
    assert not torch.allclose(model.embed("a red circle"), before)
    model.text_encoder.load_state_dict(state)
    assert torch.allclose(model.embed("a red circle"), before)
    # the curriculum's freeze plan unfreezes the whole family; the phase start re-freezes
    model.requires_grad_(True)
    model.on_phase_start({"contrastive"})
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    model.zero_grad()


def test_text_tower_is_the_real_minilm(model):
    assert sum(p.numel() for p in model.text_encoder.parameters()) == pytest.approx(22.7e6, rel=0.01)
    texts = ["a red circle", "a blue square on a white background"]
    model.eval()
    with torch.no_grad():
        ours = model._text_features(texts)
    model.train()
    ref = minilm.embed_texts(minilm.load_encoder(), texts)
    assert torch.allclose(torch.nn.functional.normalize(ours, dim=-1), ref, atol=1e-5)


def test_decoder_reads_scenes_and_refuses_broken_samples(model, world):
    decode = model.sample_decoder()
    _, raw = next(read_shard(world_shards(world, "scenes", "train")[0]))
    sample = decode(raw)
    assert sample["pixels"].shape == (3, 32, 32) and -1 <= sample["pixels"].min() < 0
    assert sample["caption"] == raw["txt"].decode()
    batch = model.collate([sample, sample])
    assert batch["pixels"].shape == (2, 3, 32, 32) and len(batch["captions"]) == 2
    for broken, reason in (({"png": raw["png"]}, "missing_caption"),
                           ({"txt": b"a red circle"}, "missing_image"),
                           ({"png": raw["png"][:60], "txt": b"x"}, "corrupt_image")):
        with pytest.raises(BadSample) as err:
            decode(broken)
        assert err.value.reason == reason


# ---- one ranked list -----------------------------------------------------------------
def test_embed_puts_text_images_and_documents_in_one_space(model):
    image = render_scene(Scene("red", "circle", "large", "center", "gray"), 32)
    doc = {"words": ["invoice", "total", "42"], "boxes": [[0, 0, 1, 1]] * 3}
    vectors = model.embed(["a red circle", image, doc])
    assert vectors.shape == (3, 128)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    # placeholder until the doc family lands: the document's words through the text tower
    assert torch.allclose(vectors[2], model.embed("invoice total 42")[0], atol=1e-6)
    model.document_encoder = lambda docs: torch.nn.functional.one_hot(
        torch.zeros(len(docs), dtype=torch.long), 128).float()
    try:
        assert model.embed(doc)[0, 0] == 1.0  # the hook replaces the placeholder
    finally:
        model.document_encoder = None
    with pytest.raises(TypeError, match="PIL image"):
        model.embed(3.0)


def test_search_ranks_every_modality_in_one_list(model):
    images = [render_scene(Scene(c, "circle", "large", "center", "gray"), 32)
              for c in ("red", "green", "blue")]
    texts = ["a red circle", "a green circle"]
    vectors = model.embed([*images, *texts]).numpy()
    meta = [{"id": f"img{i}", "modality": "image"} for i in range(3)]
    meta += [{"id": f"txt{i}", "modality": "text"} for i in range(2)]
    hits = model.search(vectors, meta, "a red circle", top_k=5)
    assert len(hits) == 5 and {m for _, m, _ in hits} == {"image", "text"}
    assert hits[0][:2] == ("txt0", "text") and hits[0][2] == pytest.approx(1.0, abs=1e-5)
    assert [s for *_, s in hits] == sorted((s for *_, s in hits), reverse=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss_hits = model.search(index, meta, images[1], top_k=5)
    array_hits = model.search(vectors, meta, images[1], top_k=5)
    assert [h[:2] for h in faiss_hits] == [h[:2] for h in array_hits]
    assert faiss_hits[0][0] == "img1"


# ---- metrics ----------------------------------------------------------------------
def test_metrics_on_hand_made_rankings():
    relevant = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0]], dtype=torch.bool)
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.9, 0.1, 0.8, 0.0]])
    r = M.recall_at_k(scores, relevant, ks=(1, 2))
    assert r == {1: 0.5, 2: 1.0}
    # query 2: relevant at ranks 2 and 3, ideal at 1 and 2
    dcg, ideal = 1 / math.log2(3) + 1 / math.log2(4), 1 + 1 / math.log2(3)
    assert M.ndcg_at_k(scores, relevant) == pytest.approx((1 + dcg / ideal) / 2)
    assert M.chance_recall_at_1(relevant) == pytest.approx((0.25 + 0.5) / 2)


def test_relevance_means_the_caption_describes_the_image():
    a = Scene("red", "circle", "large", "left", "gray")
    b = Scene("red", "circle", "large", "right", "gray")  # differs only in position
    rel = relevance([a, b], [a.caption(0), a.caption(1)])
    # template 0 does not name the position: both images match; template 1 does
    assert rel.tolist() == [[True, True], [True, False]]


# ---- learning ---------------------------------------------------------------------
def test_learns_to_retrieve_far_above_chance_from_real_shards(world):
    torch.manual_seed(0)
    model = Retrieval(RetrievalConfig(eval_samples=128))
    before, _ = model.evaluate(seed=0)
    decode = model.sample_decoder()
    samples = [decode(raw) for shard in world_shards(world, "scenes", "train")
               for _, raw in read_shard(shard)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gen, start = torch.Generator().manual_seed(0), time.perf_counter()
    model.train()
    for _ in range(150):
        pick = torch.randperm(len(samples), generator=gen)[:32].tolist()
        loss = model.losses(model.collate([samples[i] for i in pick]), {"contrastive"}, gen)
        opt.zero_grad()
        loss["contrastive"].backward()
        opt.step()
    seconds = time.perf_counter() - start
    after, media = model.evaluate(seed=0)
    chance = after["chance_recall@1"]
    print(f"recall@1 t2i {before['t2i_recall@1']:.3f} -> {after['t2i_recall@1']:.3f}, "
          f"i2t {before['i2t_recall@1']:.3f} -> {after['i2t_recall@1']:.3f}, "
          f"chance {chance:.3f}, ndcg@10 {after['t2i_ndcg@10']:.3f}, {seconds:.1f} s")
    assert after["t2i_recall@1"] > max(10 * chance, before["t2i_recall@1"] + 0.3)
    assert after["i2t_recall@1"] > max(10 * chance, before["i2t_recall@1"] + 0.3)
    assert after["t2i_ndcg@10"] > before["t2i_ndcg@10"] + 0.3
    assert media["queries"].size == (260 + 5 * 70, 4 * 70)


# ---- export -----------------------------------------------------------------------
def test_export_loads_with_stock_libraries_and_matches(model, tmp_path):
    facts = export(model, tmp_path)
    assert facts["encoder_hash"] == encoder_hash(model)
    # text: plain transformers + the heads file reproduce the module's text embedding
    enc = AutoModel.from_pretrained(tmp_path / "text_encoder")
    tok = AutoTokenizer.from_pretrained(tmp_path / "text_encoder")
    heads = load_file(str(tmp_path / "heads.safetensors"))
    batch = tok(["a red circle"], return_tensors="pt")
    with torch.no_grad():
        pooled = minilm.mean_pool(enc(**batch).last_hidden_state, batch["attention_mask"])
    theirs = torch.nn.functional.normalize(pooled @ heads["text_proj.weight"].T, dim=-1)
    assert torch.allclose(theirs, model.embed("a red circle"), atol=1e-5)
    # the index: the gallery's images and captions; a caption finds itself first
    assert faiss.read_index(str(tmp_path / "index" / "index.faiss")).ntotal == 2 * 32
    index = VectorIndex.load(tmp_path / "index", encoder_hash=facts["encoder_hash"])
    meta = json.loads((tmp_path / "index" / "metadata.json").read_text())
    assert len(index) == len(meta) == facts["index"]["count"] == 2 * 32
    hits = model.search(index, meta, meta[-1]["text"], top_k=3)
    assert hits[0][2] == pytest.approx(1.0, abs=1e-4)  # the caption itself (or a twin)
    assert meta[[m["id"] for m in meta].index(hits[0][0])]["text"] == meta[-1]["text"]
    # reloaded through the config's pretrained paths: the very same encoder
    again = Retrieval(dataclasses.replace(
        model.config, text=TextTowerConfig(pretrained_path=str(tmp_path / "text_encoder")),
        image=dataclasses.replace(model.config.image,
                                  pretrained_path=str(tmp_path / "image_encoder"))))
    again.text_proj.weight.data.copy_(heads["text_proj.weight"])
    again.image_proj.weight.data.copy_(heads["image_proj.weight"])
    again.logit_scale.data.copy_(heads["logit_scale"][0])
    assert encoder_hash(again) == facts["encoder_hash"]
    with torch.no_grad():
        again.image_proj.weight[0, 0] += 1e-3
    assert encoder_hash(again) != facts["encoder_hash"]


def test_vit_tower_exports_and_loads_through_pretrained_path(tmp_path):
    torch.manual_seed(0)
    model = Retrieval(RetrievalConfig(image=VIT, eval_samples=10))
    facts = export(model, tmp_path)
    assert "CLIPVisionModel" in facts["image_encoder"]
    vision = CLIPVisionModel.from_pretrained(tmp_path / "image_encoder")
    assert vision.config.hidden_size == 32
    loaded = Retrieval(RetrievalConfig(image=dataclasses.replace(
        VIT, pretrained_path=str(tmp_path / "image_encoder")), eval_samples=10))
    ours, theirs = model.image_encoder.state_dict(), loaded.image_encoder.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with torch.device("meta"):  # validate=true builds there; from_pretrained cannot
        meta = Retrieval(RetrievalConfig(
            text=TextTowerConfig(pretrained_path=str(tmp_path / "text_encoder")),
            image=dataclasses.replace(VIT, pretrained_path=str(tmp_path / "image_encoder"))))
    assert meta.image_encoder.out_dim == 32 and meta.text_proj.weight.is_meta
    with pytest.raises(ValueError, match="expects 32 px"):
        Retrieval(RetrievalConfig(resolution=64, image=dataclasses.replace(
            VIT, pretrained_path=str(tmp_path / "image_encoder"))))


def test_pretrained_path_takes_a_whole_clip_checkpoint(tmp_path):
    # a CLIPModel folder (as openai/clip-vit-base-patch16 ships): its vision half loads
    from transformers import CLIPConfig, CLIPModel

    vision = CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, image_size=32, patch_size=8)
    clip = CLIPModel(CLIPConfig(text_config={"hidden_size": 32, "num_hidden_layers": 1,
                                             "num_attention_heads": 2,
                                             "intermediate_size": 64, "vocab_size": 99},
                                vision_config=vision.to_dict()))
    clip.save_pretrained(tmp_path)
    loaded = Retrieval(RetrievalConfig(image=dataclasses.replace(
        VIT, pretrained_path=str(tmp_path)), eval_samples=10))
    ref = clip.vision_model.state_dict()
    got = loaded.image_encoder.model.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


# ---- config -----------------------------------------------------------------------
def test_config_defaults_match_the_tiny_yaml_and_the_real_size_config_composes():
    from omegaconf import OmegaConf

    from mmtrain.config.validate import validate
    from tests.conftest import REPO, compose

    tiny = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/retrieval/tiny.yaml"))
    assert set(tiny) == {f.name for f in dataclasses.fields(RetrievalConfig)}
    nested = ("text", "image", "document")
    assert RetrievalConfig(**{k: v for k, v in tiny.items() if k not in nested}) \
        == RetrievalConfig()
    for size in ("tiny", "clip_vitb16"):
        run = validate(compose("+recipe=t2i_pretrain", f"+model/retrieval={size}",
                               "+data.family_sources.retrieval=[scenes]"))
        assert isinstance(run.model["retrieval"], RetrievalConfig)
    assert run.model["retrieval"].image.kind == "vit"
    assert run.model["retrieval"].image.patch_size == 16


def test_query_panel_marks_relevant_results(model):
    _, media = model.evaluate(seed=0)
    panel = np.asarray(media["queries"])
    assert panel.shape == (4 * 70, 260 + 5 * 70, 3)
    Image.open(io.BytesIO(_png(media["queries"])))  # a valid image file


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
