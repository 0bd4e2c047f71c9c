"""`stamp`: the invisible watermark, PNG metadata and (when configured) a C2PA manifest."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from PIL import Image

import mmtrain
from mmtrain.provenance import credentials, metadata, watermark
from mmtrain.provenance.config import ProvenanceConfig


def manifest_sha256(bundle: str | Path) -> str:
    """The sha256 of an export bundle's manifest.json: names the exact model that made an
    image (the manifest lists the sha256 of every file of the bundle)."""
    from mmtrain.export.bundle import MANIFEST
    from mmtrain.files import sha256_file

    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass an export bundle folder "
                                "(python -m mmtrain.export run=runs/<name>)")
    return sha256_file(path)


def stamp(image: Image.Image, *, manifest_sha256: str, seed: int, prompt: str,
          config: ProvenanceConfig | None = None, out: str | Path | None = None) -> bytes:
    """PNG bytes of `image` carrying its provenance; also written to `out` when given
    (atomically: a temp name, then a rename)."""
    config = config or ProvenanceConfig()
    if not re.fullmatch(r"[0-9a-f]{64}", manifest_sha256 or ""):
        raise ValueError(f"manifest_sha256 must be 64 lowercase hex digits, got "
                         f"{manifest_sha256!r} (see provenance.manifest_sha256(bundle))")
    image = image.convert("RGB")  # an alpha channel would not survive the watermark maths
    fields = {"version": mmtrain.__version__, "manifest_sha256": manifest_sha256,
              "seed": str(int(seed)), "prompt_sha256": metadata.prompt_sha256(prompt),
              "watermark": "none"}
    if config.watermark:
        image = watermark.embed(image, watermark.message_bits(config.message))
        fields["watermark"] = metadata.watermark_field(config.message)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=metadata.png_info(fields))
    data = buf.getvalue()
    if config.signs:  # last: the manifest's hash covers pixels and text chunks alike
        data = credentials.sign_png(data, fields | {"seed": int(seed)}, config)
    if out is not None:
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return data
