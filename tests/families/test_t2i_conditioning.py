"""Text-to-image conditioning: negative prompts, per-call samplers, CFG, style presets,
retrieval (RAG) tokens, and their export next to the stock pipeline."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from mmtrain.config.validate import validate
from mmtrain.data.shards import BadSample, read_shard
from mmtrain.data.synth.scenes import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    Scene,
    dominant_colour,
    render_scene,
)
from mmtrain.families.t2i import batch as batch_codec
from mmtrain.families.t2i import rag
from mmtrain.families.t2i.conditioning import load_extras
from mmtrain.families.t2i.export import export
from mmtrain.families.t2i.module import TextToImage
from mmtrain.families.t2i.styles import StyleTokens
from tests.conftest import compose

STYLE_OF = {"gray": "photographic", "white": "illustration", "black": "3d-model"}
STYLES = [f"model.t2i.styles.names=[{','.join(STYLE_OF.values())}]",
          f"++model.t2i.styles.from_background={{{', '.join(f'{b}: {s}' for b, s in STYLE_OF.items())}}}"]


def tiny(*overrides: str, seed: int = 0) -> TextToImage:
    torch.manual_seed(seed)
    cfg = validate(compose("+recipe=t2i_pretrain", "model.t2i.resolution=8",
                           "model.t2i.sampler.steps=3", *overrides)).model["t2i"]
    model = TextToImage(cfg)
    model.latent_scale.fill_(1.0)
    return model


def same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def pixels(scenes: list[Scene], size: int = 8) -> torch.Tensor:
    arrays = [np.asarray(render_scene(s, size), np.float32) / 127.5 - 1 for s in scenes]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    return rag.build_facts(tmp_path_factory.mktemp("kb") / "facts")


@pytest.fixture(scope="module")
def plain() -> TextToImage:
    return tiny()


@pytest.fixture(scope="module")
def conditioned(kb) -> TextToImage:
    return tiny(*STYLES, f"model.t2i.rag.knowledge_base={kb}", "model.t2i.rag.top_k=2")


# ---- negative prompts, samplers, CFG --------------------------------------------------
def test_negative_prompt_sampler_steps_and_guidance_each_change_outputs(plain):
    prompts = ["a red shape", "a blue circle"]
    base = plain.generate(prompts, seed=0)
    assert same(base, plain.generate(prompts, seed=0))
    variants = {
        "negative_prompt": plain.generate(prompts, seed=0, negative_prompt="a green shape"),
        "negative per prompt": plain.generate(prompts, seed=0, negative_prompt=["", "a red shape"]),
        "sampler": plain.generate(prompts, seed=0, sampler="ddpm"),
        "steps": plain.generate(prompts, seed=0, num_inference_steps=2),
        "no guidance": plain.generate(prompts, seed=0, guidance_scale=1.0),
    }
    for name, images in variants.items():
        assert not same(base, images), name
    # one negative per prompt: the first prompt's negative is "", as in the base
    assert same(base[:1], variants["negative per prompt"][:1])
    assert same(base, plain.generate(prompts, seed=0, sampler="ddim"))  # the tiny default
    with pytest.raises(ValueError, match="unknown sampler 'euler'; valid: ddpm, ddim, dpm_solver"):
        plain.generate(prompts, seed=0, sampler="euler")
    with pytest.raises(ValueError, match="3 negative_prompts for 2 prompts"):
        plain.generate(prompts, seed=0, negative_prompt=["a", "b", "c"])
    with pytest.raises(ValueError, match="no style presets"):
        plain.generate(prompts, seed=0, style="illustration")


# ---- style presets ----------------------------------------------------------------
def test_style_tokens_train_select_and_live_in_the_state_dict(conditioned):
    m = conditioned
    assert m.styles.names == list(STYLE_OF.values())
    assert m.styles.table.shape == (4, 4, m.text_encoder.config.hidden_size)  # + "no style"
    base = m.generate(["a red shape"], seed=0, style="illustration")
    for other in ("3d-model", None):
        assert not same(base, m.generate(["a red shape"], seed=0, style=other)), other
    with pytest.raises(ValueError, match="unknown style 'anime'; this model knows photographic"):
        m.generate(["a red shape"], seed=0, style="anime")

    scenes = [Scene(c, "circle", "large", "center", b) for c, b in
              zip(COLOURS, ["white", "black", "gray", "white"], strict=False)]
    batch = {"pixels": pixels(scenes), "captions": [s.caption(3) for s in scenes],
             "styles": torch.tensor([2, 3, 1, 2])}
    m.zero_grad()
    m.losses(batch, {"diffusion"}, torch.Generator().manual_seed(0))["diffusion"].backward()
    assert m.styles.table.grad.abs().sum() > 0
    m.zero_grad()  # without dropout every labelled style (and only those) gets a gradient
    context = m.conditioner().training_context(
        m.encode_text(batch["captions"]), batch["captions"], torch.zeros(4, dtype=torch.bool),
        torch.Generator(), batch["styles"], rag_dropout=0.0, style_dropout=0.0)
    m.unet(torch.randn(4, *m.latent_shape), torch.tensor([10, 200, 500, 900]),
           encoder_hidden_states=context).sample.pow(2).mean().backward()
    rows = m.styles.table.grad.abs().sum((1, 2))
    assert rows[0] == 0 and (rows[1:] > 0).all()
    assert "styles.table" in m.state_dict()
    assert any(p is m.styles.table for p in m._ema_parameters())  # sampling uses its EMA


def test_style_labels_come_from_the_sample_or_the_scene_background(tmp_path, conditioned):
    from mmtrain.data.synth.writer import write_world

    write_world(tmp_path, kinds=("scenes",), train_samples=12, val_samples=1, shard_size=12,
                progress=False)
    decode = conditioned.sample_decoder()
    raws = [raw for _, raw in read_shard(str(tmp_path / "scenes" / "train-000000.tar"))]
    samples = [decode(raw) for raw in raws]
    names = conditioned.styles.names
    for raw, sample in zip(raws, samples, strict=True):
        background = json.loads(raw["json"])["background"]
        assert names[sample["style"] - 1] == STYLE_OF[background]
    collated = batch_codec.collate(samples)
    assert collated["styles"].tolist() == [s["style"] for s in samples]
    assert decode({**raws[0], "style.txt": b"3d-model"})["style"] == names.index("3d-model") + 1
    with pytest.raises(BadSample, match="style 'anime' is not one of styles.names"):
        decode({**raws[0], "style.txt": b"anime"})
    with pytest.raises(ValueError, match="maps to sketch, which styles.names"):
        tiny("model.t2i.styles.names=[photo]", "++model.t2i.styles.from_background={white: sketch}")


# ---- retrieval --------------------------------------------------------------------
def test_retrieved_passages_join_the_context_and_are_reported(conditioned):
    m = conditioned
    cond = m.conditioner()
    n_prompt = m.tokenizer.model_max_length
    assert cond.context_length() == n_prompt * (1 + 2) + 4  # prompt, 2 passages, 4 style tokens
    emb = cond.embeds(["a tomato", "a lime"], negative_prompt="blurry")
    assert emb.prompt.shape == emb.negative.shape == (2, cond.context_length(), 64)

    out = m.generate_with_context(["a tomato", "a lime"], seed=0, style="illustration")
    top = [hits[0] for hits in out.passages]
    assert [p.text for p in top] == ["A tomato is a red circle.", "A lime is a green circle."]
    report = out.report()
    assert report[0]["style"] == "illustration"
    assert report[0]["retrieved"][0] | {"score": 0} == {
        "text": "A tomato is a red circle.", "source": "objects", "doc_id": "object-tomato",
        "chunk": 0, "score": 0}
    without = m.generate_with_context(["a tomato", "a lime"], seed=0, style="illustration",
                                      retrieve=False)
    assert without.passages == [[], []]
    assert not same(out.images, without.images)  # the RAG tokens change what is drawn


def test_retrieval_trains_the_text_encoder_and_drops_with_the_caption(conditioned):
    m = conditioned
    cond = m.conditioner()
    captions = ["a tomato", "a lime"]
    prompt = m.encode_text(captions)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kept = cond.training_context(prompt, captions, torch.tensor([False, False]), gen(), None, 0, 0)
    dropped = cond.training_context(prompt, captions, torch.tensor([True, True]), gen(), None, 0, 0)
    empty = cond.extend(prompt, None, None)
    n = m.tokenizer.model_max_length
    assert torch.equal(dropped, empty)  # a dropped caption drops its passages and style
    assert not torch.allclose(kept[:, n:], empty[:, n:])
    m.zero_grad()
    kept[:, n:-4].pow(2).mean().backward()  # passage states alone
    assert m.text_encoder.get_input_embeddings().weight.grad.abs().sum() > 0


def test_knowledge_source_filters_and_a_missing_base_names_the_fix(kb, tmp_path):
    colours = rag.Retriever(kb, source="colours", top_k=3)
    assert {p.source for p in colours("a tomato")} == {"colours"}
    assert colours("a tomato")[0].text.startswith("Things that are red:")
    with pytest.raises(ValueError, match="no source 'recipes'.*colours, objects"):
        rag.Retriever(kb, source="recipes")("a tomato")
    with pytest.raises(FileNotFoundError, match=r"python -m mmtrain.families.t2i.rag --out"):
        tiny(f"model.t2i.rag.knowledge_base={tmp_path / 'nowhere'}")


# ---- export -----------------------------------------------------------------------
def test_export_carries_styles_and_retrieval_that_the_server_loads(conditioned, kb, tmp_path):
    m = conditioned
    facts = export(m, tmp_path / "t2i")
    assert facts["styles"] == m.styles.names
    assert facts["retrieval"]["top_k"] == 2 and facts["retrieval"]["knowledge_source"] is None
    index = json.loads((tmp_path / "t2i" / "model_index.json").read_text())
    assert not {"styles", "retrieval"} & set(index)  # the stock loader never sees them
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t2i")  # offline (HF_HUB_OFFLINE=1)
    pipe.set_progress_bar_config(disable=True)
    extras = load_extras(tmp_path / "t2i")
    assert extras.style_names == m.styles.names
    kwargs = dict(num_inference_steps=3, guidance_scale=3.0, height=8, width=8)
    prompts = ["a tomato", "a blue shape"]
    theirs = extras.generate(pipe, prompts, seed=3, style="3d-model", negative_prompt="a green shape",
                             **kwargs)
    ours = m.generate_with_context(prompts, seed=3, style="3d-model",
                                   negative_prompt="a green shape", **kwargs)
    assert same(theirs.images, ours.images)
    assert theirs.report() == ours.report()
    for change in ({"style": "illustration"}, {"retrieve": False}):
        other = extras.generate(pipe, prompts, seed=3, **{"style": "3d-model"} | change, **kwargs)
        assert not same(theirs.images, other.images), change


def test_a_plain_bundle_has_no_extras_and_samples_as_before(plain, tmp_path):
    facts = export(plain, tmp_path / "t2i")
    assert "styles" not in facts and "retrieval" not in facts
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t2i")
    pipe.set_progress_bar_config(disable=True)
    extras = load_extras(tmp_path / "t2i")
    assert extras.styles is None and extras.retriever is None
    stock = pipe(["a red shape"], num_inference_steps=3, guidance_scale=2.0, height=8, width=8,
                 generator=torch.Generator().manual_seed(1)).images
    assert same(stock, extras.generate(pipe, ["a red shape"], seed=1, num_inference_steps=3,
                                       guidance_scale=2.0, height=8, width=8).images)


# ---- learning ---------------------------------------------------------------------
def train(model: TextToImage, batches, steps: int, *, ae_steps: int = 200, lr: float = 2e-3,
          warmup: int = 40) -> None:
    """The default recipe's two phases in miniature: autoencoder, then diffusion."""
    ae = torch.optim.AdamW(model.vae.parameters(), lr=5e-3)
    for i in range(ae_steps):
        loss = model.losses(batches(), {"autoencoder"}, torch.Generator().manual_seed(i))
        ae.zero_grad()
        loss["autoencoder"].backward()
        ae.step()
    model.latent_scale.zero_()  # measured on the first diffusion batch
    params = [p for n, p in model.named_parameters() if not n.startswith("vae.")]
    opt = torch.optim.AdamW(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup))
    for i in range(steps):
        loss = model.losses(batches(), {"diffusion"}, torch.Generator().manual_seed(10_000 + i))
        opt.zero_grad()
        loss["diffusion"].backward()
        opt.step()
        schedule.step()


