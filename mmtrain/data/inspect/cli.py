"""The `inspect` subcommand of `python -m mmtrain.data`.

Exit status: 0 all samples good, 1 bad samples / unreadable shards / manifest mismatches
found, 2 nothing to inspect (bad pattern, unknown family, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys

from mmtrain.data.cli_args import positive
from mmtrain.data.sources import DataError

DEFAULT_SHEET = "inspect-contact-sheet.png"


def add_inspect_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "inspect",
        help="report what webdataset shards hold, their bad samples, and a contact sheet",
        description="Streams the shards once and reports samples, bytes, fields and example "
        "keys per shard and in total; bad samples by reason with shard and key; mismatches "
        "with a shards.json or synthetic-world manifest.json next to the shards. Writes a "
        "contact sheet PNG. Exit status: 0 clean, 1 problems found, 2 nothing to inspect.",
    )
    parser.add_argument("shards", metavar="SHARDS", help="a directory, glob, brace range "
                        "(/data/train-{000000..000099}.tar) or pipe: command")
    parser.add_argument("--family", help="check samples with this family's batch decoder "
                        "(its skip reasons); default: generic per-field checks")
    parser.add_argument("--resolution", type=positive, default=None,
                        help="resolution for the family decoder (default: the family's)")
    parser.add_argument("--limit", type=positive, default=None,
                        help="read at most N samples (default: all)")
    parser.add_argument("--sheet", default=DEFAULT_SHEET, metavar="PATH",
                        help=f"contact sheet PNG to write (default: ./{DEFAULT_SHEET})")
    parser.add_argument("--no-sheet", action="store_true", help="write no contact sheet")
    parser.add_argument("--sheet-samples", type=positive, default=32, metavar="K",
                        help="samples on the contact sheet, the first K read (default: 32)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_inspect)


def run_inspect(args: argparse.Namespace) -> None:
    from mmtrain.data.inspect.report import format_text
    from mmtrain.data.inspect.scan import inspect_shards
    from mmtrain.data.inspect.sheet import SheetCollector

    sheet = None if args.no_sheet else SheetCollector(args.sheet_samples)
    try:
        report = inspect_shards(args.shards, args.family, args.limit, resolution=args.resolution,
                                sheet=sheet, progress=not args.no_progress)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if sheet is not None and sheet.tiles:
        report.sheet = sheet.save(args.sheet)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_text(report))
    raise SystemExit(0 if report.ok else 1)
