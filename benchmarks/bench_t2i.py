"""t2i: the text-to-image family's training step (time, peak memory, with and without
gradient checkpointing) and its sampling time per image per sampler and step count.

1. Training step: forward + backward + AdamW step of the family's losses on rendered
   synthetic scenes with their captions, for each size (conf/model/t2i/<size>.yaml:
   `tiny`, `base`; `sd21` on a GPU) and loss:
   - `diffusion`: VAE encode (no gradients) -> latents scaled to unit variance -> caption
     dropout -> CLIP text states (text encoder frozen) -> noise, timestep -> UNet ->
     v / epsilon target with min-SNR weighting, exactly TextToImage._diffusion_loss (a
     test holds the two equal); the optimizer trains the UNet.
   - `autoencoder`: the family's own `autoencoders.losses` (L1 + KL); trains the VAE.
   Each with `gradient_checkpointing` off and on (diffusers' enable_gradient_checkpointing
   on the UNet and the KL autoencoder, as TextToImage applies it). On CPU every
   configuration and repeat runs in its own forked process and the peak is its
   resident-set high-water mark (VmHWM, reset first) above the resident set before the
   networks were built (weights, gradients, AdamW state, activations: as bench_restore);
   on CUDA the networks are built once per size and the peak is max_memory_allocated
   (weights included) with bf16 autocast. Also recorded: the bytes autograd holds for
   backward after one forward (saved-tensor hooks, unique storages), which is what
   checkpointing trades for recomputation. Ratios checkpointed / plain: memory saved vs
   time paid.

2. Sampling: a StableDiffusionPipeline over the same networks (as TextToImage.pipeline
   assembles it) with each sampler (ddim, ddpm, dpm_solver) at each step count, CFG on
   (the config's guidance scale), a batch of `prompts` prompts: seconds per image (whole
   call / prompts, decode and PIL conversion included), median over repeats after one
   warm-up call. Checks: every sampler returns one image per prompt at the resolution.

Needs torch, diffusers, transformers and omegaconf (plus mmtrain's light modules: the
config schema, networks.py, autoencoders/): no hydra, lightning, webdataset or faiss, so
it runs on a GPU machine with only those carried. Standalone, one JSON line out:

    python -m benchmarks.bench_t2i --config sd21 --resolution 512 --batch 8
"""

from __future__ import annotations

import gc
import statistics
import time
from contextlib import nullcontext

from benchmarks.harness import in_child, rss_kib, saved_for_backward

DESCRIPTION = ("t2i family: train step time + peak memory (tiny/base, +-gradient "
               "checkpointing, diffusion/autoencoder loss); sampling s/image per sampler "
               "and step count")
SAMPLERS = ("ddim", "ddpm", "dpm_solver")  # networks.SAMPLERS
BATCH = {"tiny": 16, "base": 8, "sd21": 4}
QUICK_BATCH = {"tiny": 4, "base": 2, "sd21": 1}


def settings(quick: bool) -> dict:
    return {"sizes": "base" if quick else "tiny,base", "resolution": None, "batch": None,
            "losses": "diffusion" if quick else "diffusion,autoencoder",
            "steps": 1 if quick else 4,
            "warmup": 0 if quick else 2, "checkpointing": "0,1",
            "sample_sizes": "tiny" if quick else "tiny,base",
            "samplers": ",".join(SAMPLERS), "sample_steps": "2" if quick else "10,25,50",
            "big_sample_steps": "2" if quick else "25", "prompts": 2 if quick else 4,
            "quick_resolution": 32 if quick else None, "device": "auto"}


