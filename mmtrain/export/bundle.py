"""Export bundles: each family's artifact in its ecosystem's own format + manifest.json.

    <out>/<family>/...            e.g. a diffusers pipeline folder for t2i
    <out>/<family>/manifest.json  family, source run and step, sha256 of every file, config
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import time
from pathlib import Path

import mmtrain
from mmtrain.config.schema import RunConfig
from mmtrain.files import sha256_file
from mmtrain.run.directory import RunDir

MANIFEST = "manifest.json"


def export_families(joint, run: RunConfig, rd: RunDir, out: Path, step: int | None = None) -> list[Path]:
    bundles = []
    for name, module in joint.families.items():
        exporter = importlib.import_module(f"mmtrain.families.{name}.export").export
        target = Path(out) / name
        tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        facts = exporter(module, tmp)
        manifest = {
            "family": name,
            "mmtrain_version": mmtrain.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": {"run": str(rd.path), "run_name": run.name,
                       "step": step if step is not None else _last_step(joint)},
            "artifact": facts,
            "data": {"root": run.data.root, "sources": run.data.family_sources.get(name, [])},
            "config": dataclasses.asdict(run.model[name]),
            "files": {str(p.relative_to(tmp)): sha256_file(p)
                      for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # a reader never sees half a bundle
        bundles.append(target)
    return bundles


def _last_step(joint) -> int:
    return int(joint.absolute_step) if joint._trainer is not None else -1


def verify(bundle: Path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty: the bundle is intact)."""
    manifest = json.loads((Path(bundle) / MANIFEST).read_text())
    return [name for name, digest in manifest["files"].items()
            if not (Path(bundle) / name).exists() or sha256_file(Path(bundle) / name) != digest]
