"""The module every phase trains: the run's families side by side, driven by the phase.

The phase decides which families train, which of their losses count and with what
weights, which modules are frozen, and the optimizer. Batches carry a `family` key (see
mmtrain/data/stream.py) that routes them. All logging happens here, against the run's
absolute step, so curves continue across phases.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from mmtrain.config.schema import PhaseConfig
from mmtrain.curriculum import adversarial
from mmtrain.families.base import FamilyModule
from mmtrain.parallel import frozen


class JointModule(L.LightningModule):
    def __init__(self, families: dict[str, FamilyModule], *, seed: int = 0,
                 samples_dir: str | None = None) -> None:
        super().__init__()
        self.families = nn.ModuleDict(families)
        self.seed = seed
        self.samples_dir = Path(samples_dir) if samples_dir else None
        self.phase: PhaseConfig | None = None
        self.phase_index = 0
        self.step_offset = 0  # steps of the phases before this one
        self.weights: dict[str, dict[str, float]] = {}
        # Where this phase keeps its frozen parameters (set by the runner; None: inline)
        self.frozen_path: Path | None = None
        self.frozen_earlier: list[Path] = []  # earlier phases' files, newest first
        self.frozen_refs: list[dict] | None = None
        for family in self.families.values():
            family.reduce_mean = self._reduce_mean
        # GAN phases optimise by hand (adversarial.py); the runner sets these from the
        # trainer config, which Lightning cannot apply under manual optimization.
        self.accumulate = 1
        self.clip: tuple[float | None, str] = (None, "norm")

    # ---- phase plumbing ---------------------------------------------------------------
    def set_phase(self, phase: PhaseConfig, index: int, step_offset: int) -> None:
        self.phase, self.phase_index, self.step_offset = phase, index, step_offset
        self.weights = {}
        for name in phase.families:
            family = self.families[name]
            given = phase.loss_weights.get(name) or family.default_loss_weights
            self.weights[name] = {k: w for k, w in given.items() if w > 0}
        self.apply_freeze_plan(phase)
        for name in phase.families:
            self.families[name].on_phase_start(set(self.weights[name]))
        self.automatic_optimization = not self.adversarial

    @property
    def adversarial(self) -> bool:
        """Does a family train discriminators in this phase (-> manual optimization)?"""
        return bool(adversarial.phase_discriminators(self))

    def apply_freeze_plan(self, phase: PhaseConfig) -> None:
        """Trains the phase's families except the frozen paths; everything else frozen."""
        self.requires_grad_(False)
        for name in phase.families:
            self.families[name].requires_grad_(True)
        for path in phase.freeze:
            self.submodule(path).requires_grad_(False)

    def submodule(self, path: str) -> nn.Module:
        """'t2i.vae' -> families['t2i'].vae, with an error listing what exists."""
        module: nn.Module = self.families
        for part in path.split("."):
            children = dict(module.named_children())
            if part not in children:
                raise ValueError(
                    f"freeze: no module '{path}' ('{part}' is not one of "
                    f"{', '.join(children) or 'nothing'})"
                )
            module = children[part]
        return module

    @property
    def absolute_step(self) -> int:
        return self.step_offset + self.global_step

    def _reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        if self._trainer is None:
            return value
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    def step_generator(self) -> torch.Generator:
        """Randomness (noise, timesteps, dropout of captions) keyed by the absolute step and
        rank, so a resumed run draws exactly what the uninterrupted run drew."""
        return torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.absolute_step) * 1009 + self.global_rank)

    # ---- steps ------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if not self.automatic_optimization:
            return adversarial.training_step(self, batch, batch_idx)
        name = batch["family"]
        losses = self.families[name].losses(batch, set(self.weights[name]), self.step_generator())
        total = sum(self.weights[name][k] * v for k, v in losses.items())
        self.log_losses(name, losses, batch, total)
        return total

    def log_losses(self, family: str, losses: dict, batch: dict, total=None) -> None:
        bs = batch_size(batch)
        self.log_dict({f"train/{family}/{k}": v for k, v in losses.items()}, batch_size=bs)
        if total is not None:
            self.log("train/loss", total, prog_bar=True, batch_size=bs)
            self.log("step", float(self.absolute_step), batch_size=bs)  # the loggers' x-axis
            self.log("phase", float(self.phase_index), batch_size=bs)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = batch["family"]
        active = set(self.families[name].default_loss_weights) | set(self.weights.get(name, {}))
        generator = torch.Generator().manual_seed(self.seed + batch_idx)
        for key, value in self.families[name].losses(batch, active, generator).items():
            self.log(f"val/{name}/{key}", value, add_dataloader_idx=False, sync_dist=True,
                     batch_size=batch_size(batch))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for name in self.phase.families:
            metrics, media = self.families[name].evaluate(seed=self.seed)
            for key, value in metrics.items():  # equal on every rank: same seeds
                self.log(f"val/{name}/{key}", value, sync_dist=True)
            self._save_media(name, media)
        self.log("step", float(self.absolute_step), sync_dist=True)

    @rank_zero_only
    def _save_media(self, family: str, media: dict) -> None:
        for key, image in media.items():
            if self.samples_dir:
                self.samples_dir.mkdir(parents=True, exist_ok=True)
                image.save(self.samples_dir / f"{family}-{key}-step{self.absolute_step:06d}.png")
            for logger in self.loggers:
                if hasattr(logger, "log_image"):  # wandb
                    logger.log_image(f"samples/{family}/{key}", [image], step=self.absolute_step)
                elif hasattr(getattr(logger, "experiment", None), "add_image"):  # tensorboard
                    logger.experiment.add_image(f"samples/{family}/{key}", np.asarray(image),
                                                self.absolute_step, dataformats="HWC")

    # ---- checkpoints: frozen towers once per phase (mmtrain/parallel/frozen.py) ----------
    def on_train_start(self) -> None:
        if self.frozen_path is None or self.trainer.ckpt_path is not None:
            return  # resumed: on_load_checkpoint kept the references of the phase's files
        self.frozen_refs = None
        if frozen.frozen_parameters(self):
            refs = (frozen.write_frozen(self, self.frozen_path, self.frozen_earlier)
                    if self.global_rank == 0 else None)
            self.frozen_refs = self.trainer.strategy.broadcast(refs, src=0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.frozen_refs is not None:
            frozen.strip(checkpoint, self, self.frozen_refs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        frozen.complete(checkpoint, self.trainer.ckpt_path)
        if checkpoint.get("mmtrain", {}).get("phase_index") == self.phase_index:
            self.frozen_refs = checkpoint.get(frozen.KEY, {}).get("files")

    # ---- optimisation -----------------------------------------------------------------
    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        for name in self.phase.families:
            self.families[name].after_optimizer_step(set(self.weights[name]))

    def configure_optimizers(self):
        if self.adversarial:
            return adversarial.configure_optimizers(self, self._make_optimizer,
                                                    lr_lambda(self.phase))
        optimizer = self._make_optimizer([p for p in self.parameters() if p.requires_grad])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.phase))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _make_optimizer(self, params: list) -> torch.optim.Optimizer:
        opt = self.phase.optimizer
        if opt.name == "sgd":
            return torch.optim.SGD(params, lr=opt.lr, momentum=opt.betas[0],
                                   weight_decay=opt.weight_decay)
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                   weight_decay=opt.weight_decay)


def batch_size(batch: dict) -> int:
    """Samples in a family's batch: the length of its first tensor or list field."""
    return len(next((v for v in batch.values() if isinstance(v, torch.Tensor | list)), [0]))


def lr_lambda(phase: PhaseConfig):
    s = phase.scheduler
    total = phase.steps

    def factor(step: int) -> float:
        if step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if s.name == "constant":
            return 1.0
        progress = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if s.name == "cosine" else 1 - progress
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * decay

    return factor
