"""train_step: an mmtrain training step against a hand-written PyTorch loop.

Both sides train the tiny text-to-image model (conf/model/t2i/tiny.yaml) on the diffusion
loss with the VAE frozen, AdamW, the phase's LR lambda and gradient clipping at norm 1.0,
from the same initial weights, on the same MixtureStream batches in the same order, with
the same per-step torch.Generator. Per repeat:

- mmtrain: the real JointModule in a Lightning Trainer from `runner.build_trainer` (CSV
  logger, log every 10 steps, checkpointing at a step beyond the run, no validation, no
  progress bar), `trainer.fit` over the real `PhaseData` datamodule.
- baseline (`PlainLoop`): `model.losses(...)`, zero_grad / backward / clip_grad_norm_ /
  step / scheduler.step over a DataLoader of the same stream, writing the loss to a CSV
  file every 10 steps.

Timing, wall clock and process CPU time side by side:
- mode=interleaved (default): one fit; a callback's `on_train_batch_start` first runs the
  baseline's step of the same index (timed on its own), so the two alternate step by step
  and machine load drifts hit both alike. mmtrain's step = the time between consecutive
  `on_train_batch_start` calls minus the baseline step run inside it.
- mode=sequential: the two run one after the other (which goes first alternates between
  repeats); a step = the time between the starts of consecutive steps.
Either way a step's time covers everything it costs: fetching the batch, forward,
backward, clipping, optimizer and scheduler steps, logging. The first `warmup` steps are
dropped and the rest averaged; the median over repeats gives the reported times and the
ratio mmtrain/baseline. The final weights are compared tensor by tensor.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

DESCRIPTION = "mmtrain (JointModule + Lightning Trainer) vs a plain PyTorch loop, t2i tiny"
LOG_EVERY = 10
CLIP = 1.0
PHASE = "t2i_finetune"  # the recipe phase whose optimizer and schedule both sides use
WORLD = dict(kinds=("scenes",), train_samples=512, val_samples=64, shard_size=128)


def settings(quick: bool) -> dict:
    if quick:  # a smoke run: well under 90 s on a loaded 2-core machine
        return {"steps": 16, "warmup": 3, "batch_size": 8}
    return {"steps": 60, "warmup": 5, "batch_size": 32}


def run(repeats: int = 3, quick: bool = False, *, steps: int | None = None,
        warmup: int | None = None, batch_size: int | None = None,
        mode: str = "interleaved", workdir: str | None = None) -> dict:
    """--param steps=N, warmup=W, batch_size=B, mode=interleaved|sequential, workdir=DIR."""
    if mode not in ("interleaved", "sequential"):
        raise ValueError(f"mode must be interleaved or sequential, got {mode!r}")
    quiet()
    params = settings(quick)
    params["mode"] = mode
    params["steps"] = steps or params["steps"]
    params["warmup"] = params["warmup"] if warmup is None else warmup
    params["batch_size"] = batch_size or params["batch_size"]
    params.update(quick=quick, phase=PHASE, log_every_n_steps=LOG_EVERY, gradient_clip_val=CLIP,
                  world=dict(WORLD, kinds=list(WORLD["kinds"])), repeats=repeats,
                  timing="wall and process-CPU time per step, warm-up steps dropped")
    with tempfile.TemporaryDirectory(prefix="bench-train-step-", dir=workdir) as tmp:
        tmp = Path(tmp)
        from mmtrain.data.synth.writer import write_world

        t0 = time.perf_counter()
        write_world(tmp / "world", **WORLD, progress=False)
        world_s = time.perf_counter() - t0
        run_cfg = compose(tmp, params)
        model_cfg = dataclasses.asdict(run_cfg.model["t2i"])
        params.update(optimizer=dataclasses.asdict(run_cfg.phases[0].optimizer),
                      scheduler=dataclasses.asdict(run_cfg.phases[0].scheduler),
                      seed=run_cfg.seed,
                      model={"name": "t2i/tiny", "config": model_cfg,
                             "config_sha256": hashlib.sha256(json.dumps(
                                 model_cfg, sort_keys=True).encode()).hexdigest()[:16]})
        per_repeat = []
        for r in range(repeats):
            first = "mmtrain" if r % 2 == 0 else "baseline"  # sequential mode only
            per_repeat.append(one_repeat(run_cfg, tmp / f"r{r}", params, first))
            params["model"].update(per_repeat[-1].pop("model_size"))
    return summarize(params, per_repeat, world_s)


# ---- setup ----------------------------------------------------------------------------
def quiet() -> None:
    import lightning  # noqa: F401  (importing it resets its loggers to INFO)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def compose(tmp: Path, params: dict):
    """The t2i_pretrain recipe's `t2i_finetune` phase, shortened to the benchmark's steps."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from benchmarks.harness import ROOT
    from mmtrain.config.validate import validate

    overrides = [
        "+recipe=t2i_pretrain", f"data.root={tmp / 'world'}", "data.synthetic=null",
        f"data.batch_size={params['batch_size']}", "data.num_workers=0",
        f"paths.runs_dir={tmp / 'runs'}", "name=train_step", "seed=0",
        "logger=csv", "callbacks.progress_bar=false", "callbacks.export_at_end=false",
        f"callbacks.checkpoint.every_n_steps={params['steps'] * 1000}",
        f"trainer.log_every_n_steps={LOG_EVERY}", f"trainer.gradient_clip_val={CLIP}",
        "trainer.gradient_clip_algorithm=norm", "trainer.limit_val_batches=0",
        "trainer.accelerator=cpu", "trainer.precision=32-true",
        "trainer.accumulate_grad_batches=1", "strategy=auto",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    run = validate(cfg)
    phase = next(p for p in run.phases if p.name == PHASE)
    run.phases = [dataclasses.replace(phase, steps=params["steps"], val_every_n_steps=0)]
    return run


def build_model(run):
    """The family modules exactly as run_curriculum builds them: seeded, then built."""
    import lightning as L

    from mmtrain.curriculum.runner import build_families

    L.seed_everything(run.seed, workers=True, verbose=False)
    return build_families(run)


# ---- one repeat -----------------------------------------------------------------------
def one_repeat(run, workdir: Path, params: dict, first: str) -> dict:
    import torch

    from mmtrain.curriculum.joint import JointModule

    families = build_model(run)
    joint = JointModule(families, seed=run.seed, samples_dir=str(workdir / "samples"))
    joint.set_phase(run.phases[0], 0, 0)
    baseline_model = build_model(run)["t2i"]
    initial = joint.families["t2i"].state_dict()
    same_init = all(torch.equal(v, baseline_model.state_dict()[k])
                    for k, v in tensors_of(initial).items())
    if not same_init:  # construction is not deterministic: report it, start both equal
        baseline_model.load_state_dict(initial)
    out = {"initial_weights_identical": same_init, "first": first, "model_size": {
        "parameters": sum(p.numel() for p in baseline_model.parameters()),
        "trainable": sum(p.numel() for p in joint.parameters() if p.requires_grad),
        "state_tensors": len(initial)}}
    if params["mode"] == "interleaved":
        baseline = PlainLoop(run, baseline_model, workdir / "baseline")
        out["mmtrain"] = train_mmtrain(run, joint, workdir / "mmtrain", interleave=baseline)
        out["baseline"] = baseline.finish()
    else:
        for side in (first, "baseline" if first == "mmtrain" else "mmtrain"):
            if side == "mmtrain":
                out["mmtrain"] = train_mmtrain(run, joint, workdir / "mmtrain")
            else:
                out["baseline"] = train_baseline(run, baseline_model, workdir / "baseline")
    out.update(compare(joint.families["t2i"].state_dict(), baseline_model.state_dict()))
    w, n = params["warmup"], params["steps"]
    if n - 1 - w < 1:
        raise ValueError(f"steps={n} leaves nothing to time after warmup={w}")
    for side in ("mmtrain", "baseline"):
        steady = out[side].pop("durations")[w:n - 1]  # the same steps on both sides
        out[side]["step_s"] = sum(d[0] for d in steady) / len(steady)
        out[side]["cpu_step_s"] = sum(d[1] for d in steady) / len(steady)
        out[side]["median_step_s"] = sorted(d[0] for d in steady)[len(steady) // 2]
    out["ratio"] = out["mmtrain"]["step_s"] / out["baseline"]["step_s"]
    out["cpu_ratio"] = out["mmtrain"]["cpu_step_s"] / out["baseline"]["cpu_step_s"]
    return out


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def step_timer(interleave: PlainLoop | None):
    """A callback that records the start (wall, process CPU) of every training step and,
    when interleaving, runs the baseline's step of the same index first, timing it apart."""
    import lightning as L
    import torch

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.starts: list[tuple[float, float]] = []
            self.inside: list[tuple[float, float]] = []  # baseline time inside each step

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.starts.append(_clock())
            if interleave is not None:
                with torch.enable_grad():
                    self.inside.append(interleave.step(len(self.starts) - 1))

        def durations(self) -> list[tuple[float, float]]:
            inside = self.inside or [(0.0, 0.0)] * len(self.starts)
            return [(b[0] - a[0] - x[0], b[1] - a[1] - x[1])
                    for a, b, x in zip(self.starts, self.starts[1:], inside, strict=False)]

    return StepTimer()


def train_mmtrain(run, joint, workdir: Path, interleave: PlainLoop | None = None) -> dict:
    from mmtrain.curriculum.runner import build_trainer, codecs
    from mmtrain.data.module import PhaseData
    from mmtrain.data.position import DataPosition
    from mmtrain.run.directory import RunDir
    from mmtrain.run.loggers import build_loggers

    phase = run.phases[0]
    rd = RunDir(workdir)
    t0 = time.perf_counter()
    position = DataPosition()
    data = PhaseData(run.data, phase, codecs(dict(joint.families.items())),
                     seed=run.seed, limit_val_batches=run.trainer.limit_val_batches,
                     position=position)
    trainer = build_trainer(run, phase, 0, rd, build_loggers(run, rd), position, joint)
    timer = step_timer(interleave)
    trainer.callbacks.append(timer)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the phase-0 model summary table
        trainer.fit(joint, datamodule=data)
    t2 = time.perf_counter()
    if trainer.global_step != phase.steps or len(timer.starts) != phase.steps:
        raise RuntimeError(f"mmtrain ran {trainer.global_step} steps "
                           f"({len(timer.starts)} timed) of {phase.steps}")
    logged = list((workdir / "metrics").glob("*.csv"))
    return {"durations": timer.durations(), "setup_s": t1 - t0,
            "fit_s": t2 - t1 - sum(x[0] for x in timer.inside),
            "csv_rows": _rows(logged[0]) if logged else 0}


class PlainLoop:
    """The loop a PyTorch user would write for the same training, cut into `step(i)` so
    that it can also run one step at a time between mmtrain's steps (interleaved mode)."""

    def __init__(self, run, model, workdir: Path) -> None:
        import torch
        from torch.utils.data import DataLoader

        from mmtrain.curriculum.joint import lr_lambda
        from mmtrain.curriculum.runner import codecs
        from mmtrain.data.module import PhaseData

        t0 = time.perf_counter()
        self.phase, self.seed, self.model = run.phases[0], run.seed, model
        data = run.data
        # The same stream, shards and batch order as mmtrain's PhaseData, rank 0 of 1.
        stream = PhaseData(data, self.phase, codecs({"t2i": model}), seed=run.seed,
                           limit_val_batches=0).stream(rank=0, world_size=1)
        self.batches = iter(DataLoader(stream, batch_size=None, num_workers=data.num_workers))
        # The phase: train the text encoder and UNet, freeze the VAE.
        model.train()
        model.requires_grad_(True)
        model.vae.requires_grad_(False)
        model.latent_scale.zero_()  # measured on the first diffusion step (on_phase_start)
        self.params = [p for p in model.parameters() if p.requires_grad]
        o = self.phase.optimizer
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, betas=tuple(o.betas),
                                           eps=o.eps, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(self.phase))
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "metrics.csv"
        self.log_file = open(self.log_path, "w", newline="")
        self.log = csv.writer(self.log_file)
        self.log.writerow(["step", "loss", "lr"])
        self.durations: list[tuple[float, float]] = []
        self.setup_s = time.perf_counter() - t0

    def step(self, step: int) -> tuple[float, float]:
        import torch

        start = _clock()
        batch = next(self.batches)
        # Keyed by (seed, step, rank) like mmtrain's JointModule.step_generator.
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1009 + 0)
        self.optimizer.zero_grad()
        loss = self.model.losses(batch, {"diffusion"}, generator)["diffusion"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.optimizer.step()
        self.scheduler.step()
        if (step + 1) % LOG_EVERY == 0:
            self.log.writerow([step, loss.item(), self.scheduler.get_last_lr()[0]])
        end = _clock()
        self.durations.append((end[0] - start[0], end[1] - start[1]))
        return self.durations[-1]

    def finish(self) -> dict:
        self.log_file.close()
        return {"durations": self.durations, "setup_s": self.setup_s,
                "fit_s": self.setup_s + sum(d[0] for d in self.durations),
                "csv_rows": _rows(self.log_path)}


def train_baseline(run, model, workdir: Path) -> dict:
    """Sequential mode: the plain loop on its own, timed start to start like mmtrain."""
    loop = PlainLoop(run, model, workdir)
    starts = []
    for step in range(run.phases[0].steps):
        starts.append(_clock())
        loop.step(step)
    out = loop.finish()
    out["durations"] = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(starts, starts[1:], strict=False)]
    return out


