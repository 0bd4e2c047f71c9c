"""Cascaded refinement: the base image, then super-resolution stages (SR3 / Imagen's
cascade, with the restoration family's Swin2SR as each stage's refiner).

    config.cascade: [{refiner: FOLDER, scale: 2}, {refiner: FOLDER, scale: 2}]
    base (resolution) -> stage 0 (x2) -> stage 1 (x2) -> ...

A refiner folder is an exported restore bundle or any transformers
Swin2SRForImageSuperResolution folder (a published checkpoint). Each stage runs through
the restore family's own `Restorer` (reflect padding to the window, Swin2SR, its
bicubic residual skip when the folder's config says `mmtrain_residual`), so a stage
serves exactly what the restore export serves. Between stages the image stays in
floats in [0, 1]; it is rounded to 8 bits once, at the end.

An exported t2i bundle carries its refiners next to the pipeline (not in
model_index.json, so `DiffusionPipeline.from_pretrained` ignores them):

    refiners/cascade.json     {"stages": [{"folder": "stage0", "scale": 2, ...}, ...]}
    refiners/stage0/          config.json, model.safetensors, preprocessor_config.json

`load(bundle)` reads them back (None when the bundle has no cascade).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REFINERS_DIR = "refiners"
CASCADE_FILE = "cascade.json"


@dataclass
class Stage:
    restorer: Restorer  # noqa: F821 (mmtrain.families.restore.networks, imported lazily)
    scale: int
    source: str  # where the refiner came from (a folder path, or the bundle's stage folder)


def load_refiner(folder: str | Path, scale: int, where: str = "cascade stage"):
    """A Restorer over the Swin2SR folder, checked against the stage's scale."""
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    from mmtrain.families.restore.networks import SKIP_KEY, Restorer

    if str(folder) in ("", "???"):
        raise ValueError(f"{where}: no refiner set; give each stage `refiner: FOLDER` (an "
                         "exported x2/x4 restore bundle) and its `scale`")
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        what = "does not exist" if not folder.exists() else "has no config.json"
        raise ValueError(
            f"{where}: refiner folder {folder} {what}; point `refiner` at an exported restore "
            "bundle (python -m mmtrain.export on a run with model.restore.task="
            "super_resolution) or a transformers Swin2SRForImageSuperResolution folder")
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "swin2sr":
        raise ValueError(f"{where}: {folder} holds a {config.get('model_type')!r} model, not a "
                         "Swin2SR super-resolution model (restore bundle)")
    if config.get("num_channels", 3) != 3:
        raise ValueError(f"{where}: {folder} takes {config['num_channels']} input channels "
                         "(an inpainting model); a refiner takes RGB")
    upscale = int(config.get("upscale", 1))
    if upscale != scale:
        raise ValueError(f"{where}: scale {scale} but the refiner {folder} upscales "
                         f"x{upscale}; set scale: {upscale} or pick a x{scale} refiner")
    if torch.empty(0).device.type == "meta":  # validate=true: checked, not loaded
        model = Swin2SRForImageSuperResolution(Swin2SRConfig.from_pretrained(folder))
    else:
        model = Swin2SRForImageSuperResolution.from_pretrained(folder, local_files_only=True)
    return Restorer(model.eval(), bool(getattr(model.config, SKIP_KEY, False)))


class Cascade:
    """Base images -> refined images, stage after stage."""

    def __init__(self, stages: list[Stage]) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        self.stages = stages

    @classmethod
    def from_config(cls, stages) -> Cascade | None:
        """From config.cascade (CascadeStageConfig items); None when empty."""
        if not stages:
            return None
        return cls([Stage(load_refiner(s.refiner, s.scale, f"t2i.cascade[{i}]"), s.scale,
                          str(s.refiner)) for i, s in enumerate(stages)])

    @property
    def scale(self) -> int:
        return int(np.prod([s.scale for s in self.stages]))

    def to(self, device) -> Cascade:
        for s in self.stages:
            s.restorer.to(device)
        return self

    @torch.no_grad()
    def refine_tensor(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 3, h * scale, w * scale), through the first `upto`
        stages (default: all)."""
        for stage in self.stages[:upto]:
            x = stage.restorer.restore(x.to(next(stage.restorer.parameters()).device))
        return x

    def __call__(self, images: list[Image.Image], upto: int | None = None) -> list[Image.Image]:
        if not images:
            return []
        x = torch.from_numpy(np.stack([np.asarray(i.convert("RGB"), np.float32) / 255
                                       for i in images])).permute(0, 3, 1, 2)
        out = self.refine_tensor(x, upto).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(np.rint(a * 255).clip(0, 255).astype(np.uint8)) for a in out]

    # ---- bundle -----------------------------------------------------------------------
    def save(self, bundle: Path) -> dict:
        """Writes refiners/ into an export bundle; returns facts for the manifest."""
        from transformers.models.swin2sr.image_processing_pil_swin2sr import (
            Swin2SRImageProcessorPil,
        )

        root = Path(bundle) / REFINERS_DIR
        listed = []
        for i, stage in enumerate(self.stages):
            folder = root / f"stage{i}"
            stage.restorer.model.save_pretrained(folder, safe_serialization=True)
            Swin2SRImageProcessorPil(size_divisor=stage.restorer.window).save_pretrained(folder)
            listed.append({"folder": folder.name, "scale": stage.scale,
                           "residual_skip": stage.restorer.residual, "source": stage.source})
        root.mkdir(parents=True, exist_ok=True)
        (root / CASCADE_FILE).write_text(json.dumps({"stages": listed}, indent=2) + "\n")
        return {"cascade": [{k: s[k] for k in ("folder", "scale", "source")} for s in listed]}


def load(bundle: str | Path) -> Cascade | None:
    """The refiners an exported t2i bundle carries (None: no cascade)."""
    root = Path(bundle) / REFINERS_DIR
    if not (root / CASCADE_FILE).is_file():
        return None
    listed = json.loads((root / CASCADE_FILE).read_text())["stages"]
    return Cascade([Stage(load_refiner(root / s["folder"], s["scale"],
                                       f"{bundle}: refiners/{s['folder']}"),
                          s["scale"], s.get("source", s["folder"])) for s in listed])
