"""Callbacks the runner installs in every phase's Trainer."""

from __future__ import annotations

import os
import signal

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from mmtrain.config.validate import phase_fingerprint


class CurriculumState(L.Callback):
    """Stores where in the schedule a checkpoint was taken, so resume lands in the right
    phase and refuses a schedule that changed underneath it."""

    def __init__(self, phases, index: int) -> None:
        self.phases, self.index = phases, index

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        phase = self.phases[self.index]
        checkpoint["mmtrain"] = {
            "phase_index": self.index,
            "phase_name": phase.name,
            "phase_step": trainer.global_step,
            "absolute_step": pl_module.absolute_step,
            "completed": trainer.global_step >= phase.steps,
            "schedule": phase_fingerprint(self.phases),
        }


class KillAtStep(L.Callback):
    """Fault injection for resume tests: SIGKILL (no cleanup, like a node loss) once the
    run's absolute step reaches `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.absolute_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PhaseProgressBar(TQDMProgressBar):
    """A progress bar per phase with its name and step total (the streams are endless, so
    Lightning's own bar knows no total)."""

    def __init__(self, label: str, steps: int, accumulate: int) -> None:
        super().__init__(refresh_rate=10)
        self.label, self.total_batches = label, steps * accumulate

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.reset(total=self.total_batches)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.n = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self.train_progress_bar.set_description(self.label)
