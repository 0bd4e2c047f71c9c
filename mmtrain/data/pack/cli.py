"""`python -m mmtrain.data pack KIND INPUT --out DIR ...`: argument parsing and the
end-of-run report. User errors print one line and exit with code 2, no traceback."""

from __future__ import annotations

import argparse
import sys
import time

from mmtrain.data.pack import KINDS, PackError, PackOptions, parse_size
from mmtrain.data.pack.writer import run

EPILOG = """inputs per kind:
  images     folder of images (jpg/png/webp) with a .txt caption next to each,
             or --captions FILE (JSONL {"image"|"file_name": path, "caption"|"text": ...},
             or CSV with path/image/file_name and caption/text columns)
  vqa        JSONL file of {"image": path, "question": ..., "answer": ...}
             (paths relative to --images-root, default the JSONL's folder)
  documents  FUNSD-layout folder: annotations/*.json + images/<same name>.png
  views3d    NeRF-synthetic scene folder (transforms.json + images), or a folder of them

Rerunning the same command resumes: finished shards are kept. See docs/packing.md."""


def _size(text: str) -> int | None:
    if text.strip().lower() in ("0", "none"):
        return None
    try:
        return parse_size(text)
    except PackError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _count(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value or None


def add_pack_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pack",
        help="pack images/VQA/documents/3D views into webdataset shards",
        description="Writes <out>/[<prefix>-]<split>-%06d.tar and <out>/shards.json.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS, help="input kind")
    parser.add_argument("input", metavar="INPUT", help="input folder (vqa: the JSONL file)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--captions", help="images: JSONL or CSV captions file")
    parser.add_argument("--images-root", help="vqa: folder the image paths are relative to")
    parser.add_argument(
        "--shard-size",
        type=_count,
        default=1000,
        help="samples per shard (default 1000; 0: no count limit)",
    )
    parser.add_argument(
        "--max-shard-bytes",
        type=_size,
        default=10**9,
        metavar="SIZE",
        help="bytes per shard, e.g. 500MB, 1GB, 256MiB (default 1GB; 0: no limit)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="fraction of samples in val, by a hash of each source path",
    )
    parser.add_argument("--prefix", default="", help="shard name prefix: <prefix>-train-...")
    parser.add_argument(
        "--max-views",
        type=_count,
        default=None,
        help="views3d: keep at most this many views per scene, evenly spaced",
    )
    parser.add_argument(
        "--view-size",
        type=_count,
        default=None,
        help="views3d: resize views to this width in px (focal scales along)",
    )
    parser.add_argument(
        "--background",
        choices=("white", "black"),
        default="white",
        help="views3d: colour behind transparent pixels (default white)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace shards from a different plan in --out"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_pack)


def _report(manifest: dict, seconds: float) -> None:
    totals = manifest["totals"]
    mb = totals["bytes"] / 1e6
    print(
        f"packed {totals['samples']} samples ({manifest['kind']}) into {totals['shards']} "
        f"shard(s), {mb:.1f} MB, in {seconds:.1f} s ({totals['samples'] / seconds:.0f} "
        f"samples/s, {mb / seconds:.1f} MB/s)"
    )
    for split, entry in manifest["splits"].items():
        print(f"  {split}: {entry['samples']} samples in {len(entry['shards'])} shard(s)")
        if not entry["samples"]:
            print(f"  warning: {split} is empty; raise --val-fraction or add data")
    if manifest["skipped"]:
        print(f"skipped {sum(manifest['skipped'].values())} input(s):")
        for reason, count in manifest["skipped"].items():
            examples = ", ".join(manifest["skipped_examples"].get(reason, []))
            print(f"  {reason}: {count} (e.g. {examples})")


def run_pack(args: argparse.Namespace) -> None:
    import webdataset  # noqa: F401  # its 2 s torch import is not packing time: before the clock

    start = time.perf_counter()
    try:
        options = PackOptions(
            kind=args.kind,
            input=args.input,
            out=args.out,
            captions=args.captions,
            images_root=args.images_root,
            shard_size=args.shard_size,
            max_shard_bytes=args.max_shard_bytes,
            val_fraction=args.val_fraction,
            prefix=args.prefix,
            max_views=args.max_views,
            view_size=args.view_size,
            background=args.background,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        manifest = run(options)
    except PackError as e:
        print(f"python -m mmtrain.data pack: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    _report(manifest, max(time.perf_counter() - start, 1e-9))
    print(f"manifest: {options.out / 'shards.json'}")
