"""A kill during a checkpoint write never leaves a broken checkpoint under its name."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mmtrain.parallel.checkpoint import AtomicCheckpointIO

WRITER = """
import sys, torch
from mmtrain.parallel.checkpoint import AtomicCheckpointIO
big = {"state_dict": {"w": torch.ones(64, 1024, 1024)}, "step": 2}  # 256 MiB: slow to write
AtomicCheckpointIO().save_checkpoint(big, sys.argv[1])
"""


def test_kill_mid_save_keeps_the_previous_checkpoint(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "step": 1}, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    deadline = time.time() + 60
    while not list(tmp_path.glob(".last.ckpt.tmp-*")):  # the write has begun
        assert proc.poll() is None and time.time() < deadline, "writer ended before the test could kill it"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    old = torch.load(path, weights_only=False)
    assert old["step"] == 1 and torch.equal(old["state_dict"]["w"], torch.zeros(3))


def test_save_replaces_and_cleans_up(tmp_path: Path):
    io = AtomicCheckpointIO()
    for step in (1, 2):
        io.save_checkpoint({"step": step}, tmp_path / "sub" / "last.ckpt")
    assert torch.load(tmp_path / "sub" / "last.ckpt")["step"] == 2
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["last.ckpt"]
