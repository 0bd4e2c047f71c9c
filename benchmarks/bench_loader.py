"""loader: mmtrain's training data loader against a bare webdataset loop, same shards.

The shards are written once per run in img2dataset's layout (`<key>.jpg` + `<key>.txt` +
`<key>.json`, keys shard id + index as img2dataset names them): photo-like 256x256 JPEGs
at quality 90 (the synthetic scenes, upscaled from 80 px, with a low-frequency colour
texture and film grain so that they compress like photos; no real photo ships in the
venv) with a caption that is unique per sample, so both loops can prove they saw every
sample exactly once.

Both sides turn the same shards into the same batches of the text-to-image family, at
equal batch size, shuffle buffer, resolution and data workers, through a torch
`DataLoader(..., batch_size=None, num_workers=W)`, for exactly one epoch:

- bare: `webdataset.WebDataset(urls, shardshuffle=n_shards, nodesplitter=split_by_node,
  workersplitter=split_by_worker)` + `.shuffle(buffer, initial=buffer)` + `.map(...)`
  with the per-sample work of mmtrain's t2i decoder written out by hand (PIL open,
  RGB, centre square + bicubic resize when the size differs, float CHW in [-1, 1],
  caption decoded and stripped) + `.batched(batch_size)` stacking the pixels. No mmtrain.
- mmtrain: the real `PhaseData(...).stream(rank=0, world_size=1)` (a `MixtureStream`
  over `FamilyPipeline`s with the t2i `Codec` from `mmtrain/families/t2i/batch.py`),
  whose options are replaced by `max_epochs=1` (a finite epoch; PhaseData does not
  expose it), in a `DataLoader` exactly as `PhaseData.train_dataloader` builds it. Every
  batch carries its `_position` (the resumable state): it is popped in the loop, as
  `DataPosition` pops it, and its pickled size is reported.

Timing, wall clock (`perf_counter`) and CPU time (this process plus its DataLoader
workers, which are joined at the end of each epoch), per repeat and worker count:
- workers=0 (mode=interleaved, the default): the two loaders take turns batch by batch
  over one epoch each (who goes first alternates every batch), each `next()` timed on
  its own, so load spikes from other processes hit both alike.
- workers>0 (or mode=sequential): the workers prefetch in the background, so the sides
  run apart, one epoch at a time, in the order A B B A (A alternates between repeats),
  which cancels a linear drift of the machine's load.
Steady throughput = samples in the batches after the first `warmup` batches (worker
start-up, shuffle-buffer fill) / their time. Per worker count the headline ratio
mmtrain/bare is the median of the per-repeat ratios; "per core" divides samples/s by
max(1, workers); the CPU ratio compares samples per CPU-second over whole epochs.
Separately, `position_cost` times one `_position` (build + pickle round trip) with a
full shuffle buffer against the time to read and decode one batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import resource
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

DESCRIPTION = "mmtrain's data loader (PhaseData stream) vs a bare webdataset loop, t2i decode"
GOAL = 0.9  # mmtrain >= 0.9x the bare loop's samples/s
IMAGE_SIZE = 256
JPEG_QUALITY = 90
SEED = 0
POSITION_SAMPLE_EVERY = 8  # keep every 8th batch's `_position` to measure its size


def settings(quick: bool) -> dict:
    if quick:  # a smoke run: well under 60 s on a loaded 2-core machine
        return {"samples": 384, "shards": 8, "batch_size": 16, "shuffle_buffer": 64,
                "resolution": 64, "warmup": 2, "workers": "0,2"}
    return {"samples": 4096, "shards": 16, "batch_size": 32, "shuffle_buffer": 512,
            "resolution": 256, "warmup": 4, "workers": "0,2"}


def run(repeats: int = 3, quick: bool = False, *, samples: int | None = None,
        shards: int | None = None, batch_size: int | None = None,
        shuffle_buffer: int | None = None, resolution: int | None = None,
        warmup: int | None = None, workers: str | int | None = None,
        mode: str = "interleaved", workdir: str | None = None) -> dict:
    """--param samples=N, shards=S, batch_size=B, shuffle_buffer=K, resolution=R,
    warmup=BATCHES, workers=0,2 (comma-separated), mode=interleaved|sequential, workdir=DIR."""
    if mode not in ("interleaved", "sequential"):
        raise ValueError(f"mode must be interleaved or sequential, got {mode!r}")
    import torch

    params = settings(quick)
    given = dict(samples=samples, shards=shards, batch_size=batch_size,
                 shuffle_buffer=shuffle_buffer, resolution=resolution, warmup=warmup,
                 workers=workers)
    params.update({k: v for k, v in given.items() if v is not None})
    worker_counts = [int(w) for w in str(params["workers"]).split(",") if w.strip()]
    params.update(workers=worker_counts, mode=mode, quick=quick, repeats=repeats, seed=SEED,
                  image_size=IMAGE_SIZE, jpeg_quality=JPEG_QUALITY,
                  torch_threads=torch.get_num_threads(),
                  worker_threads=1,  # torch's DataLoader worker loop sets 1 intra-op thread
                  timing="steady samples/s after `warmup` batches; workers=0 interleaved "
                         "batch by batch, workers>0 sequential epochs A B B A; per core = "
                         "samples/s / max(1, workers); CPU = this process + its joined "
                         "workers over whole epochs")
    if params["shards"] < max(worker_counts + [1]):
        raise ValueError(f"{params['shards']} shards for {max(worker_counts)} workers: "
                         "every worker needs its own shard")
    with tempfile.TemporaryDirectory(prefix="bench-loader-", dir=workdir) as tmp:
        shard_dir = Path(tmp) / "shards"
        t0 = time.perf_counter()
        data = write_shards(shard_dir, params["samples"], params["shards"])
        data["write_s"] = round(time.perf_counter() - t0, 2)
        expected = Counter(data.pop("captions"))
        per_repeat = []
        for r in range(repeats):
            row = {}
            for i, w in enumerate(worker_counts):
                first = "bare" if (r + i) % 2 == 0 else "mmtrain"
                row[w] = one_pair(shard_dir, params, w, first, expected)
            per_repeat.append(row)
        position = position_cost(shard_dir, params)
    return summarize(params, data, per_repeat, position)


# ---- the shards -----------------------------------------------------------------------
def write_shards(out: Path, samples: int, shards: int) -> dict:
    """img2dataset-layout shards `00000.tar`...; returns sizes and the expected captions."""
    import numpy as np
    import webdataset as wds
    from PIL import Image

    from mmtrain.data.synth.scenes import render_scene, sample_scene

    rng = np.random.default_rng(SEED)
    base_size = IMAGE_SIZE + 64  # random 256-px crops of larger bases
    bases, scenes = [], []
    for _ in range(min(48, samples)):
        scene = sample_scene(rng)
        image = render_scene(scene, 80, 2).resize((base_size, base_size), Image.BICUBIC)
        texture = rng.normal(128, 22, (6, 6, 3)).clip(0, 255).astype(np.uint8)
        texture = Image.fromarray(texture).resize((base_size, base_size), Image.BICUBIC)
        pixels = np.asarray(image, np.int16) + np.asarray(texture, np.int16) - 128
        bases.append(pixels)
        scenes.append(scene)
    grain = rng.normal(0, 7, (2 * IMAGE_SIZE, 2 * IMAGE_SIZE, 3)).round().astype(np.int16)
    out.mkdir(parents=True)
    per_shard = -(-samples // shards)
    captions, jpg_bytes = [], 0
    for shard in range(shards):
        with wds.TarWriter(str(out / f"{shard:05d}.tar")) as tar:
            for index in range(per_shard):
                i = shard * per_shard + index
                if i >= samples:
                    break
                key = f"{shard:05d}{index:04d}"
                b = int(rng.integers(len(bases)))
                x, y, gx, gy = rng.integers(0, 64, 2).tolist() + rng.integers(
                    0, IMAGE_SIZE, 2).tolist()
                pixels = bases[b][y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
                if rng.random() < 0.5:
                    pixels = pixels[:, ::-1]
                pixels = pixels + grain[gy:gy + IMAGE_SIZE, gx:gx + IMAGE_SIZE]
                buffer = io.BytesIO()
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                    buffer, "JPEG", quality=JPEG_QUALITY)
                jpg = buffer.getvalue()
                caption = f"{scenes[b].caption(i)} (photo {key})"
                meta = {"key": key, "url": f"https://example.com/images/{key}.jpg",
                        "caption": caption, "status": "success", "error_message": None,
                        "width": IMAGE_SIZE, "height": IMAGE_SIZE,
                        "original_width": base_size, "original_height": base_size,
                        "exif": "{}", "sha256": hashlib.sha256(jpg).hexdigest()}
                tar.write({"__key__": key, "jpg": jpg, "txt": caption.encode(),
                           "json": json.dumps(meta).encode()})
                captions.append(caption)
                jpg_bytes += len(jpg)
    tar_bytes = sum(p.stat().st_size for p in out.glob("*.tar"))
    return {"shards": shards, "samples": len(captions), "tar_bytes": tar_bytes,
            "bytes_per_sample": round(tar_bytes / len(captions)),
            "jpg_bytes_per_sample": round(jpg_bytes / len(captions)), "captions": captions}


def urls(shard_dir: Path) -> list[str]:
    return sorted(str(p) for p in shard_dir.glob("*.tar"))


# ---- the two loaders ------------------------------------------------------------------
def bare_decode(sample: dict, resolution: int) -> dict:
    """The t2i decoder's per-sample work, written out without mmtrain."""
    import numpy as np
    import torch
    from PIL import Image

    image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
    if image.size != (resolution, resolution):
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize(
            (resolution, resolution), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return {"pixels": pixels.permute(2, 0, 1), "caption": sample["txt"].decode("utf-8").strip()}


def bare_collate(samples: list[dict]) -> dict:
    import torch

    return {"pixels": torch.stack([s["pixels"] for s in samples]),
            "captions": [s["caption"] for s in samples]}


def bare_loader(shard_dir: Path, p: dict, workers: int):
    import webdataset as wds
    from torch.utils.data import DataLoader

    shard_urls = urls(shard_dir)
    dataset = wds.WebDataset(shard_urls, shardshuffle=len(shard_urls), seed=p["seed"],
                             nodesplitter=wds.split_by_node,
                             workersplitter=wds.split_by_worker)
    buffer = p["shuffle_buffer"]
    dataset = (dataset.shuffle(buffer, initial=buffer, seed=p["seed"])
               .map(partial(bare_decode, resolution=p["resolution"]))
               .batched(p["batch_size"], collation_fn=bare_collate, partial=True))
    return DataLoader(dataset, batch_size=None, num_workers=workers)


def phase_data(shard_dir: Path, p: dict, workers: int):
    from mmtrain.config.schema import DataConfig, PhaseConfig, SourceConfig
    from mmtrain.data.module import Codec, PhaseData
    from mmtrain.families.t2i import batch

    data = DataConfig(root=str(shard_dir), sources={"bench": SourceConfig(train=str(shard_dir))},
                      family_sources={"t2i": ["bench"]}, batch_size=p["batch_size"],
                      num_workers=workers, shuffle_buffer=p["shuffle_buffer"])
    phase = PhaseConfig(name="bench", families=["t2i"], steps=1)
    codec = Codec(decode=batch.decoder(p["resolution"]), collate=batch.collate,
                  fields=batch.FIELDS)
    return PhaseData(data, phase, {"t2i": codec}, seed=p["seed"], limit_val_batches=0)


def mmtrain_loader(shard_dir: Path, p: dict, workers: int):
    from torch.utils.data import DataLoader

    data = phase_data(shard_dir, p, workers)
    stream = data.stream(rank=0, world_size=1)
    stream.o = dataclasses.replace(stream.o, max_epochs=1)  # one finite epoch
    # As PhaseData.train_dataloader builds it.
    return DataLoader(stream, batch_size=None, num_workers=workers, persistent_workers=False)


# ---- one timed pass -------------------------------------------------------------------
def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined workers only
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Delivered:
    """What one loader delivered in one pass, batch by batch, and what it cost."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.captions: list[str] = []
        self.positions: list = []
        self.steady_s = self.pass_s = self.cpu_s = self.first_batch_s = 0.0

    def take(self, batch: dict) -> None:
        position = batch.pop("_position", None)  # as DataPosition does
        if position is not None and len(self.sizes) % POSITION_SAMPLE_EVERY == 0:
            # Kept for their pickled size only (DataPosition itself keeps the latest).
            self.positions.append(position)
        self.sizes.append(len(batch["captions"]))
        self.captions.extend(batch["captions"])

    def steady_samples(self, warmup: int) -> int:
        if len(self.sizes) <= warmup + 1:
            raise ValueError(f"{len(self.sizes)} batches leave nothing to time after "
                             f"warmup={warmup}")
        return sum(self.sizes[warmup + 1:])


def sequential_pass(loader, warmup: int) -> Delivered:
    """One loader alone for one epoch; steady = from the `warmup`-th batch to the last."""
    got, stamps = Delivered(), []
    cpu0, t0 = _cpu(), time.perf_counter()
    for batch in loader:  # the iterator joins its workers when the epoch ends
        stamps.append(time.perf_counter())
        got.take(batch)
    got.cpu_s, got.pass_s = _cpu() - cpu0, time.perf_counter() - t0
    got.steady_samples(warmup)  # enough batches?
    got.steady_s, got.first_batch_s = stamps[-1] - stamps[warmup], stamps[0] - t0
    return got


def interleaved_passes(loaders: dict, first: str, warmup: int) -> dict[str, Delivered]:
    """workers=0 only: the loaders take turns batch by batch (who goes first alternates
    every batch) and each `next()` is timed on its own, wall and process CPU, so load
    drifts hit both alike. steady = the same batches as in `sequential_pass`."""
    order = [first, *(s for s in loaders if s != first)]
    iters = {side: iter(loader) for side, loader in loaders.items()}
    got = {side: Delivered() for side in loaders}
    durations: dict[str, list[tuple[float, float]]] = {side: [] for side in loaders}
    turn = 0
    while iters:
        for side in order if turn % 2 == 0 else order[::-1]:
            if side not in iters:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            batch = next(iters[side], None)
            w1, c1 = time.perf_counter(), time.process_time()
            if batch is None:
                del iters[side]
                continue
            durations[side].append((w1 - w0, c1 - c0))
            got[side].take(batch)
        turn += 1
    for side, d in durations.items():
        got[side].steady_samples(warmup)
        got[side].steady_s = sum(w for w, _ in d[warmup + 1:])
        got[side].pass_s, got[side].cpu_s = sum(w for w, _ in d), sum(c for _, c in d)
        got[side].first_batch_s = d[0][0]
    return got


def combine(passes: list[Delivered], warmup: int, expected: Counter) -> dict:
    """One side's passes of a repeat -> its numbers (throughput over all of them)."""
    samples = [len(p.captions) for p in passes]
    seen = [Counter(p.captions) for p in passes]
    pickled = [len(pickle.dumps(pos, protocol=pickle.HIGHEST_PROTOCOL))
               for p in passes for pos in p.positions]
    return {
        "samples_per_s": sum(p.steady_samples(warmup) for p in passes)
        / sum(p.steady_s for p in passes),
        "cpu_ms_per_sample": 1e3 * sum(p.cpu_s for p in passes) / sum(samples),
        "pass_s": sum(p.pass_s for p in passes) / len(passes),
        "first_batch_s": sum(p.first_batch_s for p in passes) / len(passes),
        "batches": len(passes[0].sizes), "passes": len(passes),
        "samples": samples[0] if len(set(samples)) == 1 else samples,
        "each_sample_once": all(s == expected for s in seen),
        "repeated": max(sum(n - 1 for n in s.values() if n > 1) for s in seen),
        "missing": max(len(set(expected) - set(s)) for s in seen),
        "position_bytes": pickled,
    }


def one_pair(shard_dir: Path, p: dict, workers: int, first: str, expected: Counter) -> dict:
    """One repeat at one worker count. workers=0 (interleaved mode): the two loaders
    alternate batch by batch over one epoch each. Otherwise each side runs its own
    epochs, in the order first, second, second, first (drift cancels to first order)."""
    make = {"bare": bare_loader, "mmtrain": mmtrain_loader}
    second = "mmtrain" if first == "bare" else "bare"
    interleaved = workers == 0 and p["mode"] == "interleaved"
    passes: dict[str, list[Delivered]] = {first: [], second: []}
    load = os.getloadavg()[0]
    # Set-up (PhaseData's shard and field checks) is not timed.
    if interleaved:
        got = interleaved_passes({s: make[s](shard_dir, p, 0) for s in (first, second)},
                                 first, p["warmup"])
        for side, delivered in got.items():
            passes[side].append(delivered)
        order = f"interleaved, {first} first"
    else:
        for side in (first, second, second, first):
            passes[side].append(sequential_pass(make[side](shard_dir, p, workers), p["warmup"]))
        order = f"{first} {second} {second} {first}"
    out = {"order": order, "load_1min": load}
    for side, ps in passes.items():
        out[side] = combine(ps, p["warmup"], expected)
    out["ratio"] = out["mmtrain"]["samples_per_s"] / out["bare"]["samples_per_s"]
    out["cpu_ratio"] = out["bare"]["cpu_ms_per_sample"] / out["mmtrain"]["cpu_ms_per_sample"]
    return out


# ---- the resumable position's own cost --------------------------------------------------
def position_cost(shard_dir: Path, p: dict, rounds: int = 200) -> dict:
    """What one batch's `_position` costs with a full shuffle buffer: building it
    (`FamilyPipeline.state_dict()` + `counts()`), and pickling + unpickling it (what a
    worker's queue does), in microseconds, against the decode time of a batch."""
    from mmtrain.data.stream import SlotPosition

    stream = phase_data(shard_dir, p, 0).stream(rank=0, world_size=1)
    pipes = stream.pipelines(0, 1)
    pipes["t2i"].next_sample()  # fills the shuffle buffer
    t0 = time.perf_counter()
    samples = [pipes["t2i"].next_sample() for _ in range(p["batch_size"])]
    decode_s = time.perf_counter() - t0  # one batch's reading and decoding, steady state
    t0 = time.perf_counter()
    for _ in range(rounds):
        position = SlotPosition(0, 0, {f: q.state_dict() for f, q in pipes.items()},
                                {f: q.counts() for f, q in pipes.items()})
    build_s = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for _ in range(rounds):
        blob = pickle.dumps(position, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
    pickle_s = (time.perf_counter() - t0) / rounds
    collate = stream.feeds["t2i"].collate
    t0 = time.perf_counter()
    for _ in range(20):
        collate(samples)
    collate_s = (time.perf_counter() - t0) / 20
    return {"buffer_entries": len(pipes["t2i"].buffer), "bytes": len(blob),
            "build_us": round(build_s * 1e6, 1), "pickle_roundtrip_us": round(pickle_s * 1e6, 1),
            "batch_read_and_decode_ms": round(decode_s * 1e3, 2),
            "collate_ms": round(collate_s * 1e3, 2),
            "share_of_batch": round((build_s + pickle_s) / (decode_s + collate_s), 5)}


# ---- summary --------------------------------------------------------------------------
def summarize(params: dict, data: dict, per_repeat: list[dict], position: dict) -> dict:
    from benchmarks.harness import median

    results: dict = {"data": data, "position": position, "workers": {}}
    checks: dict[str, bool] = {}
    ratios_ok, cpu_ok = [], []
    table = [["workers", "bare samples/s", "per repeat", "mmtrain samples/s", "per repeat",
              "ratio", "per repeat", "per core b/m", "CPU ms/sample b/m", "CPU ratio"]]
    for w in params["workers"]:
        reps = [r[w] for r in per_repeat]

        def med(side: str, key: str, reps=reps) -> float:
            return median([r[side][key] for r in reps])

        ratio = median([r["ratio"] for r in reps])
        cores = max(1, w)
        entry = {
            "cores_counted": cores,
            "bare_samples_per_s": round(med("bare", "samples_per_s"), 1),
            "mmtrain_samples_per_s": round(med("mmtrain", "samples_per_s"), 1),
            "ratio": round(ratio, 4),  # median of the per-repeat ratios
            "ratio_of_medians": round(med("mmtrain", "samples_per_s")
                                      / med("bare", "samples_per_s"), 4),
            "bare_samples_per_s_per_core": round(med("bare", "samples_per_s") / cores, 1),
            "mmtrain_samples_per_s_per_core": round(med("mmtrain", "samples_per_s") / cores, 1),
            "bare_cpu_ms_per_sample": round(med("bare", "cpu_ms_per_sample"), 3),
            "mmtrain_cpu_ms_per_sample": round(med("mmtrain", "cpu_ms_per_sample"), 3),
            # samples per CPU-second: bare CPU per sample / mmtrain CPU per sample
            "cpu_ratio": round(median([r["cpu_ratio"] for r in reps]), 4),
            "bare_pass_s": round(med("bare", "pass_s"), 3),
            "mmtrain_pass_s": round(med("mmtrain", "pass_s"), 3),
            "bare_first_batch_s": round(med("bare", "first_batch_s"), 3),
            "mmtrain_first_batch_s": round(med("mmtrain", "first_batch_s"), 3),
            "position_bytes_per_batch": {
                "median": median([b for r in reps for b in r["mmtrain"]["position_bytes"]]),
                "max": max(b for r in reps for b in r["mmtrain"]["position_bytes"])},
            "per_repeat": [
                {"order": r["order"], "load_1min": round(r["load_1min"], 2),
                 "ratio": round(r["ratio"], 4),
                 "cpu_ratio": round(r["cpu_ratio"], 4),
                 **{f"{side}_{k}": round(r[side][k], 3) if isinstance(r[side][k], float)
                    else r[side][k]
                    for side in ("bare", "mmtrain")
                    for k in ("samples_per_s", "cpu_ms_per_sample", "pass_s", "batches",
                              "passes", "samples", "repeated", "missing")}}
                for r in reps],
        }
        results["workers"][str(w)] = entry
        n = data["samples"]
        checks[f"same_samples_w{w}"] = all(
            r["bare"]["samples"] == r["mmtrain"]["samples"] == n for r in reps)
        checks[f"bare_each_sample_once_w{w}"] = all(r["bare"]["each_sample_once"] for r in reps)
        checks[f"mmtrain_each_sample_once_w{w}"] = all(
            r["mmtrain"]["each_sample_once"] for r in reps)
        ratios_ok.append(ratio >= GOAL)
        cpu_ok.append(entry["cpu_ratio"] >= GOAL)
        per = entry["per_repeat"]
        table.append([
            str(w), f"{entry['bare_samples_per_s']:.0f}",
            " ".join(f"{r['bare_samples_per_s']:.0f}" for r in per),
            f"{entry['mmtrain_samples_per_s']:.0f}",
            " ".join(f"{r['mmtrain_samples_per_s']:.0f}" for r in per),
            f"{ratio:.3f}", " ".join(f"{r['ratio']:.3f}" for r in per),
            f"{entry['bare_samples_per_s_per_core']:.0f}/"
            f"{entry['mmtrain_samples_per_s_per_core']:.0f}",
            f"{entry['bare_cpu_ms_per_sample']:.2f}/{entry['mmtrain_cpu_ms_per_sample']:.2f}",
            f"{entry['cpu_ratio']:.3f}"])
    results["ratio_min_over_workers"] = min(
        e["ratio"] for e in results["workers"].values())
    results["goal"] = f"mmtrain >= {GOAL}x the bare loop at every worker count"
    if params["quick"]:  # too short to time: informational only
        results["ratio_ge_0.9_informational"] = all(ratios_ok)
        results["cpu_ratio_ge_0.9_informational"] = all(cpu_ok)
    else:
        checks["ratio_ge_0.9"] = all(ratios_ok)  # wall-clock samples/s, the goal
        checks["cpu_ratio_ge_0.9"] = all(cpu_ok)  # samples per CPU-second: less load-sensitive
    table.append(["_position", f"{position['bytes']} B pickled/batch",
                  f"build {position['build_us']:.0f} us", "pickle+unpickle",
                  f"{position['pickle_roundtrip_us']:.0f} us",
                  f"{100 * position['share_of_batch']:.2f} % of a batch", "", "", "", ""])
    return {"params": params, "results": results, "checks": checks, "table": table}
