"""`python -m mmtrain.data encode-latents --from BUNDLE --shards PATTERN --out DIR`:
argument parsing and the end-of-run report. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys
import time

from mmtrain.data.cli_args import positive

EPILOG = """Writes DIR/latents-NNNNNN.tar and DIR/latents.json (the fingerprints of the
autoencoder, text encoder and tokenizer that encoded them). Use one --out per split.
Train on them with data=latents data.root=PARENT model.t2i.pretrained_path=BUNDLE
(docs/latents.md). Rerunning the same command continues an interrupted run."""


def add_encode_latents_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "encode-latents",
        help="encode image+caption shards into t2i latent shards (train without the VAE)",
        description="Encodes image+caption shards through a text-to-image bundle's "
        "autoencoder (and text encoder) into latent shards.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="bundle", required=True, metavar="BUNDLE",
                        help="t2i export bundle (runs/<name>/export/t2i, or the run "
                        "directory); its autoencoder may be kl, vq or vq2")
    parser.add_argument("--shards", required=True, metavar="PATTERN",
                        help="image+caption shards: a directory, glob, brace range or pipe:")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--batch-size", type=positive, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available")
    parser.add_argument("--shard-size", type=positive, default=1000,
                        help="samples per output shard (default 1000)")
    parser.add_argument("--resolution", type=positive, default=None,
                        help="image side in px (default: the bundle's)")
    parser.add_argument("--no-text", dest="text", action="store_false",
                        help="store no text-encoder states (captions are encoded during "
                        "training, and the text encoder may train)")
    parser.add_argument("--with-std", dest="std", action="store_true",
                        help="also store the posterior std (latent_std.npy): training then "
                        "samples the posterior exactly as from pixels; doubles latent bytes (kl only)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from mmtrain.data.latents.encode import EncodeError, EncodeOptions, encode_latents
    from mmtrain.data.sources import DataError

    for library in (diffusers_logging, transformers_logging):  # loading chatter, bars
        library.set_verbosity_error()
        library.disable_progress_bar()

    options = EncodeOptions(
        bundle=args.bundle, shards=args.shards, out=args.out, batch_size=args.batch_size,
        device=args.device, shard_size=args.shard_size, text=args.text, std=args.std,
        resolution=args.resolution, progress=not args.no_progress)
    started = time.perf_counter()
    try:
        manifest = encode_latents(options)
    except (EncodeError, DataError) as err:
        sys.exit(f"encode-latents: {err}")
    seconds = time.perf_counter() - started
    skipped = ", ".join(f"{r} {n}" for r, n in sorted(manifest["skipped"].items())) or "none"
    print(f"latents of {manifest['samples']} samples in {len(manifest['shards'])} shard(s) "
          f"at {args.out} ({manifest['bytes_per_sample']} bytes/sample, "
          f"latent {manifest['latent']['shape']} {manifest['latent']['posterior']}"
          f"{', text ' + str(manifest['text']['shape']) if manifest['text'] else ''}) "
          f"in {seconds:.1f} s")
    print(f"  skipped: {skipped}; unreadable shards: {len(manifest['unreadable_shards'])}")
    print(f"  autoencoder {manifest['autoencoder'].get('kind', 'kl')} sha256 "
          f"{manifest['autoencoder']['sha256']}")
    print(f"  manifest: {args.out}/latents.json")
