"""Experiment loggers from `logger=csv|wandb|tensorboard|none`, all inside the run dir."""

from __future__ import annotations

import csv
import netrc
import os
import secrets

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from mmtrain.config.schema import RunConfig
from mmtrain.run.directory import RunDir


def build_loggers(run: RunConfig, rd: RunDir) -> list[Logger]:
    name = run.logger.name
    if name == "none":
        return []
    if name == "csv":
        return [RunCSVLogger(save_dir=rd.path, name="metrics", version="")]
    if name == "tensorboard":
        return [TensorBoardLogger(save_dir=rd.path, name="tensorboard", version="")]
    return [_wandb(run, rd), RunCSVLogger(save_dir=rd.path, name="metrics", version="")]


def finish_loggers(loggers: list[Logger]) -> None:
    """Closes a W&B run explicitly: otherwise the next run in this process (a multirun
    sweep) would silently log into it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def _wandb(run: RunConfig, rd: RunDir) -> WandbLogger:
    cfg = run.logger.wandb
    mode = cfg.mode if cfg.mode != "auto" else ("online" if has_wandb_key() else "offline")
    # The W&B run id lives in the run dir, so a resumed or requeued run continues the
    # same W&B run instead of starting a new one.
    id_file = rd.path / "wandb_id.txt"
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(4)  # W&B ids: short lowercase alphanumerics
        rd.path.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    return WandbLogger(
        name=run.name, project=cfg.project, entity=cfg.entity, tags=cfg.tags,
        save_dir=str(rd.path), id=run_id, resume="allow", mode=mode,
        offline=mode == "offline",
    )


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed or requeued run
    must append to it instead, so the run keeps one continuous record."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class RunCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
