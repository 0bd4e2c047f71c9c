"""Data command line: `python -m mmtrain.data <command> ...`.

Commands:
  synth   write the synthetic world (scenes, documents, views3d) as webdataset shards
  pack    pack your data (images, vqa, documents, views3d) into webdataset shards
  inspect report what shards hold, their bad samples, and a contact sheet
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmtrain.data.cli_args import non_negative, positive
from mmtrain.data.inspect.cli import add_inspect_command
from mmtrain.data.latents.cli import add_encode_latents_command
from mmtrain.data.pack.cli import add_pack_command
from mmtrain.data.synth.writer import KINDS, write_world


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind(s) {', '.join(unknown) or '(none given)'}; "
            f"valid kinds: {', '.join(KINDS)}"
        )
    return kinds


def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth",
        help="write the synthetic world as webdataset shards",
        description="Writes <out>/<kind>/{train,val}-%06d.tar and <out>/manifest.json. "
        "Rerunning with the same arguments reuses the existing world.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--samples", type=non_negative, default=1000, help="train samples per kind"
    )
    parser.add_argument(
        "--val-samples",
        type=non_negative,
        default=None,
        help="val samples per kind (default: samples // 10)",
    )
    parser.add_argument(
        "--kinds",
        type=_kinds,
        default=list(KINDS),
        help=f"comma-separated subset of {','.join(KINDS)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=positive, default=500, help="samples per shard")
    parser.add_argument("--scene-size", type=positive, default=64, help="scene image side, px")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    manifest = write_world(
        args.out,
        seed=args.seed,
        kinds=args.kinds,
        train_samples=args.samples,
        val_samples=args.samples // 10 if args.val_samples is None else args.val_samples,
        shard_size=args.shard_size,
        scene_size=args.scene_size,
        progress=not args.no_progress,
    )
    print(f"synthetic world (seed {manifest['seed']}) in {args.out}")
    for kind, entry in manifest["kinds"].items():
        counts = ", ".join(
            f"{split} {s['samples']} samples in {len(s['shards'])} shard(s)"
            for split, s in entry["splits"].items()
        )
        print(f"  {kind}: {counts}")
    print(f"manifest: {args.out}/manifest.json")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mmtrain.data", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(commands)
    add_pack_command(commands)
    add_inspect_command(commands)
    add_encode_latents_command(commands)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
