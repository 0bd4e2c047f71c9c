"""python -m mmtrain.generate --bundle DIR --prompt TEXT --out DIR [options]

Generates from an exported t2i bundle (pipeline + styles/retrieval + cascade refiners),
writes PNGs that each carry an invisible watermark, PNG metadata (the bundle's manifest
sha256, the seed, the prompt's sha256) and, with --sign-cert/--sign-key, a signed C2PA
manifest, plus OUT/report.json. Check an image with `python -m mmtrain.provenance verify`.

Exit codes: 0 written, 2 bad arguments or bundle (the message says what to fix).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmtrain.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="exported t2i bundle folder "
                        "(runs/<name>/export/t2i)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--out", required=True, help="folder for the PNGs and report.json")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    parser.add_argument("--n", type=int, default=1, help="number of images")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the bundle's)")
    parser.add_argument("--sampler", help="ddim | ddpm | dpm (default: the bundle's)")
    parser.add_argument("--guidance-scale", type=float, help="default: the bundle's")
    parser.add_argument("--style", help="a style preset of the bundle")
    parser.add_argument("--no-refine", action="store_true",
                        help="base images only (skip the bundle's cascade refiners)")
    parser.add_argument("--no-watermark", action="store_true")
    parser.add_argument("--watermark-message", default="mt")
    parser.add_argument("--sign-cert", help="PEM chain (leaf first) to sign C2PA manifests")
    parser.add_argument("--sign-key", help="PEM private key of the leaf")
    args = parser.parse_args(argv)
    try:
        from mmtrain.generate.bundle import load_bundle
        from mmtrain.generate.images import generate
        from mmtrain.provenance import ProvenanceConfig

        config = ProvenanceConfig(watermark=not args.no_watermark,
                                  message=args.watermark_message,
                                  cert_path=args.sign_cert, key_path=args.sign_key)
        for path in (args.sign_cert, args.sign_key):
            if path is not None:
                open(path, "rb").close()  # a missing file fails here, before sampling
        bundle = load_bundle(args.bundle)
        report = generate(bundle, args.prompt, args.out, seed=args.seed, n=args.n,
                          negative_prompt=args.negative_prompt, style=args.style,
                          steps=args.steps, sampler=args.sampler,
                          guidance_scale=args.guidance_scale, refine=not args.no_refine,
                          provenance=config)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for image in report["images"]:
        print(f"wrote {args.out}/{image['file']} ({image['size'][0]}x{image['size'][1]}, "
              f"seed {image['seed']}, watermark: {image['watermark']}, "
              f"c2pa: {'signed' if image['c2pa'] else 'no'})")
    print(f"report: {args.out}/report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
