"""An exported t2i bundle, loaded for generation: the stock diffusers pipeline, its
conditioning extras (styles, retrieval), its cascade refiners and its manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmtrain.export.bundle import MANIFEST, verify
from mmtrain.families.t2i.networks import SAMPLERS

# the CLI's short names next to the module's (networks.SAMPLERS)
SAMPLER_ALIASES = {"dpm": "dpm_solver"}


class BundleError(ValueError):
    """A folder that is not a usable t2i export bundle; the message says how to get one."""


@dataclass
class T2IBundle:
    folder: Path
    manifest: dict
    manifest_sha256: str  # names the exact model in every image's provenance
    pipe: object  # diffusers StableDiffusionPipeline
    extras: object  # conditioning.Extras: styles, retrieval
    cascade: object | None  # cascade.Cascade, or None

    @property
    def facts(self) -> dict:
        return self.manifest.get("artifact", {})

    def use_sampler(self, name: str | None) -> str:
        """Switches the pipeline's scheduler (same noise schedule); returns the name used."""
        name = SAMPLER_ALIASES.get(name, name) if name else self.facts.get("sampler", "ddim")
        if name not in SAMPLERS:
            raise BundleError(f"unknown sampler {name!r}; valid: ddim, ddpm, dpm (dpm_solver)")
        if type(self.pipe.scheduler) is not SAMPLERS[name]:
            self.pipe.scheduler = SAMPLERS[name].from_config(self.pipe.scheduler.config)
        return name


def load_bundle(folder: str | Path) -> T2IBundle:
    """Loads and checks a t2i bundle (offline); BundleError names what is wrong."""
    from diffusers import DiffusionPipeline

    from mmtrain.families.t2i import cascade
    from mmtrain.families.t2i.conditioning import load_extras
    from mmtrain.provenance import manifest_sha256

    folder = Path(folder)
    fix = ("export one with `python -m mmtrain.export run=runs/<name>` and pass its t2i "
           "folder (runs/<name>/export/t2i)")
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} does not exist; {fix}")
    if not (folder / MANIFEST).is_file():
        raise BundleError(f"{folder} has no {MANIFEST}, so it is not an mmtrain export bundle "
                          f"(images could not name their model); {fix}")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("family") != "t2i":
        raise BundleError(f"{folder} is a {manifest.get('family')!r} bundle; generation needs "
                          f"a t2i bundle ({fix})")
    changed = verify(folder)
    if changed:
        raise BundleError(f"{folder}: {len(changed)} file(s) differ from the manifest "
                          f"({', '.join(changed[:3])}): the bundle changed after export, so "
                          "its manifest hash would not name this model; re-export it")
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return T2IBundle(folder, manifest, manifest_sha256(folder), pipe,
                     load_extras(folder), cascade.load(folder))
