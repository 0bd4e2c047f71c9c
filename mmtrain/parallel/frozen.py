"""Frozen towers are written once, not into every checkpoint (LAVIS's habit).

A phase's frozen parameters (a pretrained language model, an autoencoder trained by an
earlier phase, the families that sit the phase out) cannot change while it runs. At its
start the phase writes those not already stored bit-identically by an earlier phase's file
to `checkpoints/frozen-phase<i>.safetensors`; its checkpoints carry only references to
the files (name + sha256 + how many tensors). Reading a checkpoint puts them back
(`complete`), refusing a missing or altered file with the path and what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmtrain.files import fsync_path, sha256_file

KEY = "mmtrain_frozen"


class FrozenWeightsError(RuntimeError):
    pass


def frozen_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict names -> tensors of the parameters that do not train."""
    return {name: p.detach() for name, p in module.named_parameters(remove_duplicate=False)
            if not p.requires_grad}


def _key(f, name: str) -> str | None:
    """Where `name` is stored in an open frozen file (tied weights are stored once)."""
    if name in f.keys():
        return name
    return json.loads((f.metadata() or {}).get("aliases", "{}")).get(name)


def _already_stored(tensors: dict[str, torch.Tensor], path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return {name for name, tensor in tensors.items()
                if (key := _key(f, name)) and torch.equal(f.get_tensor(key), tensor.cpu())}


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Atomic safetensors write; tied weights (one storage, several names, e.g. an LM head
    tied to its embeddings) are stored once, the other names kept as aliases."""
    unique: dict[tuple, str] = {}
    stored, aliases = {}, {}
    for name, tensor in sorted(tensors.items()):
        ident = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if ident in unique:
            aliases[name] = unique[ident]
        else:
            unique[ident] = name
            stored[name] = tensor.contiguous().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(stored, str(tmp), metadata={"aliases": json.dumps(aliases)})
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_frozen(module: torch.nn.Module, path: Path,
                 earlier: list[Path] = ()) -> list[dict]:
    """Stores the frozen parameters: those bit-identical in an `earlier` file (a previous
    phase's) are referenced there, the rest go to `path` (atomically). Returns the
    references a checkpoint keeps."""
    tensors = frozen_parameters(module)
    refs, left = [], dict(tensors)
    for old in earlier:
        if not old.exists() or not left:
            continue
        names = _already_stored(left, old)
        if names:
            refs.append({"file": old.name, "sha256": sha256_file(old), "names": sorted(names)})
            for name in names:
                del left[name]
    if left:
        _save(left, path)
        refs.append({"file": path.name, "sha256": sha256_file(path), "names": sorted(left)})
    return refs


def strip(checkpoint: dict, module: torch.nn.Module, refs: list[dict]) -> None:
    """Drops the frozen parameters from a checkpoint being saved, leaving the references."""
    names = frozen_parameters(module)
    state = checkpoint["state_dict"]
    for name in names:
        state.pop(name, None)
    checkpoint[KEY] = {"files": refs, "parameters": len(names)}


def complete(checkpoint: dict, checkpoint_path: str | Path) -> dict:
    """Puts a stripped checkpoint's frozen parameters back (in place; returns it)."""
    ref = checkpoint.get(KEY)
    if ref is None:
        return checkpoint
    fix = ("it holds frozen weights the checkpoint needs; restore it from a backup of the "
           "run directory, or start the phase again (resume=never with a new name)")
    restored = 0
    for item in ref["files"]:
        path = Path(checkpoint_path).parent / item["file"]
        if not path.exists():
            raise FrozenWeightsError(f"{checkpoint_path} needs {path}, which is missing: {fix}")
        if sha256_file(path) != item["sha256"]:
            raise FrozenWeightsError(f"{path} changed since {checkpoint_path} was written "
                                     f"(sha256 differs): {fix}")
        with safe_open(str(path), framework="pt") as f:
            for name in item["names"]:  # only these: an older file may hold stale values
                checkpoint["state_dict"][name] = f.get_tensor(_key(f, name))
                restored += 1
    if restored < ref["parameters"]:
        raise FrozenWeightsError(f"{checkpoint_path}: its frozen files hold {restored} of the "
                                 f"{ref['parameters']} frozen parameters it needs: {fix}")
    return checkpoint
