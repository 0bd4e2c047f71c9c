"""`python -m mmtrain +recipe=NAME [overrides]`: compose -> validate -> run.

Also `python -m mmtrain families` (the family registry) and `validate=true` (build every
model on the meta device and print parameter counts, without training).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mmtrain.run.directory import CONFIG_ENV

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def main() -> None:
    if sys.argv[1:2] == ["families"]:
        from mmtrain.cli.families import print_families

        print_families()
        return
    if os.environ.get(CONFIG_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        # A DDP process spawned by Lightning: take the launcher's resolved config instead
        # of composing again (so the run name, and with it the run dir, cannot diverge).
        from omegaconf import OmegaConf

        from mmtrain.launch import train

        train(OmegaConf.load(os.environ[CONFIG_ENV]), spawned=True)
        return
    _hydra_main()


def _hydra_main() -> None:
    import hydra

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def entry(cfg) -> None:
        from mmtrain.launch import launch

        launch(cfg)

    entry()


if __name__ == "__main__":
    main()
