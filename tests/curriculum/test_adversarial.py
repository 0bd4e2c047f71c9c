"""GAN phases in the joint module: separate G/D optimizers, D frozen during the G step,
one counted step per update, the D:G ratio, accumulation, and a GAN that learns.

The family here is a real (tiny) GAN on 1-D data: the generator shifts and scales noise,
the discriminator is an MLP; real samples come from N(3, 0.5). Everything else is the
production path: JointModule + Lightning Trainer in manual optimization.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from mmtrain.config.schema import OptimizerConfig, PhaseConfig, SchedulerConfig
from mmtrain.curriculum import adversarial
from mmtrain.curriculum.joint import JointModule
from mmtrain.families.base import FamilyModule
from mmtrain.families.shared.gan import AdversarialConfig, discriminator_loss, generator_loss


class ToyGAN(FamilyModule):
    name = "toy"
    default_loss_weights = {"adversarial": 1.0}

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        self.config = config
        self.shift = nn.Parameter(torch.zeros(1))
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.discriminator = nn.Sequential(nn.Linear(1, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
        self.d_grads_before_d_step: list[bool] = []
        self.g_updates = 0
        self._fake: Tensor | None = None

    def losses(self, batch, active, generator):
        z = torch.randn(batch["real"].shape, generator=generator)
        fake = self.shift + self.log_scale.exp() * z
        self._fake = fake.detach()
        return {"adversarial": generator_loss([self.discriminator(fake)], self.config.loss)}

    def discriminators(self, active):
        return {"d": self.discriminator} if "adversarial" in active else {}

    def adversarial_config(self):
        return self.config

    def discriminator_losses(self, batch, active, generator, step):
        # the generator's backward must not have reached the discriminator
        self.d_grads_before_d_step.append(all(p.grad is None for p in self.discriminator.parameters()))
        real = self.discriminator(batch["real"])
        return {"gan": discriminator_loss([real], [self.discriminator(self._fake)], self.config.loss)}

    def after_optimizer_step(self, active):
        self.g_updates += 1


class RealSamples(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield {"family": "toy", "real": 3.0 + 0.5 * torch.randn(64, 1, generator=g)}


def fit(family: ToyGAN, steps: int, *, accumulate: int = 1, precision: str = "32-true",
        lr: float = 0.05) -> tuple[JointModule, L.Trainer]:
    joint = JointModule({"toy": family})
    phase = PhaseConfig(name="gan", families=["toy"], steps=steps,
                        optimizer=OptimizerConfig(name="adam", lr=lr, betas=[0.5, 0.999]),
                        scheduler=SchedulerConfig(name="constant", warmup_steps=1))
    joint.set_phase(phase, 0, 0)
    assert joint.adversarial and not joint.automatic_optimization
    adversarial.check_precision(precision, phase.name)
    joint.accumulate = accumulate
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    loader = DataLoader(RealSamples(), batch_size=None)
    trainer.fit(joint, train_dataloaders=loader)
    return joint, trainer


def test_gan_phase_learns_the_real_distribution():
    family = ToyGAN(AdversarialConfig(loss="hinge", lr=0.01))
    _, trainer = fit(family, 300)
    assert trainer.global_step == 300  # one counted step per update, not two
    assert all(family.d_grads_before_d_step)
    # the generator starts at N(0, 1); the real data is N(3, 0.5)
    assert abs(family.shift.item() - 3.0) < 0.5, family.shift.item()


def test_d_steps_per_g_step_and_accumulation():
    family = ToyGAN(AdversarialConfig(loss="non_saturating", lr=0.01, d_steps_per_g_step=2))
    d_before = [p.detach().clone() for p in family.discriminator.parameters()]
    _, trainer = fit(family, 10, accumulate=2)
    assert trainer.global_step == 10  # 20 batches, 2 per update
    assert family.g_updates == 5  # every 2nd update
    assert any(not torch.equal(a, b) for a, b in zip(d_before, family.discriminator.parameters(), strict=True))


def test_fp16_loss_scaling_is_refused_with_the_fix():
    with pytest.raises(adversarial.AdversarialPhaseError, match="bf16-mixed or 32-true"):
        fit(ToyGAN(AdversarialConfig()), 1, precision="16-mixed")
