"""t2i metrics: the network-free shape classifier on the world's own renders, prompt
agreement, and FID / CLIP score through a tiny CLIP saved to a local folder (offline)."""

from __future__ import annotations

import io
import itertools
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from mmtrain.data.synth.scenes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    render_scene,
)
from mmtrain.families.t2i import metrics

SCENES = [Scene(*s) for s in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS)]


def test_shape_classifier_reads_every_scene_of_the_world():
    """All 720 scenes at the t2i resolution (32 px) and 64 px: measured 720/720 at both."""
    for size, scenes in ((32, SCENES), (64, SCENES[::3])):
        right = sum(metrics.classify_shape(render_scene(s, size)) == s.shape for s in scenes)
        assert right / len(scenes) >= 0.99, (size, right, len(scenes))


def _jpeg(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=75)
    return Image.open(buf).convert("RGB")


def test_shape_classifier_survives_jpeg_noise_blur_and_shifts():
    """Generated images are never clean renders. Measured at 32 px over all 720 scenes:
    JPEG q75 0.99, noise sd 16 1.00, 1.25x crops at random offsets (shapes moved and cut
    by the border) 0.97."""
    rng = np.random.default_rng(0)

    def noisy(img):
        arr = np.asarray(img, float) + rng.normal(0, 16, (32, 32, 3))
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))

    def cropped(scene):
        big = render_scene(scene, 40)
        x, y = rng.integers(0, 9, 2)
        return big.crop((x, y, x + 32, y + 32))

    scenes = SCENES[::5]
    for name, make in (("jpeg", lambda s: _jpeg(render_scene(s, 32))),
                       ("noise", lambda s: noisy(render_scene(s, 32))),
                       ("crop", cropped)):
        accuracy = np.mean([metrics.classify_shape(make(s)) == s.shape for s in scenes])
        assert accuracy >= 0.93, (name, accuracy)


def test_prompt_agreement_scores_colour_shape_and_both():
    scenes = SCENES[::37]
    images = [render_scene(s, 32) for s in scenes]
    right = [f"a {s.size} {s.colour} {s.shape} on a {s.background} background" for s in scenes]
    assert metrics.prompt_agreement(images, right) == {"colour_match": 1.0, "shape_match": 1.0,
                                                       "both": 1.0}
    other = {s: SHAPES[(i + 1) % 4] for i, s in enumerate(SHAPES)}
    wrong_shape = [f"a {s.colour} {other[s.shape]}" for s in scenes]
    assert metrics.prompt_agreement(images, wrong_shape) == {"colour_match": 1.0,
                                                             "shape_match": 0.0, "both": 0.0}
    # the default sample prompts name a colour only; a blank image shows neither
    blank = Image.new("RGB", (32, 32), BACKGROUNDS["gray"])
    assert metrics.prompt_agreement([blank, images[0]], ["a red shape", "a photo"]) == {
        "colour_match": 0.0}
    assert metrics.classify_shape(blank) is None


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random CLIP (model + tokenizer + image processor) saved like a hub folder."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from mmtrain.families.shared.tokenizers import clip_tokenizer

    tok = clip_tokenizer(["a", "photo", "of", "shape", *COLOURS, *SHAPES])
    n = len(tok)
    config = CLIPConfig(
        text_config=dict(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2),
        projection_dim=16)
    torch.manual_seed(3)  # an init whose mean cosine on the test's pairs is > 0 (CLIPScore floors at 0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tokenizer=tok)
    processor.save_pretrained(folder)
    return folder


def test_fid_runs_on_local_clip_features_and_ranks_sets(clip_folder):
    real = metrics.synthetic_reference(48, 32, seed=1)
    same_world = metrics.synthetic_reference(48, 32, seed=2)
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(48)]
    near = metrics.fid(real, same_world, str(clip_folder))
    far = metrics.fid(real, noise, str(clip_folder))
    assert near is not None and far is not None
    assert far > 3 * near, (near, far)  # measured 0.33 vs 2.0
    tensors = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in same_world])
    assert metrics.fid(real, tensors, str(clip_folder)) == pytest.approx(near, rel=1e-4)


def test_clip_score_runs_offline_and_matches_a_direct_computation(clip_folder):
    from transformers import CLIPModel, CLIPProcessor

    images = metrics.synthetic_reference(6, 32, seed=3)
    prompts = ["a red circle", "a blue square", "a photo of a shape", "a green diamond",
               "a yellow triangle", "a purple shape"]
    score = metrics.clip_score(images, prompts, str(clip_folder))
    model = CLIPModel.from_pretrained(clip_folder).eval()
    inputs = CLIPProcessor.from_pretrained(clip_folder)(text=prompts, images=images,
                                                        return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    expected = max(float(100 * cos.mean()), 0.0)
    assert expected > 0 and score == pytest.approx(expected, rel=1e-4)


def test_missing_networks_skip_with_a_logged_reason(tmp_path, caplog, clip_folder):
    images = metrics.synthetic_reference(4, 32)
    weights = tmp_path / "pt_inception-2015-12-05.pth"
    weights.write_bytes(b"\0")
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        assert metrics.fid(images, images, None) is None
        assert metrics.clip_score(images, ["a red shape"] * 4, str(tmp_path / "nowhere")) is None
        assert metrics.fid(images, images, str(weights)) is None
    text = caplog.text
    assert "no local CLIP folder configured (metrics.fid_feature_path)" in text
    assert "nowhere is not a transformers model folder" in text
    assert "torch-fidelity" in text and "torchvision" in text
    prompts = ["a red circle"] * 4
    assert set(metrics.evaluate_metrics(images, prompts)) == {"colour_match", "shape_match", "both"}
    full = metrics.evaluate_metrics(images, prompts, fid_feature_path=str(clip_folder),
                                    clip_path=str(clip_folder), fid_reference=16)
    assert {"fid", "clip_score"} <= set(full)
