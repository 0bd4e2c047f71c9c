"""GAN phases: per batch a generator step, then a discriminator step, separate optimizers.

Lightning's automatic optimization drives one optimizer, so a phase in which a family
trains discriminators (`FamilyModule.discriminators(active)` is not empty) runs in manual
optimization: the joint module calls `training_step` below. The generator step computes
the family's `losses()` with the discriminators frozen (no gradient reaches them), the
discriminator step its `discriminator_losses()` on the fakes `losses()` cached. The
generator trains on every `d_steps_per_g_step`-th update (mmagic's `disc_steps`).

Gradient accumulation and clipping follow the trainer config, done here because
Lightning refuses both under manual optimization. Step counting: Lightning counts every
`LightningOptimizer.step()` as a global step, so exactly one counted step is taken per
update (the discriminator's when one trains, else the generator's) and the other goes
to the raw torch optimizer; `phase.steps` thus still counts updates, as in other phases.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


class AdversarialPhaseError(ValueError):
    pass


def phase_discriminators(joint) -> dict[str, dict[str, nn.Module]]:
    """family -> its discriminators that train in the current phase."""
    found = {}
    for name in joint.phase.families:
        discs = joint.families[name].discriminators(set(joint.weights[name]))
        if discs:
            found[name] = discs
    return found


def check_precision(precision: str, phase_name: str) -> None:
    # The generator's update bypasses Lightning's optimizer wrapper (see above), so a
    # GradScaler would never unscale its gradients.
    if precision.startswith("16"):
        raise AdversarialPhaseError(
            f"phase {phase_name} trains discriminators, which mmtrain does not support under "
            f"trainer.precision={precision} (fp16 loss scaling); use bf16-mixed or 32-true")


def configure_optimizers(joint, make_optimizer, schedule) -> list[dict]:
    """[generator optimizer, discriminator optimizer], each with the phase's LR schedule.
    The discriminators get one parameter group per family (its AdversarialConfig)."""
    discs = phase_discriminators(joint)
    d_ids = {id(p) for ds in discs.values() for d in ds.values() for p in d.parameters()}
    g_params = [p for p in joint.parameters() if p.requires_grad and id(p) not in d_ids]
    groups = []
    for name, ds in discs.items():
        cfg = joint.families[name].adversarial_config()
        params = [p for d in ds.values() for p in d.parameters() if p.requires_grad]
        groups.append({"params": params, "lr": cfg.lr, "betas": tuple(cfg.betas),
                       "weight_decay": cfg.weight_decay})
    opt_g = make_optimizer(g_params)
    opt_d = torch.optim.AdamW(groups)
    return [{"optimizer": opt, "lr_scheduler": {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}
            for opt in (opt_g, opt_d)]


def training_step(joint, batch: dict, batch_idx: int) -> None:
    name = batch["family"]
    family = joint.families[name]
    active = set(joint.weights[name])
    discs = family.discriminators(active)
    d_params = [p for d in discs.values() for p in d.parameters() if p.requires_grad]
    opt_g, opt_d = joint.optimizers()
    sched_g, sched_d = joint.lr_schedulers()
    update = joint.global_step  # updates taken in this phase
    at_boundary = (batch_idx + 1) % joint.accumulate == 0
    g_turn = not discs or update % family.adversarial_config().d_steps_per_g_step == 0
    generator = joint.step_generator()

    # ---- generator: the family's losses, discriminators frozen -----------------------
    _requires_grad(d_params, False)
    with nullcontext() if g_turn else torch.no_grad():  # D still needs this batch's fakes
        losses = family.losses(batch, active, generator)
        total = sum(joint.weights[name][k] * v for k, v in losses.items())
    _requires_grad(d_params, True)
    if g_turn:
        joint.manual_backward(total / joint.accumulate)
        if at_boundary:
            _update(joint, opt_g, sched_g, counted=not discs)
            for other in joint.phase.families:
                joint.families[other].after_optimizer_step(set(joint.weights[other]))
    joint.log_losses(name, losses, batch, total)

    # ---- discriminators: real vs the cached fakes --------------------------------------
    if discs:
        d_losses = family.discriminator_losses(batch, active, generator, step=update)
        joint.manual_backward(sum(d_losses.values()) / joint.accumulate)
        if at_boundary:
            _update(joint, opt_d, sched_d, counted=True)
        joint.log_losses(name, {f"d_{k}": v for k, v in d_losses.items()}, batch)


def _update(joint, optimizer, scheduler, *, counted: bool) -> None:
    clip_val, clip_algorithm = joint.clip
    if clip_val:
        joint.clip_gradients(optimizer, gradient_clip_val=clip_val,
                             gradient_clip_algorithm=clip_algorithm)
    if counted:
        optimizer.step()
    else:
        optimizer.optimizer.step()  # the raw torch optimizer: not a global step
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def _requires_grad(params: list[nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)
