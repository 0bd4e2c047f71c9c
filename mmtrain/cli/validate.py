"""`validate=true`: build every model on the meta device and report sizes, no training."""

from __future__ import annotations

import torch

from mmtrain.config.schema import RunConfig
from mmtrain.curriculum.joint import JointModule
from mmtrain.curriculum.runner import build_families


def report_models(run: RunConfig) -> None:
    with torch.device("meta"):
        joint = JointModule(build_families(run))
    print("config is valid. parameters per family (millions):")
    for name, family in joint.families.items():
        parts = ", ".join(f"{child} {_millions(module):.2f}"
                          for child, module in family.named_children())
        print(f"  {name:<8} {_millions(family):10.2f}   ({parts})")
    for index, phase in enumerate(run.phases):
        joint.set_phase(phase, index, 0)  # checks the freeze plan's module paths
        trainable = sum(p.numel() for p in joint.parameters() if p.requires_grad) / 1e6
        print(f"  phase {index} {phase.name:<20} {phase.steps:>6} steps, "
              f"{trainable:.2f}M trainable, families {', '.join(phase.families)}")


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6
