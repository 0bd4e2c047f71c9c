"""Typed schemas for every config group.

Composed configs are checked against these before anything is built (see validate.py).
Field metadata carries the checks a type cannot express: `choices` and numeric bounds
(`ge`, `gt`, `le`). Family model configs live with their family and are looked up in the
family registry by the key under `model:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def choice(default: Any, *options: Any) -> Any:
    return field(default=default, metadata={"choices": options})


def bounded(default: Any, **bounds: float) -> Any:
    return field(default=default, metadata=bounds)


@dataclass
class PathsConfig:
    runs_dir: str = "runs"  # relative paths resolve against the launch directory
    cache_dir: str = "~/.cache/mmtrain"


@dataclass
class SyntheticConfig:
    """Generate the embedded synthetic world into `data.root` when it is missing."""

    seed: int = 0
    kinds: list[str] = field(default_factory=lambda: ["scenes"])
    train_samples: int = bounded(4096, ge=1)
    val_samples: int = bounded(256, ge=1)
    shard_size: int = bounded(1024, ge=1)
    scene_size: int = bounded(64, ge=8)


@dataclass
class SourceConfig:
    """A set of webdataset shards: a directory, a glob or a brace pattern per split."""

    train: str = "???"
    val: str | None = None
    weight: float = bounded(1.0, gt=0)  # share of its family's samples, relative to the others


@dataclass
class DataConfig:
    root: str = "???"
    synthetic: SyntheticConfig | None = None
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    # family -> names of the sources that feed it
    family_sources: dict[str, list[str]] = field(default_factory=dict)
    batch_size: int = bounded(32, ge=1)
    val_batch_size: int = bounded(64, ge=1)
    num_workers: int = bounded(0, ge=0)
    shuffle_buffer: int = bounded(512, ge=0)
    # epoch: every sample once per epoch across all ranks and workers, reshuffled each
    # epoch; resampled: shards drawn with replacement (endless streams, few shards)
    sampling: str = choice("epoch", "epoch", "resampled")
    max_skip_rate: float = bounded(0.1, ge=0, le=0.99)  # stop a run whose data is broken
    skip_rate_min_samples: int = bounded(200, ge=1)  # samples read before the rate counts
    # resume with other ranks/workers/shards: start the next epoch instead of refusing
    reshard_on_resume: bool = False


@dataclass
class OptimizerConfig:
    name: str = choice("adamw", "adamw", "adam", "sgd")
    lr: float = bounded(1e-3, gt=0, le=10)
    weight_decay: float = bounded(0.0, ge=0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = bounded(1e-8, gt=0)


@dataclass
class SchedulerConfig:
    name: str = choice("constant", "constant", "cosine", "linear")
    warmup_steps: int = bounded(0, ge=0)
    min_lr_ratio: float = bounded(0.0, ge=0, le=1)


@dataclass
class PhaseConfig:
    """One stage of a curriculum (see mmtrain/curriculum/)."""

    name: str = "???"
    families: list[str] = field(default_factory=list)
    steps: int = bounded(100, ge=1)
    mix: dict[str, float] = field(default_factory=dict)  # family -> sampling weight
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    freeze: list[str] = field(default_factory=list)  # module paths, e.g. "t2i.vae"
    # family -> loss -> weight, e.g. {t2i: {diffusion: 1.0}}; a family left out trains
    # with its default losses
    loss_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    val_every_n_steps: int = bounded(0, ge=0)  # 0: validate at the end of the phase only


@dataclass
class TrainerConfig:
    accelerator: str = choice("auto", "auto", "cpu", "gpu", "cuda", "mps")
    devices: Any = 1  # an int, a list of device ids, or "auto"
    num_nodes: int = bounded(1, ge=1)
    precision: str = choice(
        "32-true", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"
    )
    accumulate_grad_batches: int = bounded(1, ge=1)
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = choice("norm", "norm", "value")
    log_every_n_steps: int = bounded(10, ge=1)
    limit_val_batches: int = bounded(4, ge=0)
    num_threads: int | None = None  # torch intra-op threads; None leaves torch's default
    deterministic: bool = False


@dataclass
class StrategyConfig:
    name: str = choice("auto", "auto", "ddp")
    process_group_backend: str | None = None  # None: nccl on GPU, gloo on CPU
    find_unused_parameters: bool = False


@dataclass
class WandbConfig:
    project: str = "mmtrain"
    entity: str | None = None
    mode: str = choice("auto", "auto", "online", "offline", "disabled")  # auto: offline without a key
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    name: str = choice("csv", "csv", "wandb", "tensorboard", "none")
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class CheckpointConfig:
    every_n_steps: int = bounded(100, ge=1)
    keep_last: int = bounded(2, ge=-1)  # -1 keeps all step checkpoints


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    progress_bar: bool = True
    export_at_end: bool = True  # write runs/<name>/export when the schedule completes


@dataclass
class DebugConfig:
    kill_at_step: int | None = None  # SIGKILL this process after that global step (resume tests)


@dataclass
class RunConfig:
    name: str | None = None  # None: derived once in the launcher (recipe, SLURM job id, time)
    recipe: str | None = None
    seed: int = 0
    resume: str = "auto"  # auto | never | a checkpoint path
    validate: bool = False  # compose, validate and build on the meta device, then exit
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)  # family -> family config
    phases: list[PhaseConfig] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