def made_up_objects(n: int) -> dict[str, tuple[str, str]]:
    """n real English words (from MiniLM's vocabulary) given colours and shapes: facts no
    model can know without reading them."""
    from mmtrain.families.shared import minilm

    vocab = sorted(w for w in minilm.tokenizer().get_vocab() if re.fullmatch(r"[a-z]{5,8}", w))
    words = sorted(random.Random(0).sample(vocab, n))
    return {w: (list(COLOURS)[i % 6], SHAPES[(i // 6) % 4]) for i, w in enumerate(words)}


@pytest.mark.slow
def test_retrieved_knowledge_decides_the_colour_of_objects_never_trained_on(tmp_path):
    """Objects are named by words whose colour only the knowledge base states. After 300
    steps on 72 of them, the 24 held-out ones are drawn in their retrieved colour; without
    retrieval at chance (1/6), and with a knowledge base that says otherwise, in its colour.
    Measured (3 seeds): 0.87-0.99 with retrieval, 0.13-0.21 without; batches of 24 gave
    0.29-1.0, so keep 32."""
    objects = made_up_objects(96)
    held, trained = list(objects)[:24], list(objects)[24:]
    kb = rag.build_facts(tmp_path / "kb", objects)
    # passages of 20 tokens: unknown words split into many BPE pieces, and a fact cut
    # before its colour word teaches nothing
    model = tiny(f"model.t2i.rag.knowledge_base={kb}", "model.t2i.rag.knowledge_source=objects",
                 "model.t2i.rag.top_k=1", "model.t2i.rag.max_tokens_per_passage=20",
                 "model.t2i.ema.enabled=false", "model.t2i.sampler.steps=10")
    assert all(model.retriever(f"a {w}")[0].doc_id == f"object-{w}" for w in objects)
    images = {w: pixels([Scene(c, s, "large", "center", "gray")])[0] for w, (c, s) in objects.items()}
    rnd = random.Random(0)

    def batches():
        names = [rnd.choice(trained) for _ in range(32)]
        return {"pixels": torch.stack([images[n] for n in names]),
                "captions": [f"a {n}" for n in names]}

    train(model, batches, steps=300)

    def colour_match(colour_of, **options) -> float:
        prompts = [f"a {w}" for w in held for _ in range(4)]
        out = model.generate_with_context(prompts, seed=1, guidance_scale=6.0, **options)
        return float(np.mean([dominant_colour(img) == colour_of[p[2:]][0]
                              for img, p in zip(out.images, prompts, strict=True)]))

    with_rag, without = colour_match(objects), colour_match(objects, retrieve=False)
    assert with_rag >= 0.5 and with_rag >= without + 0.3, (with_rag, without)
    palette = list(COLOURS)
    rewritten = {w: (palette[(palette.index(c) + 3) % 6], s) for w, (c, s) in objects.items()}
    model.retriever = rag.Retriever(rag.build_facts(tmp_path / "kb2", rewritten), "objects", 1)
    assert colour_match(rewritten) >= 0.5


@pytest.mark.slow
def test_style_presets_learn_what_they_stand_for():
    """Style labels from the scene background (the synthetic world's stand-in for a style),
    captions that never name the background: after 150 steps each preset draws its own
    background (chance 1/3; measured 0.89 at 100 steps, 1.0 at 200)."""
    model = tiny(*STYLES, "model.t2i.ema.enabled=false", "model.t2i.sampler.steps=10")
    rnd = random.Random(0)

    def batches():
        scenes = [Scene(rnd.choice(list(COLOURS)), rnd.choice(SHAPES), "large", "center",
                        rnd.choice(list(STYLE_OF))) for _ in range(16)]
        return {"pixels": pixels(scenes), "captions": [s.caption(3) for s in scenes],
                "styles": torch.tensor([model.styles.index(STYLE_OF[s.background]) for s in scenes])}

    train(model, batches, steps=150, ae_steps=100)

    def background(img) -> str:
        a = np.asarray(img, np.float32)
        corners = np.stack([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]).mean(0)
        return min(BACKGROUNDS, key=lambda b: ((np.array(BACKGROUNDS[b]) - corners) ** 2).sum())

    prompts = [f"a photo of a {c} {s}" for c in COLOURS for s in SHAPES[:2]]
    hits = [background(img) == bg for bg, style in STYLE_OF.items()
            for img in model.generate(prompts, seed=2, guidance_scale=4.0, style=style)]
    assert np.mean(hits) >= 0.75, np.mean(hits)


def test_a_run_trains_styles_and_retrieval_on_the_synthetic_world_and_exports_them(
        kb, tmp_path, monkeypatch):
    """The runner's path: style labels decoded from the scenes' json, retrieval per caption,
    the bundle's extras loadable next to the stock pipeline."""
    from mmtrain.launch import launch

    monkeypatch.chdir(tmp_path)
    phase = ("[{name: all, families: [t2i], steps: 4, "
             "loss_weights: {t2i: {autoencoder: 1.0, diffusion: 1.0}}}]")
    launch(compose("+recipe=t2i_pretrain", "name=cond", f"phases={phase}", *STYLES,
                   f"model.t2i.rag.knowledge_base={kb}", "model.t2i.rag.top_k=1",
                   "data.synthetic.train_samples=64", "data.synthetic.val_samples=16",
                   "data.synthetic.shard_size=32", "data.batch_size=4",
                   "callbacks.progress_bar=false", "model.t2i.sampler.steps=2",
                   "model.t2i.samples_per_prompt=1"))
    bundle = tmp_path / "runs" / "cond" / "export" / "t2i"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["artifact"]["styles"] == list(STYLE_OF.values())
    assert "retrieval/knowledge_base/kb.json" in manifest["files"]
    extras = load_extras(bundle)
    untrained = StyleTokens(list(STYLE_OF.values()), 4, 64).table
    assert not torch.allclose(extras.styles.table, untrained)  # trained by the run
    pipe = DiffusionPipeline.from_pretrained(bundle)
    pipe.set_progress_bar_config(disable=True)
    out = extras.generate(pipe, ["a tomato"], seed=0, style="illustration",
                                       num_inference_steps=2, height=16, width=16)
    assert out.report()[0]["retrieved"][0]["text"] == "A tomato is a red circle."
