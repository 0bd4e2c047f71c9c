"""latents: training from latent shards (encode-latents) against training from JPEG shards.

Two measurements, each a ratio taken in one run:

1. Loader throughput (samples/s). The same samples as 256-px JPEG shards (jpg + txt +
   json, photo-like: synthetic scenes with film grain, quality 90) and as latent shards
   written from them by the real `encode_latents` through a bundle with SD-2.1 output
   geometry (factor-8 AutoencoderKL with 4 latent channels -> 4x32x32 latents; a
   1024-wide CLIP text encoder with a 77-token context -> 77x1024 text states), in two
   variants: `latent` (posterior mean + caption, 8 KiB of float16) and `latent+text`
   (also text.npy, 154 KiB). The bundle's networks are narrow (cheap to encode with on a
   CPU); the shards' shapes, dtypes and bytes are those of SD 2.1 at 256 px. Each source
   goes through the real mmtrain stream, `PhaseData(...).stream(rank=0, world_size=1)`
   with the t2i codec of a model loaded from the bundle (so check_source runs), in a
   `DataLoader(batch_size=None, num_workers=W)` as `PhaseData.train_dataloader` builds it,
   at equal batch size, shuffle buffer and workers. A pass takes one epoch's worth of
   batches; throughput counts the batches after the first `warmup`. Source order
   rotates between repeats; ratio = latent / jpeg samples/s, median of per-repeat ratios.

2. The diffusion training step (forward + backward of `TextToImage.losses`, VAE and text
   encoder frozen, the UNet training, no optimizer step) on one fixed batch: from pixels
   (VAE encode + text encoder every step), from stored latents (text encoder still runs),
   and from stored latents + text states. Steps of the three variants are interleaved
   (rotating order) so load drift hits all alike; warm-up steps dropped; ratio = pixels
   step / latents step, median of per-repeat ratios. Sizes: `tiny` (conf/model/t2i/tiny.yaml,
   16 px, factor-1 VAE) and `sd21` (conf/model/t2i/sd21.yaml shapes, random init, at
   `sd21_resolution` px). For SD 2.1 at 256 and 512 px, FLOPs are also counted on the meta
   device (torch's FlopCounterMode): VAE encode and text encoder forward against the
   UNet's forward + backward — what a GPU step would save where it is compute-bound.

Check: on the tiny model, the loss from latents + std + text equals the loss from pixels
for the same batch and generator (to float16 precision).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from pathlib import Path

DESCRIPTION = "t2i from latent shards vs JPEG shards: loader samples/s, diffusion step time"
SEED = 0
JPEG_QUALITY = 90


def settings(quick: bool) -> dict:
    if quick:  # a smoke run: well under 90 s on a loaded 2-core machine
        return {"samples": 128, "shards": 4, "image_size": 64, "batch_size": 16,
                "shuffle_buffer": 32, "workers": "0", "warmup": 1, "step_sizes": "tiny",
                "tiny_batch": 8, "steps": 4, "step_warmup": 1, "flops": False}
    return {"samples": 1024, "shards": 8, "image_size": 256, "batch_size": 32,
            "shuffle_buffer": 256, "workers": "0,2", "warmup": 2, "step_sizes": "tiny,sd21",
            "tiny_batch": 32, "steps": 12, "step_warmup": 2, "sd21_resolution": 128,
            "sd21_batch": 2, "sd21_steps": 3, "flops": True}


def run(repeats: int = 3, quick: bool = False, *, samples: int | None = None,
        shards: int | None = None, image_size: int | None = None,
        batch_size: int | None = None, shuffle_buffer: int | None = None,
        workers: str | int | None = None, warmup: int | None = None,
        step_sizes: str | None = None, tiny_batch: int | None = None,
        steps: int | None = None, step_warmup: int | None = None,
        sd21_resolution: int | None = None, sd21_batch: int | None = None,
        sd21_steps: int | None = None, flops: int | None = None,
        workdir: str | None = None) -> dict:
    """--param samples, shards, image_size, batch_size, shuffle_buffer, workers (e.g. 0,2),
    warmup (batches), step_sizes (tiny,sd21), tiny_batch, steps, step_warmup,
    sd21_resolution, sd21_batch, sd21_steps, flops (0/1), workdir."""
    import torch

    params = settings(quick)
    given = dict(samples=samples, shards=shards, image_size=image_size, batch_size=batch_size,
                 shuffle_buffer=shuffle_buffer, workers=workers, warmup=warmup,
                 step_sizes=step_sizes, tiny_batch=tiny_batch, steps=steps,
                 step_warmup=step_warmup, sd21_resolution=sd21_resolution,
                 sd21_batch=sd21_batch, sd21_steps=sd21_steps, flops=flops)
    params.update({k: v for k, v in given.items() if v is not None})
    params.update(quick=quick, repeats=repeats, seed=SEED, jpeg_quality=JPEG_QUALITY,
                  torch_threads=torch.get_num_threads())
    quiet()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-latents-", dir=workdir) as tmp:
        results["loader"] = loader_benchmark(Path(tmp), params, repeats)
    results["step"] = {size: step_benchmark(size, params, repeats)
                       for size in str(params["step_sizes"]).split(",") if size}
    if params.get("flops"):
        results["sd21_flops"] = {str(r): sd21_flops(r) for r in (256, 512)}
    results["loss_equal"] = same_loss_check()
    return {"params": params, "results": results,
            "checks": {"latent_loss_equals_pixel_loss": results["loss_equal"]["ok"]},
            "table": table(results)}


def quiet() -> None:
    import lightning  # noqa: F401  (importing it resets its loggers)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
    logging.getLogger("mmtrain").setLevel(logging.ERROR)


def tiny_run(*overrides: str):
    from hydra import compose, initialize_config_dir

    from benchmarks.harness import ROOT
    from mmtrain.config.validate import validate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return validate(compose("config", overrides=["+recipe=t2i_pretrain", *overrides]))


# ---- 1. loader ------------------------------------------------------------------------
def write_jpeg_shards(out: Path, samples: int, shards: int, size: int) -> dict:
    import numpy as np
    import webdataset as wds
    from PIL import Image

    from mmtrain.data.synth.scenes import render_scene, sample_scene

    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True)
    per_shard = -(-samples // shards)
    jpg_bytes, tar = 0, None
    for i in range(samples):
        if i % per_shard == 0:
            if tar is not None:
                tar.close()
            tar = wds.TarWriter(str(out / f"{i // per_shard:05d}.tar"))
        scene = sample_scene(rng)
        pixels = np.asarray(render_scene(scene, size, 1), np.int16)
        pixels = pixels + rng.normal(0, 7, pixels.shape).round().astype(np.int16)  # grain
        buffer = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                   quality=JPEG_QUALITY)
        key = f"{i // per_shard:05d}{i % per_shard:04d}"
        tar.write({"__key__": key, "jpg": buffer.getvalue(),
                   "txt": f"{scene.caption(i)} (photo {key})".encode(),
                   "json": json.dumps({"key": key, "width": size, "height": size}).encode()})
        jpg_bytes += len(buffer.getvalue())
    tar.close()
    tar_bytes = sum(p.stat().st_size for p in out.glob("*.tar"))
    return {"bytes_per_sample": round(tar_bytes / samples),
            "jpg_bytes_per_sample": round(jpg_bytes / samples)}


def sd21_geometry_bundle(out: Path, resolution: int):
    """A t2i bundle whose outputs have SD 2.1's shapes (4 latent channels at 1/8 of the
    image side, 77 x 1024 text states) from narrow, fast networks."""
    import torch

    from mmtrain.families.t2i.config import (
        AutoencoderConfig,
        T2IConfig,
        TextEncoderConfig,
        UNetConfig,
    )
    from mmtrain.families.t2i.export import export
    from mmtrain.families.t2i.module import TextToImage

    torch.manual_seed(SEED)
    cfg = T2IConfig(
        resolution=resolution,
        autoencoder=AutoencoderConfig(block_out_channels=[8, 8, 8, 8], layers_per_block=1,
                                      norm_num_groups=4, mid_block_attention=False,
                                      scaling_factor=0.18215),
        text_encoder=TextEncoderConfig(hidden_size=1024, num_layers=1, num_heads=16,
                                       intermediate_size=1024, max_length=77),
        unet=UNetConfig(block_out_channels=[32, 32], norm_num_groups=8,
                        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"]))
    export(TextToImage(cfg), out)
    return cfg


def loader_benchmark(tmp: Path, p: dict, repeats: int) -> dict:
    import dataclasses

    from benchmarks.harness import median
    from mmtrain.data.latents.encode import EncodeOptions, encode_latents

    t0 = time.perf_counter()
    jpeg = write_jpeg_shards(tmp / "jpeg", p["samples"], p["shards"], p["image_size"])
    write_s = time.perf_counter() - t0
    cfg = sd21_geometry_bundle(tmp / "bundle", p["image_size"])
    sources = {"jpeg": {"dir": tmp / "jpeg", **jpeg}}
    per_shard = -(-p["samples"] // p["shards"])
    encode_s = {}
    for name, text in (("latent", False), ("latent+text", True)):
        t0 = time.perf_counter()
        manifest = encode_latents(EncodeOptions(
            bundle=str(tmp / "bundle"), shards=str(tmp / "jpeg"), out=str(tmp / name),
            batch_size=32, shard_size=per_shard, text=text, progress=False, device="cpu"))
        encode_s[name] = time.perf_counter() - t0
        sources[name] = {"dir": tmp / name, "bytes_per_sample": manifest["bytes_per_sample"],
                         "latent_shape": manifest["latent"]["shape"],
                         "text_shape": (manifest["text"] or {}).get("shape"),
                         "encode_samples_per_s": round(manifest["samples"] / encode_s[name], 1)}
    model = loaded_model(tmp / "bundle", cfg)
    workers = [int(w) for w in str(p["workers"]).split(",") if w.strip()]
    names = list(sources)
    per_repeat = []
    for r in range(repeats):
        row = {}
        for w in workers:
            order = names[r % len(names):] + names[:r % len(names)]
            row[w] = {name: one_pass(sources[name]["dir"], model, p, w) for name in order}
        per_repeat.append(row)
    out = {"write_jpeg_s": round(write_s, 2), "encode_s": {k: round(v, 2) for k, v in
                                                          encode_s.items()},
           "sources": {k: {kk: vv for kk, vv in v.items() if kk != "dir"}
                       for k, v in sources.items()},
           "bundle": {"autoencoder": dataclasses.asdict(cfg.autoencoder),
                      "text_encoder": dataclasses.asdict(cfg.text_encoder)},
           "workers": {}}
    for w in workers:
        entry = {}
        for name in names:
            entry[f"{name}_samples_per_s"] = round(median(
                [rep[w][name]["samples_per_s"] for rep in per_repeat]), 1)
            entry[f"{name}_per_repeat"] = [round(rep[w][name]["samples_per_s"], 1)
                                           for rep in per_repeat]
        for name in names[1:]:
            entry[f"{name}_vs_jpeg"] = round(median(
                [rep[w][name]["samples_per_s"] / rep[w]["jpeg"]["samples_per_s"]
                 for rep in per_repeat]), 2)
        out["workers"][str(w)] = entry
    return out


def loaded_model(bundle: Path, cfg):
    """The bundle's model in a diffusion phase with frozen towers: its codec and
    check_source are what a run on these sources would use."""
    import dataclasses

    from mmtrain.families.t2i.module import TextToImage

    model = TextToImage(dataclasses.replace(cfg, pretrained_path=str(bundle)))
    model.requires_grad_(False)
    model.unet.requires_grad_(True)
    model.on_phase_start({"diffusion"})
    return model


def one_pass(shard_dir: Path, model, p: dict, workers: int) -> dict:
    from torch.utils.data import DataLoader

    from mmtrain.config.schema import DataConfig, PhaseConfig, SourceConfig
    from mmtrain.curriculum.runner import codecs
    from mmtrain.data.module import PhaseData

    data = DataConfig(root=str(shard_dir), sources={"s": SourceConfig(train=str(shard_dir))},
                      family_sources={"t2i": ["s"]}, batch_size=p["batch_size"],
                      num_workers=workers, shuffle_buffer=p["shuffle_buffer"])
    phase = PhaseConfig(name="bench", families=["t2i"], loss_weights={"t2i": {"diffusion": 1.0}})
    stream = PhaseData(data, phase, codecs({"t2i": model}), seed=SEED,
                       limit_val_batches=0).stream(rank=0, world_size=1)
    batches = p["samples"] // p["batch_size"]  # one epoch's worth
    start = time.perf_counter()
    loader = iter(DataLoader(stream, batch_size=None, num_workers=workers,
                             persistent_workers=False))
    count, steady = 0, None
    for i in range(batches):
        batch = next(loader)
        batch.pop("_position")
        if i == p["warmup"] - 1:
            steady = time.perf_counter()
        elif i >= p["warmup"]:
            count += len(batch["captions"])
    end = time.perf_counter()
    del loader  # stops the workers
    return {"samples_per_s": count / (end - steady), "pass_s": end - start}


# ---- 2. diffusion step ------------------------------------------------------------------
def step_model(size: str, p: dict):
    import torch

    from mmtrain.families.t2i.module import TextToImage

    if size == "tiny":
        cfg, batch = tiny_run().model["t2i"], p["tiny_batch"]
    elif size == "sd21":
        res = p.get("sd21_resolution", 128)
        cfg = tiny_run("model/t2i=sd21", f"model.t2i.resolution={res}").model["t2i"]
        batch = p.get("sd21_batch", 2)
    else:
        raise ValueError(f"unknown step size {size!r}; valid: tiny, sd21")
    torch.manual_seed(SEED)
    model = TextToImage(cfg)
    model.latent_scale.fill_(cfg.autoencoder.scaling_factor or 1.0)
    model.requires_grad_(False)
    model.unet.requires_grad_(True)
    model.on_phase_start({"diffusion"})
    return model, batch


def step_batches(model, n: int, std: bool = False) -> dict[str, dict]:
    import numpy as np
    import torch

    from mmtrain.data.synth.scenes import render_scene, sample_scene

    rng = np.random.default_rng(SEED)
    scenes = [sample_scene(rng) for _ in range(n)]
    res = model.config.resolution
    pixels = torch.stack([torch.from_numpy(np.asarray(render_scene(s, res), np.float32)
                                           / 127.5 - 1).permute(2, 0, 1) for s in scenes])
    captions = [s.caption(i) for i, s in enumerate(scenes)]
    with torch.no_grad():  # what encode-latents stores (float16)
        posterior = model.vae.encode(pixels).latent_dist
        text = model.encode_text(captions).half()
    latents = {"latents": posterior.mean.half(), "captions": captions}
    if std:
        latents["latent_std"] = posterior.std.half()
    return {"pixels": {"pixels": pixels, "captions": captions}, "latents": latents,
            "latents+text": {**latents, "text": text}}


def step_benchmark(size: str, p: dict, repeats: int) -> dict:
    import torch

    from benchmarks.harness import median

    model, n = step_model(size, p)
    batches = step_batches(model, n)
    names = list(batches)
    steps = p.get("sd21_steps", 3) if size == "sd21" else p["steps"]
    warmup = min(p["step_warmup"], 1) if size == "sd21" else p["step_warmup"]
    per_repeat = []
    for r in range(repeats):
        times = {name: [] for name in names}
        for step in range(warmup + steps):
            k = (r + step) % len(names)
            for name in names[k:] + names[:k]:
                start = time.perf_counter()
                loss = model.losses(batches[name], {"diffusion"},
                                    torch.Generator().manual_seed(step))["diffusion"]
                loss.backward()
                model.zero_grad(set_to_none=True)
                if step >= warmup:
                    times[name].append(time.perf_counter() - start)
        per_repeat.append({name: sum(t) / len(t) for name, t in times.items()})
    out = {"batch_size": n, "resolution": model.config.resolution,
           "latent_shape": list(batches["latents"]["latents"].shape[1:]),
           "parameters_m": {k: round(sum(x.numel() for x in getattr(model, k).parameters())
                                     / 1e6, 2) for k in ("unet", "vae", "text_encoder")},
           "steps": steps, "warmup": warmup}
    for name in names:
        out[f"{name}_ms"] = round(median([r[name] for r in per_repeat]) * 1e3, 1)
        out[f"{name}_ms_per_repeat"] = [round(r[name] * 1e3, 1) for r in per_repeat]
    for name in names[1:]:
        out[f"pixels_vs_{name}"] = round(median([r["pixels"] / r[name] for r in per_repeat]), 3)
    del model
    return out


def sd21_flops(resolution: int) -> dict:
    """FLOPs of one sample's step parts at SD 2.1 shapes, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmtrain.families.t2i.module import TextToImage

    cfg = tiny_run("model/t2i=sd21").model["t2i"]
    with torch.device("meta"):
        model = TextToImage(cfg)

    def count(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e9

    side = resolution // 8
    context = torch.zeros(1, 77, 1024, device="meta")

    def unet() -> None:
        out = model.unet(torch.zeros(1, 4, side, side, device="meta"),
                         torch.zeros(1, dtype=torch.long, device="meta"),
                         encoder_hidden_states=context).sample
        out.sum().backward()

    model.unet.requires_grad_(True)
    vae = count(lambda: model.vae.encode(torch.zeros(1, 3, resolution, resolution,
                                                     device="meta")).latent_dist.mean)
    text = count(lambda: model.text_encoder(torch.zeros(1, 77, dtype=torch.long,
                                                        device="meta"))[0])
    step = count(unet)
    return {"vae_encode_gflop": round(vae, 1), "text_encoder_gflop": round(text, 1),
            "unet_fwd_bwd_gflop": round(step, 1),
            "pixels_vs_latents": round((vae + text + step) / (text + step), 3),
            "pixels_vs_latents+text": round((vae + text + step) / step, 3)}


def same_loss_check() -> dict:
    import torch

    model, _ = step_model("tiny", {"tiny_batch": 8})
    batches = step_batches(model, 8, std=True)
    model.config.caption_dropout = 0.5
    losses = {name: model.losses(batches[name], {"diffusion"},
                                 torch.Generator().manual_seed(3))["diffusion"].item()
              for name in ("pixels", "latents+text")}
    rel = abs(losses["pixels"] - losses["latents+text"]) / abs(losses["pixels"])
    return {"losses": losses, "relative_difference": rel, "ok": rel < 1e-3}


# ---- report ---------------------------------------------------------------------------
def table(results: dict) -> list[list]:
    rows = [["measure", "setting", "jpeg / pixels", "latent", "latent+text",
             "ratio latent", "ratio latent+text"]]
    loader = results["loader"]
    s = loader["sources"]
    rows.append(["bytes/sample", "tar", s["jpeg"]["bytes_per_sample"],
                 s["latent"]["bytes_per_sample"], s["latent+text"]["bytes_per_sample"], "", ""])
    for w, e in loader["workers"].items():
        rows.append(["loader samples/s", f"workers {w}", e["jpeg_samples_per_s"],
                     e["latent_samples_per_s"], e["latent+text_samples_per_s"],
                     f"{e['latent_vs_jpeg']}x", f"{e['latent+text_vs_jpeg']}x"])
    for size, e in results["step"].items():
        rows.append(["step ms (fwd+bwd)", f"{size} {e['resolution']}px bs{e['batch_size']}",
                     e["pixels_ms"], e["latents_ms"], e["latents+text_ms"],
                     f"{e['pixels_vs_latents']}x", f"{e['pixels_vs_latents+text']}x"])
    for res, e in results.get("sd21_flops", {}).items():
        rows.append(["GFLOP/sample", f"sd21 {res}px", round(e["vae_encode_gflop"]
                     + e["text_encoder_gflop"] + e["unet_fwd_bwd_gflop"], 1),
                     round(e["text_encoder_gflop"] + e["unet_fwd_bwd_gflop"], 1),
                     e["unet_fwd_bwd_gflop"], f"{e['pixels_vs_latents']}x",
                     f"{e['pixels_vs_latents+text']}x"])
    return rows
