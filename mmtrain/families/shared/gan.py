"""Adversarial parts shared by families: a multi-scale PatchGAN and its losses.

The PatchGAN is pix2pixHD's multi-scale discriminator: the same patch classifier at
full, 1/2 and 1/4 resolution (each scale its own weights), so coarse structure and fine
texture are judged separately. A family owns its discriminators as submodules (they are
checkpointed with it) and the curriculum's joint module trains them with their own
optimizer (see `AdversarialConfig` and mmtrain/curriculum/joint.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtrain.families.shared.adversarial_config import AdversarialConfig  # noqa: F401 (re-export)


class PatchGAN(nn.Module):
    """A patch classifier: strided convs down to a map of realness logits, one per
    receptive-field patch (70x70 for the pix2pix default of 3 layers)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        # num_layers stride-2 convs, then two 4x4 stride-1 convs that each cost a pixel
        self.min_size = 3 * 2 ** num_layers
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers + 1):
            wider = channels * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1
            # GroupNorm, not BatchNorm: per-sample statistics behave the same under DDP,
            # gradient accumulation and batch size 1.
            layers += [nn.Conv2d(width, wider, 4, stride, 1),
                       nn.GroupNorm(min(32, wider // 4), wider), nn.LeakyReLU(0.2)]
            width = wider
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MultiScalePatchGAN(nn.Module):
    """`num_scales` PatchGANs on the input average-pooled by 1, 2, 4, ..."""

    def __init__(self, in_channels: int = 3, num_scales: int = 3, channels: int = 64,
                 num_layers: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchGAN(in_channels, channels, num_layers)
                                    for _ in range(num_scales))

    def forward(self, x: Tensor) -> list[Tensor]:
        logits = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            logits.append(d(_padded_for(d, x)))
        return logits


def _padded_for(d: PatchGAN, x: Tensor) -> Tensor:
    """Small inputs (a 32-px image at the third scale is 8 px) are reflected up to the
    smallest size the convolutions accept, instead of failing."""
    short = d.min_size - min(x.shape[-2:])
    if short <= 0:
        return x
    pad = (short + 1) // 2
    return F.pad(x, (pad, pad, pad, pad), mode="replicate")


def generator_loss(fake_logits: list[Tensor], kind: str) -> Tensor:
    """The generator's adversarial loss, averaged over scales."""
    if kind == "hinge":
        losses = [-f.float().mean() for f in fake_logits]
    else:  # non-saturating: -log D(G(z))
        losses = [F.softplus(-f.float()).mean() for f in fake_logits]
    return torch.stack(losses).mean()


def discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor], kind: str) -> Tensor:
    """The discriminator's loss on real and (detached) fake inputs, averaged over scales."""
    losses = []
    for r, f in zip(real_logits, fake_logits, strict=True):
        r, f = r.float(), f.float()
        if kind == "hinge":
            losses.append(F.relu(1 - r).mean() + F.relu(1 + f).mean())
        else:
            losses.append(F.softplus(-r).mean() + F.softplus(f).mean())
    return torch.stack(losses).mean()


def r1_penalty(real: Tensor, real_logits: list[Tensor]) -> Tensor:
    """E ||d D(x) / dx||^2 on real inputs (`real` must require grad before D sees it)."""
    total = sum(r.float().sum() for r in real_logits)
    (grad,) = torch.autograd.grad(total, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def realness(discriminator: MultiScalePatchGAN, x: Tensor) -> Tensor:
    """Per-sample realness score: the mean logit over patches and scales (used by
    discriminator guidance at sampling time)."""
    return torch.stack([s.float().mean(dim=(1, 2, 3)) for s in discriminator(x)]).mean(0)
