"""`verify`: what provenance an image file carries, and whether it holds up."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mmtrain.provenance import credentials, metadata, watermark
from mmtrain.provenance.config import ProvenanceConfig

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff",
         "GIF": "image/gif", "BMP": "image/bmp"}


class UnreadableImage(ValueError):
    pass


@dataclass
class Report:
    path: str
    format: str
    size: tuple[int, int]
    watermark: watermark.WatermarkResult | None
    message_source: str  # where the expected watermark message came from
    metadata: dict[str, str]
    c2pa: credentials.C2paResult
    problems: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool((self.watermark and self.watermark.found) or self.metadata
                    or self.c2pa.present)

    @property
    def ok(self) -> bool:
        """Something was found and nothing found contradicts it."""
        return self.found and not self.problems

    def to_dict(self) -> dict:
        return asdict(self) | {"found": self.found, "ok": self.ok}


def verify(path: str | Path, *, message: str | None = None,
           trust_anchors: str | None = None) -> Report:
    """Reads `path` and reports its watermark, mmtrain metadata and C2PA manifest.
    The watermark message to look for: `message`, else the one the metadata names,
    else ProvenanceConfig's default."""
    path = Path(path)
    try:
        data = path.read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as e:
        raise UnreadableImage(f"cannot read {path}: not an image format Pillow knows") from e
    except OSError as e:  # missing, unreadable, truncated
        raise UnreadableImage(f"cannot read {path}: {e}") from e
    fields = metadata.read(image)
    source = "argument"
    if message is None and metadata.message_of(fields.get("watermark", "")):
        message, source = metadata.message_of(fields["watermark"]), "metadata"
    if message is None:
        message, source = ProvenanceConfig.message, "default"
    mark = watermark.detect(image, message)
    c2pa = credentials.read(data, _MIME.get(image.format, "image/png"), trust_anchors)
    problems = []
    if c2pa.present and c2pa.state not in ("Valid", "Trusted"):
        problems.append(f"C2PA manifest fails validation ({c2pa.state}: "
                        f"{', '.join(c2pa.failures) or 'no detail'}): the file changed "
                        "after signing, or the signature is bad")
    if c2pa.generation and fields:
        differ = [k for k in ("manifest_sha256", "prompt_sha256", "seed")
                  if k in fields and str(c2pa.generation.get(k)) != fields[k]]
        if differ:
            problems.append(f"PNG metadata disagrees with the signed C2PA assertion on "
                            f"{', '.join(differ)}")
    if fields.get("watermark", "none") != "none" and not mark.found and not mark.note:
        problems.append("the metadata says a watermark was embedded but it does not decode "
                        f"(bit accuracy {mark.bit_accuracy:.2f}): the pixels were changed")
    return Report(str(path), image.format or "?", image.size, mark, source, fields, c2pa,
                  problems)