def _rows(path: Path) -> int:
    with open(path) as f:
        return max(0, sum(1 for _ in f) - 1)


# ---- comparing ------------------------------------------------------------------------
def tensors_of(state: dict) -> dict:
    """The weights and buffers of a state_dict, without modules' extra state (the EMA,
    which the plain loop does not keep)."""
    import torch

    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def compare(a: dict, b: dict) -> dict:
    import torch

    a, b = tensors_of(a), tensors_of(b)
    keys = sorted(set(a) | set(b))
    mismatched = [k for k in keys if k not in a or k not in b or not torch.equal(a[k], b[k])]
    worst, worst_key = 0.0, None
    for k in mismatched:
        if k in a and k in b and a[k].shape == b[k].shape:
            diff = (a[k].double() - b[k].double()).abs().max().item()
            if diff >= worst:
                worst, worst_key = diff, k
    return {"bit_identical": not mismatched, "tensors": len(keys),
            "tensors_different": len(mismatched), "max_abs_diff": worst,
            "max_abs_diff_tensor": worst_key, "different_tensors": mismatched[:10]}


def summarize(params: dict, per_repeat: list[dict], world_s: float) -> dict:
    from benchmarks.harness import median

    def med(side: str, key: str) -> float:
        return median([r[side][key] for r in per_repeat])

    def ms(x: float) -> float:
        return round(x * 1e3, 3)

    ratio = med("mmtrain", "step_s") / med("baseline", "step_s")
    cpu_ratio = med("mmtrain", "cpu_step_s") / med("baseline", "cpu_step_s")
    results = {
        # wall time per step: steady-state mean per repeat, median over repeats
        "mmtrain_step_ms": ms(med("mmtrain", "step_s")),
        "baseline_step_ms": ms(med("baseline", "step_s")),
        "ratio": round(ratio, 4),
        "ratio_per_repeat_median": round(median([r["ratio"] for r in per_repeat]), 4),
        "overhead_ms_per_step": ms(med("mmtrain", "step_s") - med("baseline", "step_s")),
        # the same from process CPU time (less sensitive to other processes' load)
        "mmtrain_cpu_step_ms": ms(med("mmtrain", "cpu_step_s")),
        "baseline_cpu_step_ms": ms(med("baseline", "cpu_step_s")),
        "cpu_ratio": round(cpu_ratio, 4),
        "cpu_ratio_per_repeat_median": round(median([r["cpu_ratio"] for r in per_repeat]), 4),
        "cpu_overhead_ms_per_step": ms(med("mmtrain", "cpu_step_s")
                                       - med("baseline", "cpu_step_s")),
        # median single-step wall time (robust to load spikes)
        "mmtrain_median_step_ms": ms(med("mmtrain", "median_step_s")),
        "baseline_median_step_ms": ms(med("baseline", "median_step_s")),
        # end to end: trainer.fit() vs the loop (optimizer and iterator creation included)
        "mmtrain_fit_s": round(med("mmtrain", "fit_s"), 3),
        "baseline_loop_s": round(med("baseline", "fit_s"), 3),
        "mmtrain_setup_s": round(med("mmtrain", "setup_s"), 3),
        "bit_identical": all(r["bit_identical"] for r in per_repeat),
        "initial_weights_identical": all(r["initial_weights_identical"] for r in per_repeat),
        "max_abs_diff": max(r["max_abs_diff"] for r in per_repeat),
        "world_s": round(world_s, 2),
        "per_repeat": [
            {"first": r["first"] if params["mode"] == "sequential" else "interleaved",
             "mmtrain_step_ms": ms(r["mmtrain"]["step_s"]),
             "baseline_step_ms": ms(r["baseline"]["step_s"]),
             "ratio": round(r["ratio"], 4),
             "mmtrain_cpu_step_ms": ms(r["mmtrain"]["cpu_step_s"]),
             "baseline_cpu_step_ms": ms(r["baseline"]["cpu_step_s"]),
             "cpu_ratio": round(r["cpu_ratio"], 4),
             "bit_identical": r["bit_identical"], "tensors": r["tensors"],
             "tensors_different": r["tensors_different"], "max_abs_diff": r["max_abs_diff"],
             "max_abs_diff_tensor": r["max_abs_diff_tensor"],
             "mmtrain_csv_rows": r["mmtrain"]["csv_rows"],
             "baseline_csv_rows": r["baseline"]["csv_rows"]}
            for r in per_repeat],
    }
    # The headline ratio: the median of the per-repeat ratios (each repeat's two sides ran
    # under the same conditions, interleaved step by step in the default mode).
    paired = results["ratio_per_repeat_median"]
    checks = {"bit_identical": results["bit_identical"]}
    if not params["quick"]:  # a quick run is a smoke test, too short to time
        checks["ratio_le_1.02"] = paired <= 1.02
    rep = results["per_repeat"]
    table = [
        ["", "wall ms/step", "per repeat", "CPU ms/step", "per repeat", "end-to-end s"],
        ["baseline (plain loop)", f"{results['baseline_step_ms']:.1f}",
         " ".join(f"{p['baseline_step_ms']:.0f}" for p in rep),
         f"{results['baseline_cpu_step_ms']:.1f}",
         " ".join(f"{p['baseline_cpu_step_ms']:.0f}" for p in rep),
         f"{results['baseline_loop_s']:.2f}"],
        ["mmtrain (Lightning)", f"{results['mmtrain_step_ms']:.1f}",
         " ".join(f"{p['mmtrain_step_ms']:.0f}" for p in rep),
         f"{results['mmtrain_cpu_step_ms']:.1f}",
         " ".join(f"{p['mmtrain_cpu_step_ms']:.0f}" for p in rep),
         f"{results['mmtrain_fit_s']:.2f}"],
        ["ratio mmtrain/baseline", f"{paired:.4f}", " ".join(f"{p['ratio']:.3f}" for p in rep),
         f"{results['cpu_ratio_per_repeat_median']:.4f}",
         " ".join(f"{p['cpu_ratio']:.3f}" for p in rep),
         f"{results['mmtrain_fit_s'] / results['baseline_loop_s']:.3f}"],
        ["ratio of the medians", f"{ratio:.4f}", "", f"{cpu_ratio:.4f}", "", ""],
        ["overhead ms/step", f"{results['overhead_ms_per_step']:.1f}", "",
         f"{results['cpu_overhead_ms_per_step']:.1f}", "", ""],
        ["final weights", "bit-identical" if results["bit_identical"]
         else f"DIFFER (max |diff| {results['max_abs_diff']:.3g})", "", "", "", ""],
    ]
    return {"params": params, "results": results, "checks": checks, "table": table}
