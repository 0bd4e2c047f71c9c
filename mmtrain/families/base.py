"""What every family module shares: the loss contract the curriculum drives.

A family is a LightningModule that can train on its own (`training_step` sums its
default losses) and inside the joint curriculum module, which calls `losses()` with the
phase's active losses and does all logging, file writing and optimisation itself.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn


class FamilyModule(L.LightningModule):
    name: str = ""
    default_loss_weights: dict[str, float] = {}

    def __init__(self) -> None:
        super().__init__()
        # Mean across data-parallel ranks; the curriculum module installs the strategy's.
        self.reduce_mean: Callable[[Tensor], Tensor] = lambda t: t

    def sample_decoder(self) -> Callable[[dict], dict]:
        """raw webdataset sample -> decoded sample; raises mmtrain.data.shards.BadSample
        (with a reason) for a sample to skip (see batch.py)."""
        raise NotImplementedError

    def check_source(self, source: str, shards: list[str]) -> None:
        """Refuse (DataError naming the fix) a source this family cannot train on beyond
        missing fields, e.g. latents encoded by another autoencoder. Called before training."""

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        """field -> the sample extensions that can carry it; checked against every source
        before training."""
        raise NotImplementedError

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        raise NotImplementedError

    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        """-> (metrics, media): media maps a name to a PIL image (a sample grid etc.)."""
        return {}, {}

    def after_optimizer_step(self, active: set[str]) -> None:
        """Called after each optimizer step of a phase that trains `active` losses of this
        family (EMA updates and the like)."""

    def on_phase_start(self, active: set[str]) -> None:
        """Called before a phase trains with `active` losses of this family."""

    # ---- GAN parts (mmtrain/curriculum/adversarial.py drives them) -----------------------
    def discriminators(self, active: set[str]) -> dict[str, nn.Module]:
        """The discriminator submodules that train in a phase with `active` losses; they get
        their own optimizer (`adversarial_config()`) and never the generator's. {}: none."""
        return {}

    def adversarial_config(self):
        """-> mmtrain.families.shared.gan.AdversarialConfig of this family's discriminators."""
        raise NotImplementedError(f"{self.name} has discriminators but no adversarial_config()")

    def discriminator_losses(self, batch: dict, active: set[str], generator: torch.Generator,
                             step: int) -> dict[str, Tensor]:
        """The discriminators' losses on the batch that `losses()` just saw (use the fakes it
        cached, detached). `step` counts discriminator steps (for lazy R1 and the like)."""
        raise NotImplementedError

    # Standalone use (Trainer.fit(family_module, ...)): the family's default losses.
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.global_step)
        losses = self.losses(batch, set(self.default_loss_weights), generator)
        total = sum(self.default_loss_weights[k] * v for k, v in losses.items())
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True)
        return total

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-3)
