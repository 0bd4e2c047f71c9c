"""Frozen towers are written once per phase, not into every checkpoint (LAVIS's habit).

A phase's frozen parameters (a pretrained language model, an autoencoder trained by an
earlier phase, the families that sit the phase out) cannot change while it runs, so the
phase writes them once to `checkpoints/frozen-phase<i>.safetensors` and its checkpoints
carry only a reference to that file (name + sha256). Reading a checkpoint puts them back
(`complete`), refusing a missing or altered file with the path and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmtrain.files import fsync_path, sha256_file

KEY = "mmtrain_frozen"


class FrozenWeightsError(RuntimeError):
    pass


def frozen_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict names -> tensors of the parameters that do not train."""
    return {name: p.detach() for name, p in module.named_parameters(remove_duplicate=False)
            if not p.requires_grad}


def write_frozen(module: torch.nn.Module, path: Path) -> str:
    """Writes the frozen parameters atomically; returns the file's sha256."""
    tensors = {k: v.contiguous().cpu() for k, v in frozen_parameters(module).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp))
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(path)


def strip(checkpoint: dict, module: torch.nn.Module, path: Path, digest: str) -> None:
    """Drops the frozen parameters from a checkpoint being saved, leaving a reference."""
    names = frozen_parameters(module)
    state = checkpoint["state_dict"]
    for name in names:
        state.pop(name, None)
    checkpoint[KEY] = {"file": path.name, "sha256": digest, "parameters": len(names)}


def complete(checkpoint: dict, checkpoint_path: str | Path) -> dict:
    """Puts a stripped checkpoint's frozen parameters back (in place; returns it)."""
    ref = checkpoint.get(KEY)
    if ref is None:
        return checkpoint
    path = Path(checkpoint_path).parent / ref["file"]
    fix = ("it holds the frozen weights of the phase that wrote the checkpoint; restore it "
           "from a backup of the run directory, or start the phase again (resume=never "
           "with a new name)")
    if not path.exists():
        raise FrozenWeightsError(f"{checkpoint_path} needs {path}, which is missing: {fix}")
    if sha256_file(path) != ref["sha256"]:
        raise FrozenWeightsError(f"{path} changed since {checkpoint_path} was written "
                                 f"(sha256 differs): {fix}")
    for name, tensor in load_file(str(path)).items():
        checkpoint["state_dict"].setdefault(name, tensor)
    return checkpoint
