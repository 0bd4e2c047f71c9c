"""The restore family: degradations, the Swin2SR wrapper, losses and what they train,
perceptual networks, metrics, data, evaluation, export (transformers folder + ONNX) and
local-weights loading."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmtrain.families.restore import degradations as D
from mmtrain.families.restore import metrics
from mmtrain.families.restore.config import DegradationConfig, RestoreConfig, SwinConfig
from mmtrain.families.restore.module import Restore
from mmtrain.families.shared import perceptual


def photo_batch(n: int = 4, side: int = 64) -> torch.Tensor:
    """uint8 crops of a real photo (scikit-image's chelsea, a training photo)."""
    from mmtrain.families.restore.photos import load_photo

    image = torch.from_numpy(load_photo("chelsea")).permute(2, 0, 1)
    return torch.stack([image[:, 40 + 30 * i:40 + 30 * i + side, 100:100 + side] for i in range(n)])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- degradations -------------------------------------------------------------------
def test_degradations_are_deterministic_given_the_generator():
    cfg = DegradationConfig(blur_prob=1.0, noise_prob=1.0, poisson_prob=0.5, jpeg_prob=1.0)
    clean = photo_batch().float() / 255
    for task in ("denoise", "super_resolution", "inpainting"):
        a = D.degrade(clean, task, 2, cfg, gen(3))
        b = D.degrade(clean, task, 2, cfg, gen(3))
        c = D.degrade(clean, task, 2, cfg, gen(4))
        assert torch.equal(a.inputs, b.inputs), task
        assert not torch.equal(a.inputs, c.inputs), task
    crops = [D.random_crops(photo_batch(), 32, gen(1)) for _ in range(2)]
    assert torch.equal(*crops) and crops[0].shape == (4, 3, 32, 32)


def test_each_degradation_does_what_it_says():
    clean = photo_batch().float() / 255
    # Gaussian noise: the measured std is the configured sigma (flat grey, no clipping)
    grey = torch.full((4, 3, 64, 64), 0.5)
    noisy = D.noise(grey, DegradationConfig(gaussian_sigma=[20.0, 20.0]), gen())
    assert (noisy - grey).std().item() * 255 == pytest.approx(20, rel=0.05)
    # Poisson: variance = mean / peak
    shot = D.noise(grey, DegradationConfig(poisson_prob=1.0, poisson_peak=[50.0, 50.0]), gen())
    assert (shot - grey).var().item() == pytest.approx(0.5 / 50, rel=0.1)
    # blur removes high frequencies; sigma 0 is the identity
    blurred = D.blur(clean, torch.full((4,), 2.0), 7)
    assert (blurred.diff(dim=-1).abs().mean() < 0.6 * clean.diff(dim=-1).abs().mean())
    assert torch.allclose(D.blur(clean, torch.zeros(4), 7), clean, atol=1e-6)
    # downsampling x2/x4, and its bicubic way back is close but lossy
    for s in (2, 4):
        low = D.downsample(clean, s)
        assert low.shape[-1] == 64 // s
        back = D.upsample(low, s)
        assert back.shape == clean.shape and 1e-4 < F.mse_loss(back, clean) < 0.02
    with pytest.raises(ValueError, match="not divisible by scale 4"):
        D.downsample(clean[..., :62, :62], 4)
    # JPEG: low quality loses more than high quality; quality 0 leaves the image alone
    q10, q95 = (D.jpeg(clean, torch.full((4,), q)) for q in (10.0, 95.0))
    assert F.mse_loss(q10, clean) > 4 * F.mse_loss(q95, clean) > 0
    assert torch.equal(D.jpeg(clean, torch.zeros(4)), clean)
    # masks: never empty, never everything
    masks = D.random_masks(16, 64, 48, DegradationConfig(), gen())
    cover = masks.mean((1, 2, 3))
    assert masks.shape == (16, 1, 64, 48) and (cover > 0).all() and (cover < 0.9).all()
    strokes = D.random_masks(4, 64, 64, DegradationConfig(mask_rectangles=[0, 0],
                                                          mask_strokes=[2, 2]), gen())
    assert (strokes.mean((1, 2, 3)) > 0).all()


def test_task_wiring_of_the_degraded_pair():
    clean = photo_batch().float() / 255
    sr = D.degrade(clean, "super_resolution", 4, DegradationConfig(noise_prob=0.0), gen())
    assert sr.inputs.shape == (4, 3, 16, 16) and sr.baseline.shape == clean.shape
    assert torch.allclose(sr.baseline, D.upsample(D.downsample(clean, 4), 4))
    hole = D.degrade(clean, "inpainting", 2, DegradationConfig(noise_prob=0.0), gen())
    assert hole.inputs.shape == (4, 4, 64, 64) and torch.equal(hole.inputs[:, 3:], hole.mask)
    kept = hole.mask == 0
    assert torch.equal(hole.inputs[:, :3][kept.expand(-1, 3, -1, -1)],
                       clean[kept.expand(-1, 3, -1, -1)])
    assert (hole.inputs[:, :3][(~kept).expand(-1, 3, -1, -1)] == D.HOLE_FILL).all()


# ---- network ------------------------------------------------------------------------
@pytest.mark.parametrize("task,scale", [("denoise", 1), ("super_resolution", 2),
                                        ("super_resolution", 4), ("inpainting", 1)])
def test_untrained_model_outputs_its_baseline_at_any_size(task, scale):
    torch.manual_seed(0)
    m = Restore(RestoreConfig(task=task, scale=max(scale, 2)))
    assert m.restorer.model.__class__.__name__ == "Swin2SRForImageSuperResolution"
    x = torch.rand(2, 4 if task == "inpainting" else 3, 21, 30)  # not window multiples
    out = m.restorer(x)
    assert out.shape == (2, 3, 21 * scale, 30 * scale)
    assert torch.allclose(out, m.restorer.base(x), atol=1e-6)
    # without the skip, Swin2SR's own output (transformers' default init) is no baseline
    plain = Restore(RestoreConfig(task=task, scale=max(scale, 2), residual=False))
    assert not torch.allclose(plain.restorer(x), plain.restorer.base(x), atol=1e-2)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = Restore(RestoreConfig(task="super_resolution"))
    b = Restore(RestoreConfig(task="super_resolution", gradient_checkpointing=True))
    b.load_state_dict(a.state_dict())
    torch.nn.init.normal_(a.restorer.model.upsample.conv.weight, std=0.02)  # non-zero head
    b.restorer.model.upsample.conv.weight.data.copy_(a.restorer.model.upsample.conv.weight)
    batch = {"image": photo_batch()}
    for m in (a, b):
        m.train()
        m.losses(batch, {"pixel"}, gen())["pixel"].backward()
    assert b.restorer.model.swin2sr.encoder.stages[0].gradient_checkpointing
    for (name, pa), pb in zip(a.restorer.named_parameters(), b.restorer.parameters(), strict=True):
        if pa.grad is not None:
            assert torch.allclose(pa.grad, pb.grad, atol=1e-6), name


# ---- losses -------------------------------------------------------------------------
def test_losses_train_only_what_they_should():
    torch.manual_seed(0)
    m = Restore(RestoreConfig(task="super_resolution"))
    batch = {"image": photo_batch()}
    losses = m.losses(batch, {"pixel", "perceptual", "adversarial"}, gen())
    assert set(losses) == {"pixel", "perceptual", "adversarial"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    head = m.restorer.model.upsample.conv.weight
    assert head.grad.abs().sum() > 0
    # the perceptual network is fixed and lives outside the module (never saved/trained)
    assert not any("perceptual" in k for k in m.state_dict())
    assert all(not p.requires_grad for p in m._perceptual.parameters())
    assert m.discriminators({"pixel"}) == {}
    assert m.discriminators({"pixel", "adversarial"}) == {"discriminator": m.discriminator}
    m.zero_grad()
    d_losses = m.discriminator_losses(batch, {"adversarial"}, gen(), step=0)
    assert set(d_losses) == {"discriminator"}
    d_losses["discriminator"].backward()
    assert m.discriminator.scales[0].net[0].weight.grad.abs().sum() > 0
    assert head.grad is None  # fakes were detached: no generator gradient from the D step
    # lazy R1 on the real images every r1_every-th step
    m.config.adversarial.r1_weight = 1.0
    assert "r1" in m.discriminator_losses(batch, {"adversarial"}, gen(), step=32)
    assert "r1" not in m.discriminator_losses(batch, {"adversarial"}, gen(), step=33)


def test_pixel_loss_spaces():
    m = Restore(RestoreConfig(charbonnier_eps=1e-6))
    a = torch.rand(2, 3, 8, 8)
    b = a.clone()
    b[:, 1] += 0.1  # green: moves luma by 128.553/255 * 0.1
    assert float(m.pixel_loss(b, a)) == pytest.approx(0.1 / 3, rel=1e-3)
    m.config.pixel_space = "y"
    assert float(m.pixel_loss(b, a)) == pytest.approx(0.1 * 128.553 / 255, rel=1e-3)


# ---- perceptual networks ------------------------------------------------------------
TORCHVISION_VGG19_FEATURE_KEYS = [f"features.{i}.{p}" for i in
                                  (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
                                  for p in ("weight", "bias")]


def test_vgg19_has_torchvisions_layout_and_loads_its_state_dict(tmp_path, caplog):
    net = perceptual.vgg19_features()
    assert sorted(f"features.{k}" for k in net.state_dict()) == sorted(TORCHVISION_VGG19_FEATURE_KEYS)
    assert len(net) == 37 and perceptual.vgg19_layer_names()["conv5_4"] == 34
    # a file shaped like torchvision's vgg19-dcbb9e9d.pth: features + classifier
    state = {f"features.{k}": torch.randn_like(v) for k, v in net.state_dict().items()}
    state |= {"classifier.0.weight": torch.zeros(8, 8), "classifier.6.bias": torch.zeros(8)}
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = perceptual.load_vgg19_features(tmp_path / "vgg19.pth")
    assert torch.equal(loaded[34].weight, state["features.34.weight"])
    with caplog.at_level(logging.INFO):
        loss = perceptual.PerceptualLoss(str(tmp_path / "vgg19.pth"), {"conv2_2": 1.0, "relu3_1": 0.5})
    assert len(loss.net) == 12 and "VGG-19 features" in caplog.text  # cut after relu3_1
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == 0 and float(loss(x, x.flip(-1))) > 0
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg19 state dict"):
        perceptual.load_vgg19_features(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="weights_path"):
        perceptual.load_vgg19_features(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        perceptual.PerceptualLoss(str(tmp_path / "vgg19.pth"), {"conv9_9": 1.0})


def test_fallback_features_are_fixed_and_said_in_the_log(caplog):
    with caplog.at_level(logging.WARNING):
        a = perceptual.PerceptualLoss(None, {})
    assert "no VGG-19 weights" in caplog.text
    b = perceptual.PerceptualLoss(None, {})
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    clean = photo_batch(2).float() / 255
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    blurred = D.blur(clean, torch.full((2,), 1.5), 7)
    assert float(a(clean, clean)) == 0 < float(a(blurred, clean)) and float(a(noisy, clean)) > 0


# ---- metrics, data, evaluation ------------------------------------------------------
def test_psnr_ssim_and_luma():
    gt = photo_batch(2).float() / 255
    off = (gt + 8 / 255).clamp(0, 1)
    s = metrics.scores(off, gt)
    mse = F.mse_loss(metrics.quantize(off), metrics.quantize(gt)).item()
    assert s["psnr_rgb"] == pytest.approx(10 * np.log10(1 / mse), rel=0.02)
    assert 0 < s["ssim_rgb"] <= 1
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert metrics.rgb_to_y(white).flatten()[0] * 255 == pytest.approx(235, abs=0.01)
    assert metrics.rgb_to_y(black).flatten()[0] * 255 == pytest.approx(16, abs=0.01)
    shaved = metrics.scores(off, gt, shave=2)
    assert shaved["psnr_y"] > 0


def test_decoder_reads_scene_and_photo_shards(tmp_path):
    from mmtrain.data.shards import BadSample, read_shard
    from mmtrain.data.synth.writer import world_shards, write_world
    from mmtrain.families.restore.photos import HELD_OUT, TRAIN, write_photo_shards

    m = Restore(RestoreConfig())
    decode = m.sample_decoder()
    write_world(tmp_path / "w", seed=0, kinds=["scenes"], train_samples=4, val_samples=2,
                shard_size=4, scene_size=32, progress=False)
    _, raw = next(read_shard(world_shards(tmp_path / "w", "scenes", "train")[0]))
    sample = decode(raw)
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 32, 32)
    with pytest.raises(BadSample) as err:
        decode({"txt": b"no image"})
    assert err.value.reason == "missing_image"
    manifest = write_photo_shards(tmp_path / "photos", crop=48, crops_per_image=2,
                                  val_crops_per_image=1)
    assert manifest["splits"]["train"]["samples"] == 2 * len(TRAIN)
    assert not set(manifest["splits"]["train"]["photos"]) & set(HELD_OUT)
    _, raw = next(read_shard(str(tmp_path / "photos" / "train-000000.tar")))
    assert decode(raw)["image"].shape == (3, 48, 48)
    assert json.loads(raw["json"])["photo"] in TRAIN
    batch = m.collate([sample, {"image": torch.zeros(3, 40, 36, dtype=torch.uint8)}])
    assert batch["image"].shape == (2, 3, 32, 32)


def test_evaluate_scores_against_the_baseline_and_draws_a_panel():
    m = Restore(RestoreConfig(task="super_resolution", eval_images="photos", eval_photo_crop=96,
                              panel_rows=3))
    scores, media = m.evaluate(seed=0)
    assert scores["gain_psnr_y"] == pytest.approx(0, abs=1e-6)  # untrained = bicubic
    assert 20 < scores["baseline_psnr_y"] < 40 and 0 < scores["ssim_y"] < 1
    assert isinstance(media["panel"], Image.Image) and media["panel"].width == 3 * 128
    again, _ = m.evaluate(seed=0)
    assert again == scores
    den = Restore(RestoreConfig(eval_count=3))
    s, _ = den.evaluate(seed=1)
    assert s["baseline_psnr_rgb"] < 32  # sigma 10-40 noise on rendered scenes


# ---- export -------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["super_resolution", "inpainting"])
def test_export_loads_offline_and_onnx_serves_the_same(task, tmp_path):
    import onnxruntime as ort
    from transformers import AutoImageProcessor, Swin2SRForImageSuperResolution

    from mmtrain.families.restore.export import export

    torch.manual_seed(0)
    m = Restore(RestoreConfig(task=task)).eval()
    for p in m.restorer.model.upsample.parameters():  # a head that does something
        torch.nn.init.normal_(p, std=0.05)
    facts = export(m, tmp_path / "bundle")
    assert facts["onnx"]["max_abs_diff_vs_pytorch"] < 1e-4
    loaded = Swin2SRForImageSuperResolution.from_pretrained(tmp_path / "bundle").eval()
    assert loaded.config.mmtrain_residual is True
    processor = AutoImageProcessor.from_pretrained(tmp_path / "bundle")
    assert processor.size_divisor == m.restorer.window
    channels = 4 if task == "inpainting" else 3
    x = torch.rand(1, channels, 24, 32)
    with torch.no_grad():
        ours = m.restorer(x)
        recon = loaded(pixel_values=x).reconstruction
        theirs = recon - loaded.swin2sr.mean + m.restorer.base(x)  # the documented skip
    assert torch.allclose(ours, theirs, atol=1e-5)
    onnx = ort.InferenceSession(str(tmp_path / "bundle" / "restorer.onnx"))
    x = torch.rand(2, channels, 19, 27)  # another size than traced
    got = onnx.run(None, {"pixels": x.numpy()})[0]
    assert np.abs(got - m.restorer(x).detach().numpy()).max() < 1e-4

    # pretrained_path: the folder as local weights; it decides sizes and the skip
    again = Restore(RestoreConfig(task=task, pretrained_path=str(tmp_path / "bundle"),
                                  residual=False, swin=SwinConfig(embed_dim=64)))
    assert again.restorer.residual and again.restorer.model.config.embed_dim == 32
    assert torch.allclose(again.restorer(x), m.restorer(x), atol=1e-6)
    with pytest.raises(ValueError, match="needs x4"):
        Restore(RestoreConfig(task="super_resolution", scale=4,
                              pretrained_path=str(tmp_path / "bundle")))


def test_config_defaults_match_the_tiny_yaml_and_base_composes():
    from omegaconf import OmegaConf

    from mmtrain.config.validate import validate
    from tests.conftest import REPO, compose

    tiny = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/restore/tiny.yaml"))
    assert tiny == dataclasses.asdict(RestoreConfig())
    run = validate(compose("+recipe=t2i_pretrain", "+model/restore=base"))
    cfg = run.model["restore"]
    assert (cfg.swin.embed_dim, cfg.swin.depths, cfg.scale) == (180, [6] * 6, 2)
    from mmtrain.families.restore.networks import swin2sr_config
    with torch.device("meta"):
        from transformers import Swin2SRForImageSuperResolution
        n = sum(p.numel() for p in Swin2SRForImageSuperResolution(swin2sr_config(cfg)).parameters())
    assert 11e6 < n < 13e6  # the published classical x2 model's size
