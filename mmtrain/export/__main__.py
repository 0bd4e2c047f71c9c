"""`python -m mmtrain.export run=runs/<name> [out=DIR] [checkpoint=PATH]`

Rebuilds the run's families from its saved config, loads the checkpoint (default: the
run's last.ckpt) and writes one bundle per family (see bundle.py).
"""

from __future__ import annotations

import sys
from pathlib import Path


def parse(argv: list[str]) -> dict[str, str]:
    args = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in ("run", "out", "checkpoint"):
            sys.exit(f"mmtrain.export: bad argument {item!r}; usage: "
                     "python -m mmtrain.export run=runs/<name> [out=DIR] [checkpoint=PATH]")
        args[key] = value
    if "run" not in args:
        sys.exit("mmtrain.export: missing run=runs/<name>")
    return args


def main() -> None:
    args = parse(sys.argv[1:])
    from omegaconf import OmegaConf

    from mmtrain.config.validate import validate
    from mmtrain.curriculum.joint import JointModule
    from mmtrain.curriculum.runner import build_families
    from mmtrain.export.bundle import export_families
    from mmtrain.parallel import frozen
    from mmtrain.parallel.checkpoint import read_checkpoint
    from mmtrain.run.directory import RunDir

    rd = RunDir(Path(args["run"]).resolve())
    if not rd.config_file.exists():
        sys.exit(f"mmtrain.export: {rd.path} is not a run directory (no config.yaml)")
    ckpt_path = Path(args.get("checkpoint", rd.last_checkpoint))
    if not ckpt_path.exists():
        sys.exit(f"mmtrain.export: no checkpoint at {ckpt_path}; train first or pass checkpoint=")
    run = validate(OmegaConf.load(rd.config_file))
    ckpt = frozen.complete(read_checkpoint(ckpt_path), ckpt_path)
    joint = JointModule(build_families(run))
    joint.load_state_dict(ckpt["state_dict"])
    step = ckpt.get("mmtrain", {}).get("absolute_step", ckpt.get("global_step", -1))
    out = Path(args.get("out", rd.export))
    for bundle in export_families(joint, run, rd, out, step=step):
        print(f"wrote {bundle}")


if __name__ == "__main__":
    main()
