"""Runs a curriculum: one Lightning Trainer per phase over the same joint module.

A phase starts from the weights the previous phase ended with. Resume reads
`last.ckpt`: a finished phase's checkpoint starts the next phase from its weights, an
unfinished one continues inside its phase (optimizer, step and data position restored).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from mmtrain.config.schema import PhaseConfig, RunConfig
from mmtrain.config.validate import phase_fingerprint
from mmtrain.curriculum import adversarial
from mmtrain.curriculum.joint import JointModule
from mmtrain.data.module import Codec, PhaseData
from mmtrain.data.position import DataPosition
from mmtrain.families.registry import FAMILIES
from mmtrain.parallel import frozen
from mmtrain.parallel.checkpoint import AtomicCheckpointIO, read_checkpoint
from mmtrain.run.callbacks import CurriculumState, KillAtStep, PhaseProgressBar
from mmtrain.run.directory import RunDir
from mmtrain.run.loggers import build_loggers, finish_loggers

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    pass


@dataclass
class ResumePoint:
    phase_index: int
    ckpt_path: str | None  # continue inside the phase from here; None: start it fresh
    weights: dict | None = None  # a finished phase's weights to start the next one from


def build_families(run: RunConfig) -> dict:
    return {name: FAMILIES[name].module_cls()(cfg) for name, cfg in run.model.items()}


def codecs(families: dict) -> dict[str, Codec]:
    return {name: Codec(module.sample_decoder(), module.collate, module.required_fields(),
                        module.check_source)
            for name, module in families.items()}


def find_resume_point(run: RunConfig, rd: RunDir) -> ResumePoint:
    if run.resume == "never":
        if rd.last_checkpoint.exists():
            raise ResumeError(
                f"{rd.path} already holds checkpoints and resume=never; pick another "
                "`name=` or continue it with resume=auto")
        return ResumePoint(0, None)
    path = rd.last_checkpoint if run.resume == "auto" else run.resume
    if run.resume == "auto" and not rd.last_checkpoint.exists():
        return ResumePoint(0, None)
    ckpt = read_checkpoint(path)
    state = ckpt.get("mmtrain")
    if state is None:
        raise ResumeError(f"{path} was not written by an mmtrain curriculum (no 'mmtrain' state)")
    _check_schedule(state["schedule"], phase_fingerprint(run.phases), path)
    index = state["phase_index"]
    log.info("resuming %s: phase %d (%s) at step %d%s", path, index, state["phase_name"],
             state["phase_step"], " (finished)" if state["completed"] else "")
    if state["completed"]:
        return ResumePoint(index + 1, None, weights=frozen.complete(ckpt, path)["state_dict"])
    return ResumePoint(index, str(path))


def _check_schedule(saved: list[dict], current: list[dict], path) -> None:
    if saved == current:
        return
    diffs = [f"phase {i}: {_describe(a, b)}" for i, (a, b) in enumerate(zip(saved, current, strict=False))
             if a != b]
    if len(saved) != len(current):
        diffs.append(f"{len(saved)} phases then, {len(current)} now")
    raise ResumeError(
        f"cannot resume from {path}: the curriculum changed since it was written "
        f"({'; '.join(diffs)}). Restore the original recipe, or start a new run "
        "(a new `name=`, or resume=never in a fresh directory).")


def _describe(a: dict, b: dict) -> str:
    keys = [k for k in a if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys)


def build_trainer(run: RunConfig, phase: PhaseConfig, index: int, rd: RunDir, loggers,
                  position: DataPosition, joint: JointModule) -> L.Trainer:
    t = run.trainer
    accumulate = t.accumulate_grad_batches
    clip_val = t.gradient_clip_val
    if joint.adversarial:  # manual optimization: the joint module accumulates and clips
        adversarial.check_precision(t.precision, phase.name)
        joint.accumulate, joint.clip = accumulate, (clip_val, t.gradient_clip_algorithm)
        clip_val = None
    callbacks = [
        CurriculumState(run.phases, index),
        position,
        ModelCheckpoint(
            dirpath=rd.checkpoints, filename=f"phase{index}-{phase.name}-{{step}}",
            every_n_train_steps=run.callbacks.checkpoint.every_n_steps, save_last=True,
            save_top_k=run.callbacks.checkpoint.keep_last, monitor="step", mode="max",
            auto_insert_metric_name=False, enable_version_counter=False,
        ),
    ]
    if run.callbacks.progress_bar:
        callbacks.append(PhaseProgressBar(
            f"phase {index + 1}/{len(run.phases)} {phase.name}", phase.steps, accumulate))
    if run.debug.kill_at_step is not None:
        callbacks.append(KillAtStep(run.debug.kill_at_step))
    val_every = phase.val_every_n_steps or phase.steps
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(run, joint.adversarial or len(phase.families) > 1),
        precision=t.precision,
        max_steps=phase.steps, max_epochs=-1,
        accumulate_grad_batches=1 if joint.adversarial else accumulate,
        gradient_clip_val=clip_val, gradient_clip_algorithm=t.gradient_clip_algorithm,
        log_every_n_steps=t.log_every_n_steps,
        val_check_interval=val_every * accumulate, check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches, num_sanity_val_steps=0,
        logger=loggers or False, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        enable_progress_bar=run.callbacks.progress_bar, enable_model_summary=index == 0,
        default_root_dir=rd.path, deterministic=t.deterministic,
        use_distributed_sampler=False,
    )


def build_strategy(run: RunConfig, some_params_idle: bool = False):
    """some_params_idle: a step leaves trainable parameters without gradients, which DDP
    must be told about: a GAN phase's generator step (the discriminators), or a phase of
    several families (each batch comes from one family, the others sit out)."""
    s = run.strategy
    if s.name == "ddp":
        return DDPStrategy(process_group_backend=s.process_group_backend,
                           find_unused_parameters=s.find_unused_parameters or some_params_idle)
    return "auto"


def run_curriculum(run: RunConfig, rd: RunDir) -> JointModule:
    if run.trainer.num_threads:
        torch.set_num_threads(run.trainer.num_threads)
    L.seed_everything(run.seed, workers=True, verbose=False)
    families = build_families(run)
    joint = JointModule(families, seed=run.seed, samples_dir=str(rd.samples))
    start = find_resume_point(run, rd)
    if start.weights is not None:
        joint.load_state_dict(start.weights)
    loggers = build_loggers(run, rd)
    for index, phase in enumerate(run.phases):
        if index < start.phase_index:
            continue
        joint.set_phase(phase, index, sum(p.steps for p in run.phases[:index]))
        joint.frozen_path = rd.checkpoints / f"frozen-phase{index}.safetensors"
        joint.frozen_earlier = [rd.checkpoints / f"frozen-phase{i}.safetensors"
                                for i in reversed(range(index))]
        position = DataPosition(reshard_on_resume=run.data.reshard_on_resume)
        # Each phase reads its own sample order (phase 0 keeps the run's seed).
        data = PhaseData(run.data, phase, codecs(families), seed=run.seed + 1_000_003 * index,
                         limit_val_batches=run.trainer.limit_val_batches, position=position)
        trainer = build_trainer(run, phase, index, rd, loggers, position, joint)
        trainer.fit(joint, datamodule=data,
                    ckpt_path=start.ckpt_path if index == start.phase_index else None)
        if trainer.global_step < phase.steps:
            raise RuntimeError(f"phase {phase.name} stopped at step {trainer.global_step} "
                               f"of {phase.steps}")
        if phase.steps % run.callbacks.checkpoint.every_n_steps:
            # ModelCheckpoint wrote no last.ckpt at the final step: write the one that
            # marks the phase finished (otherwise it already did; a second write of a
            # large model + optimizer state would only cost time).
            trainer.save_checkpoint(rd.last_checkpoint)
    finish_loggers(loggers)
    return joint
