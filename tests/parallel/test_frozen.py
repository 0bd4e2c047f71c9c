"""Frozen towers: written once per phase, referenced by checkpoints, restored on read."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmtrain.parallel import frozen


def model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.ModuleDict({"tower": nn.Linear(64, 64), "head": nn.Linear(64, 2)})
    m["tower"].requires_grad_(False)
    return m


def test_checkpoint_without_the_frozen_tower_restores_it(tmp_path):
    m = model()
    path = tmp_path / "frozen-phase1.safetensors"
    refs = frozen.write_frozen(m, path)
    checkpoint = {"state_dict": dict(m.state_dict())}
    frozen.strip(checkpoint, m, refs)
    assert set(checkpoint["state_dict"]) == {"head.weight", "head.bias"}
    assert checkpoint[frozen.KEY]["parameters"] == 2

    restored = frozen.complete(checkpoint, tmp_path / "last.ckpt")
    fresh = nn.ModuleDict({"tower": nn.Linear(64, 64), "head": nn.Linear(64, 2)})
    fresh.load_state_dict(restored["state_dict"])  # strict: every key is back
    assert torch.equal(fresh["tower"].weight, m["tower"].weight)


def test_a_missing_or_altered_frozen_file_is_refused(tmp_path):
    m = model()
    path = tmp_path / "frozen-phase0.safetensors"
    checkpoint = {"state_dict": dict(m.state_dict())}
    frozen.strip(checkpoint, m, frozen.write_frozen(m, path))
    m["tower"].weight.data.add_(1.0)
    frozen.write_frozen(m, path)
    with pytest.raises(frozen.FrozenWeightsError, match="changed since"):
        frozen.complete(dict(checkpoint, state_dict=dict(checkpoint["state_dict"])),
                        tmp_path / "last.ckpt")
    path.unlink()
    with pytest.raises(frozen.FrozenWeightsError, match="missing"):
        frozen.complete(checkpoint, tmp_path / "last.ckpt")


def test_a_later_phase_references_unchanged_towers_and_stores_changed_ones(tmp_path):
    m = model()
    first = tmp_path / "frozen-phase0.safetensors"
    frozen.write_frozen(m, first)
    m["head"].requires_grad_(False)  # phase 1 freezes the head too, after changing it
    m["head"].weight.data.add_(1.0)
    m["tower"].bias.data.add_(1.0)   # (a stale copy of this one sits in phase 0's file)
    second = tmp_path / "frozen-phase1.safetensors"
    refs = frozen.write_frozen(m, second, [first])
    assert [(r["file"], r["names"]) for r in refs] == [
        ("frozen-phase0.safetensors", ["tower.weight"]),
        ("frozen-phase1.safetensors", ["head.bias", "head.weight", "tower.bias"])]
    checkpoint = {"state_dict": {}}
    frozen.strip(checkpoint, m, refs)
    restored = frozen.complete(checkpoint, tmp_path / "last.ckpt")["state_dict"]
    assert all(torch.equal(restored[k], v) for k, v in m.state_dict().items())


def test_tied_frozen_weights_are_stored_once_and_restored_under_both_names(tmp_path):
    m = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
    m["head"].weight = m["embed"].weight  # tied, as OPT's lm_head and embed_tokens
    m.requires_grad_(False)
    path = tmp_path / "frozen-phase0.safetensors"
    refs = frozen.write_frozen(m, path)
    assert refs[0]["names"] == ["embed.weight", "head.weight"]
    checkpoint = {"state_dict": {}}
    frozen.strip(checkpoint, m, refs)
    restored = frozen.complete(checkpoint, tmp_path / "last.ckpt")["state_dict"]
    assert torch.equal(restored["head.weight"], m["embed"].weight)
    again = frozen.write_frozen(m, tmp_path / "frozen-phase1.safetensors", [path])
    assert [r["file"] for r in again] == ["frozen-phase0.safetensors"]
