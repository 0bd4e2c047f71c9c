"""The vqa family (BLIP-2 design): tokenizer, decoder on real shards, the four losses and
what they train, retrieved context, learning, export and local-weights loading."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mmtrain.data.shards import BadSample, read_shard
from mmtrain.data.synth.scenes import Scene, render_scene, sample_scene
from mmtrain.families.vqa import metrics
from mmtrain.families.vqa.config import VQAConfig
from mmtrain.families.vqa.export import export
from mmtrain.families.vqa.module import VisualQA


@pytest.fixture(scope="module")
def model() -> VisualQA:
    torch.manual_seed(0)
    return VisualQA(VQAConfig(eval_scenes=6))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmtrain.data.synth.writer import world_shards, write_world

    root = tmp_path_factory.mktemp("vqa-world")
    write_world(root, seed=0, kinds=["scenes"], train_samples=16, val_samples=4,
                shard_size=16, scene_size=32, progress=False)
    return world_shards(root, "scenes", "train")


def scene_batch(model: VisualQA, scenes: list[Scene], template: int = 0) -> dict:
    ip = model.processor.image_processor
    return model.collate([{
        "pixels": ip(render_scene(s, 32), return_tensors="pt").pixel_values[0],
        "caption": s.caption(template),
        "qas": [(qa["question"], qa["answer"]) for qa in s.questions()],
    } for s in scenes])


def test_tokenizer_knows_the_world_and_round_trips(model, tmp_path):
    from transformers import AutoTokenizer

    tok = model.tokenizer
    text = "Question: what colour is the shape? Answer: purple"
    assert tok.convert_ids_to_tokens(tok(text).input_ids) == [
        "</s>", "Question", ":", "Ġwhat", "Ġcolour", "Ġis", "Ġthe", "Ġshape", "?", "ĠAnswer",
        ":", "Ġpurple"]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("zebra crossing").input_ids == tok("zebra crossing").input_ids
    assert tok.unk_token_id not in tok("zebra crossing ü").input_ids  # bytes, never unknown


def test_decoder_reads_real_scene_shards(model, world):
    decode = model.sample_decoder()
    _, raw = next(read_shard(world[0]))
    sample = decode(raw)
    assert sample["pixels"].shape == (3, 32, 32)
    assert sample["caption"] and len(sample["qas"]) == 5
    assert sample["qas"][0][0] == "what colour is the shape?"
    with pytest.raises(BadSample) as err:
        decode({k: v for k, v in raw.items() if k != "json"})
    assert err.value.reason == "missing_questions"


def test_lm_inputs_label_only_the_answer(model):
    inputs = model.lm_inputs(["Question: what shape is it? Answer:", "a photo of"],
                             ["circle", "a red circle"])
    q = model.model.config.num_query_tokens
    assert (inputs["input_ids"][:, :q] == model.model.config.image_token_index).all()
    labelled = [model.tokenizer.decode([t for t in row if t >= 0]) for row in inputs["labels"]]
    assert labelled == [" circle</s>", " a red circle</s>"]


def test_losses_train_only_what_they_should(model):
    rng = np.random.default_rng(0)
    batch = scene_batch(model, [sample_scene(rng) for _ in range(6)])
    gen = torch.Generator().manual_seed(0)
    losses = model.losses(batch, {"itc", "itm", "caption", "vqa"}, gen)
    assert set(losses) == {"itc", "itm", "caption", "vqa"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    (losses["itc"] + losses["itm"]).backward()  # stage 1: no language model involved
    assert model.model.qformer.layernorm.weight.grad.abs().sum() > 0
    assert model.model.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.stage1.itm_head.weight.grad.abs().sum() > 0
    assert model.model.language_model.get_input_embeddings().weight.grad is None
    model.zero_grad()
    losses["vqa"].backward()  # stage 2 reaches the same Q-Former through the projection
    assert model.model.language_projection.weight.grad.abs().sum() > 0
    assert model.model.query_tokens.grad.abs().sum() > 0
    assert model.model.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.stage1.itm_head.weight.grad is None
    model.zero_grad()


def test_retrieved_context_goes_into_the_prompt_bounded(model):
    plain = model.vqa_prompt("what shape is it?")
    try:
        model.context_fn = lambda q: ["the shape in this world is drawn flat", "red is warm"]
        with_context = model.vqa_prompt("what shape is it?")
        assert with_context.startswith("Context: the shape in this world is drawn flat red is")
        assert with_context.endswith(plain)
        model.context_fn = lambda q: ["left " * 500]
        long = model.vqa_prompt("what shape is it?")
        n = len(model.lm_inputs([long], ["circle"])["input_ids"][0])
        assert n <= model.model.config.text_config.max_position_embeddings
        image = render_scene(Scene("red", "circle", "small", "left", "gray"), 32)
        assert len(model.answer([image], ["what shape is it?"])) == 1  # still generates
    finally:
        model.context_fn = None


def test_metrics_vqa_normalisation_and_caption_scores():
    assert metrics.normalize_answer("The Red!") == "red"
    assert metrics.normalize_answer("two circles.") == "2 circles"
    assert metrics.vqa_accuracy("a Red", ["red"]) == 1.0
    assert metrics.vqa_accuracy("red", ["red", "red", "blue", "blue"]) == pytest.approx(2 / 3)
    red, blue = "a small red circle on a gray background", "a large blue square on a white one"
    refs = [[red, "small red circle"], [blue, "large blue square"]]
    good = metrics.caption_scores([red, blue], refs)
    bad = metrics.caption_scores([blue, red], refs)
    assert good["cider_d"] > bad["cider_d"] and good["bleu4"] > 0.9 > bad["bleu4"]


def test_export_loads_offline_with_identical_generations(model, tmp_path):
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    facts = export(model, tmp_path / "bundle")
    assert facts["model_class"] == "Blip2ForConditionalGeneration"
    loaded = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "bundle").eval()
    processor = Blip2Processor.from_pretrained(tmp_path / "bundle")
    images = [render_scene(Scene(c, "square", "large", "center", "white"), 32)
              for c in ("red", "blue")]
    prompts = ["Question: what colour is the shape? Answer:", "a photo of"]
    inputs = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    ids = loaded.generate(**inputs, max_new_tokens=model.config.max_new_tokens, do_sample=False)
    theirs = [t.strip() for t in processor.batch_decode(
        ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert theirs == model.generate(images, prompts)

    # pretrained_path: the same folder as local weights, sizes from the folder
    again = VisualQA(VQAConfig(pretrained_path=str(tmp_path / "bundle"), eval_scenes=6))
    ours, reloaded = model.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(ours[k], reloaded[k]) for k in ours)
    assert again.generate(images, prompts) == theirs


def test_evaluate_scores_and_draws_a_panel(model):
    scores, media = model.evaluate(seed=0)
    assert set(scores) == {"vqa_accuracy", "vqa_accuracy_colour", "cider_d", "bleu4"}
    assert isinstance(media["answers"], Image.Image) and media["answers"].height == 64 * 6  # a row per scene


def test_brief_training_answers_colours_and_captions_better():
    """A brief training on rendered scenes (colour questions + captions) answers colour
    questions far above chance (1/6) and captions with a higher CIDEr-D than the
    untrained model. Measured (300 steps, about 60 s): colour accuracy 0.0 -> 1.0,
    CIDEr-D 0.0 -> 2.8, BLEU-4 0.0 -> 0.76."""
    torch.manual_seed(0)
    vqa = VisualQA(VQAConfig(eval_scenes=24))
    before, _ = vqa.evaluate(seed=123)
    rng = np.random.default_rng(1)
    data = []
    for i in range(40):
        batch = scene_batch(vqa, [sample_scene(rng) for _ in range(16)], template=i % 6)
        batch["qas"] = [qas[:1] for qas in batch["qas"]]  # the colour question
        data.append(batch)
    opt = torch.optim.AdamW(vqa.parameters(), lr=1e-3)
    start = time.perf_counter()
    for step in range(STEPS):
        losses = vqa.losses(data[step % len(data)], {"vqa", "caption"},
                            torch.Generator().manual_seed(step))
        opt.zero_grad()
        (losses["vqa"] + losses["caption"]).backward()
        opt.step()
    seconds = time.perf_counter() - start
    after, _ = vqa.evaluate(seed=123)
    print(f"vqa training {STEPS} steps {seconds:.1f}s: before {before} after {after}")
    assert after["vqa_accuracy_colour"] >= 0.6  # chance is 1/6
    assert after["cider_d"] > before["cider_d"] + 1.0


STEPS = 240


def test_config_defaults_match_the_tiny_yaml_and_the_real_size_composes():
    from omegaconf import OmegaConf

    from mmtrain.families.vqa.config import LanguageConfig, QFormerConfig, VisionConfig
    from tests.conftest import REPO

    tiny = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/vqa/tiny.yaml"))
    assert tiny == dataclasses.asdict(VQAConfig())
    real = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/vqa/blip2_opt27b.yaml"))
    cfg = VQAConfig(**{k: v for k, v in real.items() if k not in ("vision", "qformer", "language")},
                    vision=VisionConfig(**real["vision"]), qformer=QFormerConfig(**real["qformer"]),
                    language=LanguageConfig(**real["language"]))
    assert (cfg.vision.hidden_size, cfg.qformer.num_query_tokens, cfg.language.hidden_size) == \
        (1408, 32, 2560)
