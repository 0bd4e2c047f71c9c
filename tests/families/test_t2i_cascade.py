"""Cascaded refinement: a restore x2 model trained here on the synthetic world's renders
refines t2i samples 16 -> 32 -> 64 px, beats bicubic on held-out renders, travels in the
exported bundle, and bad stages fail with the fix in the message."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from mmtrain.config.validate import ConfigError, validate
from mmtrain.data.synth.scenes import render_scene, sample_scene
from mmtrain.families.restore import degradations as D
from mmtrain.families.restore import metrics as restore_metrics
from mmtrain.families.restore.config import DegradationConfig, RestoreConfig
from mmtrain.families.restore.export import export as export_restore
from mmtrain.families.restore.module import Restore
from mmtrain.families.t2i import cascade
from mmtrain.families.t2i.conditioning import load_extras
from mmtrain.families.t2i.config import CascadeStageConfig, SamplerConfig, T2IConfig
from mmtrain.families.t2i.export import export
from mmtrain.families.t2i.module import TextToImage
from tests.conftest import compose
from tests.families.test_restore_learning import train_pixel_loss

STEPS = 300  # measured: +0.4 dB over bicubic on held-out renders (docs/t2i.md)
PROMPTS = ["a red shape", "a blue circle"]


def renders(n: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([torch.from_numpy(np.array(render_scene(sample_scene(rng), size)))
                        .permute(2, 0, 1) for _ in range(n)])


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    """A tiny x2 Swin2SR (restore's default tiny size, residual over bicubic) trained on
    clean bicubic-downsampled 32 px scene renders, exported as a restore bundle."""
    torch.manual_seed(0)
    model = Restore(RestoreConfig(task="super_resolution", scale=2, crop_size=32,
                                  degradation=DegradationConfig(noise_prob=0.0)))
    images = renders(256, 32, seed=1)
    start = time.perf_counter()
    train_pixel_loss(model, images, STEPS)
    print(f"refiner: {STEPS} steps in {time.perf_counter() - start:.1f}s")
    folder = tmp_path_factory.mktemp("sr") / "restore"
    export_restore(model, folder)
    return folder


def t2i(*stages, seed: int = 0) -> TextToImage:
    torch.manual_seed(seed)
    model = TextToImage(T2IConfig(
        resolution=16, sampler=SamplerConfig(name="ddim", steps=3, guidance_scale=2.0),
        cascade=[CascadeStageConfig(refiner=str(s), scale=2) for s in stages]))
    model.latent_scale.fill_(1.0)
    return model


def arrays(images) -> list[np.ndarray]:
    return [np.asarray(i) for i in images]


def test_the_trained_refiner_beats_bicubic_on_held_out_renders(refiner):
    stage = cascade.load_refiner(refiner, 2)
    truth = renders(32, 32, seed=99).float() / 255  # scenes never trained on, at 2x
    low = D.downsample(truth, 2)
    ours, bicubic = stage.restore(low), D.upsample(low, 2)
    assert (ours - bicubic).abs().max() > 0.05, "the refiner should not be plain bicubic"
    psnr = restore_metrics.scores(ours, truth, 2)["psnr_rgb"]
    base = restore_metrics.scores(bicubic, truth, 2)["psnr_rgb"]
    print(f"held-out 16->32 px: refiner {psnr:.2f} dB, bicubic {base:.2f} dB")
    assert psnr > base + 0.25
    # the same margin through the cascade's PIL path (8-bit in, 8-bit out)
    pil = cascade.Cascade([cascade.Stage(stage, 2, str(refiner))])
    low8 = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            for x in low]
    out8 = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays(pil(low8))])
    psnr8 = restore_metrics.scores(out8.float() / 255, truth, 2)["psnr_rgb"]
    print(f"through the 8-bit cascade: {psnr8:.2f} dB")
    assert psnr8 > base + 0.2


def test_cascades_of_one_and_two_stages_refine_a_16_px_base(refiner):
    one, two = t2i(refiner), t2i(refiner, refiner)
    base = one.generate(PROMPTS, seed=3)
    assert {i.size for i in base} == {(16, 16)}
    refined1 = one.generate(PROMPTS, seed=3, refine=True)
    refined2 = two.generate(PROMPTS, seed=3, refine=True)
    assert {i.size for i in refined1} == {(32, 32)} and {i.size for i in refined2} == {(64, 64)}
    # stage by stage: generate(refine=True) is the cascade applied to the base images
    assert all(np.array_equal(a, b) for a, b in
               zip(arrays(refined1), arrays(one.cascade(base)), strict=True))
    assert all(np.array_equal(a, b) for a, b in
               zip(arrays(refined2), arrays(two.cascade(two.generate(PROMPTS, seed=3))),
                   strict=True))
    assert "cascade" not in "".join(one.state_dict())  # refiners are never checkpointed
    with pytest.raises(ValueError, match="cascade is empty"):
        t2i().generate(PROMPTS, seed=0, refine=True)


def test_the_bundle_carries_its_refiners_and_serves_identical_pixels(refiner, tmp_path):
    model = t2i(refiner, refiner)
    facts = export(model, tmp_path / "t2i")
    assert [s["scale"] for s in facts["cascade"]] == [2, 2]
    listed = json.loads((tmp_path / "t2i" / "refiners" / "cascade.json").read_text())
    assert [s["folder"] for s in listed["stages"]] == ["stage0", "stage1"]
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t2i")  # the stock loader ignores refiners/
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    loaded = cascade.load(tmp_path / "t2i")
    served = loaded(load_extras(tmp_path / "t2i").generate(
        pipe, PROMPTS, seed=4, num_inference_steps=3, guidance_scale=2.0, height=16,
        width=16).images)
    ours = model.generate(PROMPTS, seed=4, refine=True)
    assert all(np.array_equal(a, b) for a, b in zip(arrays(ours), arrays(served), strict=True))
    assert cascade.load(tmp_path / "none") is None


def test_bad_stages_fail_with_the_fix_in_the_message(refiner, tmp_path):
    with pytest.raises(ValueError, match=r"t2i.cascade\[0\]: refiner folder .*missing does "
                                         r"not exist; point `refiner` at an exported restore"):
        t2i(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"cascade\[1\]: scale 4 but the refiner .* upscales "
                                         r"x2; set scale: 2"):
        torch.manual_seed(0)
        TextToImage(T2IConfig(resolution=16, cascade=[
            CascadeStageConfig(refiner=str(refiner), scale=2),
            CascadeStageConfig(refiner=str(refiner), scale=4)]))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    with pytest.raises(ValueError, match="not a Swin2SR super-resolution model"):
        t2i(tmp_path / "unet")
    # the config layer: a stage without its refiner, a zero scale, a typo
    cfg = compose("+recipe=t2i_pretrain",
                  f"model.t2i.cascade=[{{refiner: '{refiner}', scale: 2}}]")
    assert validate(cfg).model["t2i"].cascade[0].refiner == str(refiner)
    with pytest.raises(ConfigError) as err:
        validate(compose("+recipe=t2i_pretrain",
                         "model.t2i.cascade=[{scale: 0}, {refiner: x, scael: 2}]"))
    message = str(err.value)
    assert "model.t2i.cascade[0].scale: 0 is out of range; must be >= 1" in message
    assert "unknown 'scael' (did you mean 'scale'?)" in message
    run = validate(compose("+recipe=t2i_pretrain", "model.t2i.cascade=[{scale: 2}]"))
    with pytest.raises(ValueError, match=r"t2i.cascade\[0\]: no refiner set; give each stage "
                                         "`refiner: FOLDER`"):
        TextToImage(run.model["t2i"])