def run(repeats: int = 3, quick: bool = False, *, sizes: str | None = None,
        resolution: int | None = None, batch: int | None = None, losses: str | None = None,
        steps: int | None = None, warmup: int | None = None, checkpointing: str | None = None,
        sample_sizes: str | None = None, samplers: str | None = None,
        sample_steps: str | None = None, big_sample_steps: str | None = None,
        prompts: int | None = None, device: str | None = None) -> dict:
    """--param sizes (tiny,base,sd21), resolution (all sizes; default each config's),
    batch (all sizes; default tiny 16, base 8, sd21 4), losses (diffusion,autoencoder),
    steps, warmup, checkpointing (0,1), sample_sizes ("" for none), samplers,
    sample_steps (tiny), big_sample_steps (other sizes), prompts, device (auto/cpu/cuda)."""
    import torch

    params = settings(quick)
    given = dict(sizes=sizes, resolution=resolution, batch=batch, losses=losses, steps=steps,
                 warmup=warmup, checkpointing=checkpointing, sample_sizes=sample_sizes,
                 samplers=samplers, sample_steps=sample_steps,
                 big_sample_steps=big_sample_steps, prompts=prompts, device=device)
    params.update({k: v for k, v in given.items() if v is not None})
    if params["device"] == "auto":
        params["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if params["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench t2i: device=cuda but torch sees no GPU; use device=cpu")
    params.update(quick=quick, repeats=repeats, torch_threads=torch.get_num_threads())
    results: dict = {"step": {}, "sampling": {}}
    for size in _names(params["sizes"]):
        results["step"][size] = step_benchmark(size, params, repeats)
    for size in _names(params["sample_sizes"]):
        results["sampling"][size] = _isolated(params, _sampling, size, params, repeats)
    checks = {}
    for size, losses in results["step"].items():
        for loss, r in losses.items():
            if "saved_ratio" in r:  # what checkpointing is for
                checks[f"{size}_{loss}_checkpointing_holds_less_for_backward"] = \
                    r["saved_ratio"] < 1
    for size, r in results["sampling"].items():
        checks[f"{size}_samplers_give_one_image_per_prompt_at_resolution"] = all(
            run["images_ok"] for run in r["runs"])
    return {"params": params, "results": results, "checks": checks, "table": table(results)}


def _names(text) -> list[str]:
    return [s for s in str(text or "").split(",") if s]


# ---- the networks, built as TextToImage builds them (same order: same init per seed) -----
class Parts:
    """tokenizer, text encoder, VAE, UNet and noise schedule of a t2i config, from
    mmtrain/families/t2i/networks.py (TextToImage.__init__'s order and settings) without
    the LightningModule around them."""

    def __init__(self, config, device: str) -> None:
        import torch

        from mmtrain.families.t2i import networks

        self.config = config
        self.device = torch.device(device)
        with self.device:  # initialised where they run (SD 2.1's 1.3 B: seconds on a GPU)
            nets = networks.build_networks(config)
        self.tokenizer, self.text_encoder, self.vae = nets.tokenizer, nets.text_encoder, nets.vae
        self.unet, self.noise_scheduler = nets.unet, nets.noise_scheduler
        self.latent_shape = nets.latent_shape
        self.latent_scale = config.autoencoder.scaling_factor or 0.0  # 0: measure once
        self.set_checkpointing(config.gradient_checkpointing)

    def set_checkpointing(self, on: bool) -> None:
        """TextToImage's rule: the UNet, and the autoencoder where diffusers supports it."""
        nets = [self.unet] + ([self.vae] if getattr(self.vae, "_supports_gradient_checkpointing",
                                                    False) else [])
        for net in nets:
            net.enable_gradient_checkpointing() if on else net.disable_gradient_checkpointing()

    def params_m(self) -> dict:
        return {n: sum(p.numel() for p in getattr(self, n).parameters()) / 1e6
                for n in ("unet", "vae", "text_encoder")}


def load_config(size: str, resolution: int | None, checkpointing: bool = False):
    """conf/model/t2i/<size>.yaml, checked and typed as a run gets it (no hydra)."""
    from omegaconf import OmegaConf

    from benchmarks.harness import ROOT
    from mmtrain.config.validate import ConfigError, _build, _check_dataclass
    from mmtrain.families.t2i.config import T2IConfig

    path = ROOT / "conf" / "model" / "t2i" / f"{size}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"bench t2i: no config {path}; sizes: {', '.join(names)}")
    raw = OmegaConf.to_container(OmegaConf.load(path))
    raw["gradient_checkpointing"] = checkpointing
    if resolution:
        raw["resolution"] = int(resolution)
    errors: list[str] = []
    _check_dataclass(raw, T2IConfig, f"model.t2i ({size})", errors)
    if errors:
        raise ConfigError("invalid t2i config:\n  - " + "\n  - ".join(errors))
    return _build(raw, T2IConfig)


def scene_batch(n: int, resolution: int, seed: int = 0) -> dict:
    """n rendered synthetic scenes in [-1, 1] with their captions."""
    import numpy as np
    import torch

    from mmtrain.data.synth import scenes

    rng = np.random.default_rng(seed)
    pixels, captions = [], []
    for i in range(n):
        scene = scenes.sample_scene(rng)
        image = np.asarray(scenes.render_scene(scene, resolution), dtype=np.float32)
        pixels.append(torch.from_numpy(image).permute(2, 0, 1) / 127.5 - 1)
        captions.append(scene.caption(i % len(scenes.CAPTION_TEMPLATES)))
    return {"pixels": torch.stack(pixels), "captions": captions}


# ---- the losses -----------------------------------------------------------------------
def diffusion_loss(parts: Parts, batch: dict, generator):
    """TextToImage._diffusion_loss for a config without styles or retrieval, draw for
    draw (posterior sample, caption dropout, noise, timesteps from `generator`)."""
    import torch
    import torch.nn.functional as F
    from diffusers.training_utils import compute_snr

    from mmtrain.families.t2i import autoencoders

    cfg = parts.config
    pixels = batch["pixels"].to(parts.device)
    with torch.no_grad():
        latents = autoencoders.encode(parts.vae, pixels, _on(generator, pixels))
        if parts.latent_scale == 0:
            parts.latent_scale = 1.0 / latents.float().std().item()
        latents = latents * parts.latent_scale
    drop = torch.rand(len(batch["captions"]), generator=generator) < cfg.caption_dropout
    captions = ["" if d else c for c, d in zip(batch["captions"], drop.tolist(), strict=True)]
    ids = parts.tokenizer(captions, padding="max_length", truncation=True,
                          max_length=parts.tokenizer.model_max_length,
                          return_tensors="pt").input_ids.to(parts.device)
    context = parts.text_encoder(ids)[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    steps = torch.randint(0, parts.noise_scheduler.config.num_train_timesteps,
                          (latents.shape[0],), generator=generator).to(latents.device)
    noisy = parts.noise_scheduler.add_noise(latents, noise, steps)
    v_pred = cfg.noise.prediction_type == "v_prediction"
    target = parts.noise_scheduler.get_velocity(latents, noise, steps) if v_pred else noise
    pred = parts.unet(noisy, steps, encoder_hidden_states=context).sample
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean((1, 2, 3))
    if cfg.noise.snr_gamma is None:
        return per_sample.mean()
    snr = compute_snr(parts.noise_scheduler, steps)
    weight = torch.clamp(snr, max=cfg.noise.snr_gamma) / (snr + 1 if v_pred else snr)
    return (weight * per_sample).mean()


def autoencoder_loss(parts: Parts, batch: dict, generator):
    from mmtrain.families.t2i import autoencoders

    pixels = batch["pixels"].to(parts.device)
    return autoencoders.losses(parts, pixels, {"autoencoder"},
                               _on(generator, pixels))["autoencoder"]


LOSSES = {"diffusion": (diffusion_loss, "unet"), "autoencoder": (autoencoder_loss, "vae")}


def _on(generator, like):
    return generator if like.device.type == "cpu" else None


# ---- 1. training step -----------------------------------------------------------------
def step_benchmark(size: str, params: dict, repeats: int) -> dict:
    cuda = params["device"] == "cuda"
    shared = None
    if cuda:  # one build per size; checkpointing toggled on the same networks
        shared = _cuda_parts(size, params)
    out: dict = {}
    for loss in _names(params["losses"]):
        if loss not in LOSSES:
            raise SystemExit(f"bench t2i: unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        entry: dict = {}
        modes = [bool(int(c)) for c in _names(params["checkpointing"])]
        measured: dict[bool, list] = {m: [] for m in modes}
        for rep in range(repeats):  # A B, B A, ...: load drifts hit both alike
            for ckpt in modes if rep % 2 == 0 else modes[::-1]:
                measured[ckpt].append(
                    _measure_step(shared, size, loss, ckpt, params) if cuda else
                    in_child(_measure_step, None, size, loss, ckpt, params))
        for ckpt, runs in measured.items():
            entry["checkpointed" if ckpt else "plain"] = {
                "step_s": statistics.median(r["step_s"] for r in runs),
                "step_s_runs": [round(r["step_s"], 4) for r in runs],
                "peak_mib": statistics.median(r["peak_mib"] for r in runs),
                "saved_for_backward_mib": runs[0]["saved_mib"],
                **{k: runs[0][k] for k in ("batch", "resolution", "params_m", "peak_kind")},
            }
        if "plain" in entry and "checkpointed" in entry:
            p, c = entry["plain"], entry["checkpointed"]
            entry["time_ratio"] = c["step_s"] / p["step_s"]
            entry["peak_ratio"] = c["peak_mib"] / p["peak_mib"]
            entry["saved_ratio"] = c["saved_for_backward_mib"] / p["saved_for_backward_mib"]
            entry["peak_saved_mib"] = p["peak_mib"] - c["peak_mib"]
        out[loss] = entry
    del shared
    _free(params)
    return out


def _resolution(size: str, params: dict) -> int | None:
    return params["resolution"] or (params["quick_resolution"] if size != "tiny" else None)


def _batch(size: str, params: dict) -> int:
    table_ = QUICK_BATCH if params["quick"] else BATCH
    return int(params["batch"] or table_.get(size, 4))


def _cuda_parts(size: str, params: dict):
    import torch

    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    torch.manual_seed(0)
    parts = Parts(load_config(size, _resolution(size, params)), "cuda")
    parts.baseline_bytes = base
    return parts


def _measure_step(parts, size: str, loss: str, checkpointing: bool, params: dict) -> dict:
    import torch

    from benchmarks.harness import steady_mean

    cuda = params["device"] == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = parts.baseline_bytes
        parts.set_checkpointing(checkpointing)
    else:
        from pathlib import Path

        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        before = rss_kib("VmRSS") * 1024
        torch.manual_seed(0)
        parts = Parts(load_config(size, _resolution(size, params), checkpointing), "cpu")
    fn, trained = LOSSES[loss]
    for name in ("unet", "vae", "text_encoder"):
        getattr(parts, name).requires_grad_(name == trained).train()
    opt = torch.optim.AdamW(getattr(parts, trained).parameters(), lr=1e-4)
    batch = scene_batch(_batch(size, params), parts.config.resolution)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    with amp:
        saved = saved_for_backward(lambda: fn(parts, batch, torch.Generator().manual_seed(0)))
    starts = []
    total = params["warmup"] + params["steps"]
    for step in range(total + 1):
        if cuda:
            torch.cuda.synchronize()
        starts.append(time.perf_counter())
        if step == total:
            break
        with amp:
            value = fn(parts, batch, torch.Generator().manual_seed(step))
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    peak = (torch.cuda.max_memory_allocated() - before) if cuda else \
        (rss_kib("VmHWM") * 1024 - before)
    out = {"step_s": steady_mean(starts, params["warmup"]), "peak_mib": peak / 2**20,
           "saved_mib": saved / 2**20, "batch": len(batch["captions"]),
           "resolution": parts.config.resolution,
           "params_m": {k: round(v, 3) for k, v in parts.params_m().items()},
           "peak_kind": "cuda_max_allocated" if cuda else "rss_hwm"}
    if cuda:  # the next configuration starts without this one's optimizer state
        del opt, value
        for net in (parts.unet, parts.vae):
            net.zero_grad(set_to_none=True)
        _free(params)
    return out


# ---- 2. sampling ------------------------------------------------------------------------
def _sampling(size: str, params: dict, repeats: int) -> dict:
    import warnings

    import torch
    from diffusers import StableDiffusionPipeline

    from mmtrain.families.t2i import networks

    cuda = params["device"] == "cuda"
    torch.manual_seed(0)
    parts = Parts(load_config(size, _resolution(size, params)), params["device"])
    for net in (parts.unet, parts.vae, parts.text_encoder):
        net.requires_grad_(False).eval()
    cfg = parts.config
    with torch.no_grad():  # the latent scale, as the first diffusion step measures it
        diffusion_loss(parts, scene_batch(2, cfg.resolution), torch.Generator().manual_seed(0))
    parts.vae.register_to_config(scaling_factor=parts.latent_scale)
    prompts = (cfg.sample_prompts * params["prompts"])[:params["prompts"]]
    step_counts = params["sample_steps"] if size == "tiny" else params["big_sample_steps"]
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    runs = []
    # DDPMScheduler.from_config of the training schedule warns about clip_sample per call
    warnings.filterwarnings("ignore", message="(?s).*clip_sample", category=FutureWarning)
    for sampler in _names(params["samplers"]):
        pipe = StableDiffusionPipeline(
            vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
            unet=parts.unet, scheduler=networks.build_sampler(cfg, parts.noise_scheduler, sampler),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)

        def call(n_steps: int, pipe=pipe):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            with amp:
                images = pipe(prompts, num_inference_steps=n_steps,
                              guidance_scale=cfg.sampler.guidance_scale,
                              height=cfg.resolution, width=cfg.resolution,
                              generator=torch.Generator(params["device"]).manual_seed(0)).images
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - start, images

        if not params["quick"]:
            call(2)  # warm-up: allocations, kernels, the scheduler's tables
        for n_steps in [int(s) for s in _names(step_counts)]:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            timed = [call(n_steps) for _ in range(repeats)]
            images = timed[0][1]
            per_image = [t / len(prompts) for t, _ in timed]
            runs.append({
                "sampler": sampler, "steps": n_steps,
                "s_per_image": statistics.median(per_image),
                "s_per_image_runs": [round(t, 4) for t in per_image],
                "images_ok": len(images) == len(prompts) and all(
                    im.size == (cfg.resolution, cfg.resolution) for im in images),
                **({"peak_mib": torch.cuda.max_memory_allocated() / 2**20} if cuda else {}),
            })
    out = {"resolution": cfg.resolution, "prompts": len(prompts),
           "guidance_scale": cfg.sampler.guidance_scale, "runs": runs}
    del parts, pipe
    return out


# ---- processes and memory ---------------------------------------------------------------
def _isolated(params: dict, fn, *args):
    """CPU: in a forked child (its memory goes with it); CUDA: in this process."""
    if params["device"] == "cuda":
        out = fn(*args)
        _free(params)
        return out
    return in_child(fn, *args)


def _free(params: dict) -> None:
    gc.collect()
    if params["device"] == "cuda":
        import torch

        torch.cuda.empty_cache()


# ---- table ------------------------------------------------------------------------------
def table(results: dict) -> list[list]:
    rows = [["measurement", "plain", "checkpointed", "ratio"]]
    for size, losses in results["step"].items():
        for loss, r in losses.items():
            p, c = r.get("plain"), r.get("checkpointed")
            first = p or c
            label = f"{size} {loss} (b{first['batch']} x {first['resolution']}px)"
            cell = lambda d, k, f: f.format(d[k]) if d else "-"  # noqa: E731
            rows.append([f"{label} step s", cell(p, "step_s", "{:.3f}"),
                         cell(c, "step_s", "{:.3f}"),
                         f"{r['time_ratio']:.2f}x time" if "time_ratio" in r else ""])
            rows.append([f"{label} peak MiB ({first['peak_kind']})", cell(p, "peak_mib", "{:.0f}"),
                         cell(c, "peak_mib", "{:.0f}"),
                         f"{r['peak_ratio']:.2f}x" if "peak_ratio" in r else ""])
            rows.append([f"{label} held for backward MiB",
                         cell(p, "saved_for_backward_mib", "{:.1f}"),
                         cell(c, "saved_for_backward_mib", "{:.1f}"),
                         f"{r['saved_ratio']:.2f}x" if "saved_ratio" in r else ""])
    for size, s in results["sampling"].items():
        for run_ in s["runs"]:
            rows.append([f"{size} sample {run_['sampler']} {run_['steps']} steps s/image "
                         f"({s['resolution']}px, {s['prompts']} prompts, cfg "
                         f"{s['guidance_scale']})", f"{run_['s_per_image']:.3f}", "", ""])
    return rows


# ---- standalone: one JSON line ----------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    import sys
    from contextlib import redirect_stdout
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_t2i", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="sizes, comma-separated: tiny,base,sd21")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--losses", default=None, help="diffusion,autoencoder")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samplers", default=None)
    p.add_argument("--sample-steps", default=None,
                   help="step counts, comma-separated (all sizes given)")
    p.add_argument("--no-sampling", action="store_true")
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 on CPU, torch's default with CUDA)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="also append the line to DIR/t2i.jsonl")
    args = p.parse_args(argv)
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    if args.threads or args.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(args.threads or 1)
    from benchmarks import harness

    params = {"sizes": args.config, "resolution": args.resolution, "batch": args.batch,
              "device": args.device, "losses": args.losses, "steps": args.steps,
              "warmup": args.warmup, "samplers": args.samplers, "prompts": args.prompts,
              "sample_steps": args.sample_steps, "big_sample_steps": args.sample_steps,
              "sample_sizes": "" if args.no_sampling else args.config}
    params = {k: v for k, v in params.items() if v is not None}
    repeats = args.repeats or (1 if args.quick else 3)
    record = harness.run_one("t2i", repeats, args.quick, args.results_dir, params)
    with redirect_stdout(sys.stderr):  # the table, for people; stdout holds the JSON line
        harness.print_record(record)
    record.pop("table", None)
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
