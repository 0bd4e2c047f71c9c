"""`python -m mmtrain families`: what families exist, their sizes and data fields."""

from __future__ import annotations

from pathlib import Path

from mmtrain.families.registry import FAMILIES

CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"


def print_families() -> None:
    print(f"{'family':<10} {'sizes':<22} {'fields':<24} {'losses':<24} description")
    for name, spec in FAMILIES.items():
        sizes = ",".join(sorted(p.stem for p in (CONF_MODEL / name).glob("*.yaml")))
        print(f"{name:<10} {sizes:<22} {','.join(spec.fields):<24} "
              f"{','.join(spec.losses):<24} {spec.description}")
    print("\nselect one with `+model/<family>=<size>` (a recipe usually does)")
