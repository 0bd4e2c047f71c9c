"""From a composed Hydra config to a finished run: name, validate, data, train, export."""

from __future__ import annotations

import logging
import os
import sys

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from mmtrain.config.schema import RunConfig
from mmtrain.config.validate import ConfigError, validate
from mmtrain.run.directory import CONFIG_ENV, RunDir, resolve_name, run_dir, write_provenance

_DIST_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launch(cfg: DictConfig) -> None:
    """The launching process: everything that must happen exactly once per run."""
    # Lightning prints through its own handler; Hydra's root handler would repeat each line.
    logging.getLogger("lightning.pytorch").propagate = False
    with open_dict(cfg):
        cfg.name = resolve_name(_peek(cfg), _multirun_job())
    try:
        run = validate(cfg)
    except ConfigError as err:
        sys.exit(f"mmtrain: {err}")
    if run.validate:
        from mmtrain.cli.validate import report_models

        report_models(run)
        return
    rd = run_dir(run)
    if _is_rank_zero():
        ensure_data(run)
        rd.path.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)),
                       rd.config_file)
        write_provenance(rd)
    os.environ[CONFIG_ENV] = str(rd.config_file)
    launched_here = {k: k in os.environ for k in _DIST_ENV}
    try:
        train(cfg, run=run, rd=rd)
    finally:
        # Lightning sets these when it spawns DDP processes; clear them so the next run of
        # a multirun sweep spawns its own processes instead of waiting for the old ones.
        for key, was_set in launched_here.items():
            if not was_set:
                os.environ.pop(key, None)


def train(cfg: DictConfig, *, run: RunConfig | None = None, rd: RunDir | None = None,
          spawned: bool = False) -> None:
    from mmtrain.curriculum.runner import run_curriculum

    run = run or validate(cfg)
    rd = rd or run_dir(run)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere+ GPUs
    joint = run_curriculum(run, rd)
    if not _is_rank_zero() or spawned:
        return
    if run.callbacks.export_at_end:
        from mmtrain.export.bundle import export_families

        export_families(joint, run, rd, rd.export)
    print(f"\nmmtrain: run finished: {rd.path}\n"
          f"  checkpoints  {rd.checkpoints}\n  samples      {rd.samples}\n"
          f"  metrics      {rd.path / 'metrics'}\n"
          + (f"  export       {rd.export}\n" if run.callbacks.export_at_end else ""))


def ensure_data(run: RunConfig) -> None:
    """Generates the embedded synthetic world on first use (a no-op once it exists)."""
    if any("photos" in run.data.family_sources.get(f, []) for f in run.model):
        from mmtrain.families.restore.photos import ensure_photos  # scikit-image photo crops

        ensure_photos(run.data.sources["photos"].train)
    syn = run.data.synthetic
    if syn is None:
        return
    from mmtrain.data.synth.writer import KINDS, write_world

    # Also the kinds the run's families read (a source named after a kind), so that
    # `+model/doc=tiny` needs no data.synthetic.kinds override.
    fed = {s for f in run.model for s in run.data.family_sources.get(f, [])}
    kinds = [k for k in KINDS if k in syn.kinds or k in fed]
    write_world(os.path.expanduser(run.data.root), seed=syn.seed, kinds=tuple(kinds),
                train_samples=syn.train_samples, val_samples=syn.val_samples,
                shard_size=syn.shard_size, scene_size=syn.scene_size, progress=True)


def _peek(cfg: DictConfig) -> RunConfig:
    """The few fields name resolution needs, before full validation."""
    return RunConfig(name=cfg.get("name"), recipe=cfg.get("recipe"))


def _multirun_job() -> int | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.job.num if hc.mode == RunMode.MULTIRUN else None


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0))) == 0 and \
        int(os.environ.get("LOCAL_RANK", 0)) == 0

