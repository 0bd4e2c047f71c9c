"""python -m mmtrain.provenance verify IMAGE [--json] | stamp IN OUT ...

verify exits 0 when provenance is found and holds up, 1 when none is found or a check
fails (a tampered C2PA manifest, metadata that contradicts it), 2 when the file cannot be
read.
"""

from __future__ import annotations

import argparse
import json
import sys

from PIL import Image


def _verify(args) -> int:
    from mmtrain.provenance.verify import UnreadableImage, verify

    try:
        report = verify(args.image, message=args.message, trust_anchors=args.trust_anchors)
    except UnreadableImage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(_text(report))
    if not report.found:
        print(f"no provenance found in {args.image}: no mmtrain watermark, metadata or C2PA "
              "manifest", file=sys.stderr)
    return 0 if report.ok else 1


def _text(r) -> str:
    w, c = r.watermark, r.c2pa
    lines = [f"{r.path}: {r.format} {r.size[0]}x{r.size[1]}"]
    if w.note:
        lines.append(f"watermark: not checked, {w.note}")
    else:
        lines.append(f"watermark ({w.method}, {w.message_bits}-bit message from {r.message_source}, "
                     f"{w.blocks} blocks): {'FOUND' if w.found else 'not found'}, bit accuracy "
                     f"{w.bit_accuracy:.3f}, payload {w.payload_text!r} (hex {w.payload_hex}), "
                     f"chance match {w.chance:.1e}")
    lines.append("metadata: " + (", ".join(f"{k}={v}" for k, v in r.metadata.items()) or "none"))
    if c.present:
        signer = c.signer or {}
        lines.append(f"c2pa: {c.state} (signed by {signer.get('common_name')!r} of "
                     f"{signer.get('issuer')!r}, {signer.get('alg')}; generator "
                     f"{c.claim_generator}); failures: {', '.join(c.failures) or 'none'}")
    else:
        lines.append("c2pa: none" + (f" ({c.error})" if c.error else ""))
    lines += [f"PROBLEM: {p}" for p in r.problems]
    lines.append("result: " + ("ok" if r.ok else "FAILED" if r.found else "nothing found"))
    return "\n".join(lines)


def _stamp(args) -> int:
    from mmtrain.provenance import ProvenanceConfig, manifest_sha256, stamp

    config = ProvenanceConfig(watermark=not args.no_watermark, message=args.message,
                              cert_path=args.cert, key_path=args.key)
    digest = args.manifest_sha256 or manifest_sha256(args.bundle)
    stamp(Image.open(args.input), manifest_sha256=digest, seed=args.seed, prompt=args.prompt,
          config=config, out=args.output)
    print(f"stamped {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmtrain.provenance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="report the provenance an image carries")
    v.add_argument("image")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.add_argument("--message", help="watermark message to look for (default: the one the "
                   "metadata names, else the default 'mt')")
    v.add_argument("--trust-anchors", help="PEM file of CA certificates to trust for C2PA")
    s = sub.add_parser("stamp", help="watermark, tag and (with --cert/--key) sign an image")
    s.add_argument("input")
    s.add_argument("output", help="PNG file to write")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--bundle", help="export bundle folder the image came from")
    which.add_argument("--manifest-sha256", help="sha256 of the bundle's manifest.json")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--prompt", required=True)
    s.add_argument("--message", default="mt")
    s.add_argument("--no-watermark", action="store_true")
    s.add_argument("--cert", help="PEM chain: leaf first, then its CA(s)")
    s.add_argument("--key", help="PEM private key of the leaf")
    args = parser.parse_args(argv)
    try:
        return _verify(args) if args.command == "verify" else _stamp(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
