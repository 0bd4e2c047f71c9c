"""The discriminator side of a GAN phase, as config: kept free of torch so that family
config classes (which validation imports without torch) can use it."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded, choice


@dataclass
class AdversarialConfig:
    """The discriminator side of a GAN phase: its optimizer and schedule."""

    loss: str = choice("hinge", "hinge", "non_saturating")
    lr: float = bounded(2e-4, gt=0)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = bounded(0.0, ge=0)
    # D steps per G step: the generator trains on every k-th batch, D on every batch
    d_steps_per_g_step: int = bounded(1, ge=1)
    # R1 gradient penalty on real inputs (StyleGAN2's lazy form: every r1_every D steps,
    # scaled by r1_every); 0 disables it
    r1_weight: float = bounded(0.0, ge=0)
    r1_every: int = bounded(16, ge=1)
