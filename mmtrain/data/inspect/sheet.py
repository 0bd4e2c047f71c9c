"""The contact sheet: a grid of thumbnails, each with its key and caption under it.

Samples are added while the shards stream by (only the first K are kept, as small
thumbnails), so the sheet costs nothing on a large set. A sample whose image is bad or
missing gets a labelled placeholder tile; any other bad sample gets a red frame and its
reason in red.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from mmtrain.data.inspect.checks import field_set, payload, preview_caption, preview_image

THUMB = 128  # thumbnail side, px
COLUMNS = 8
PAD = 4
TEXT_LINES = 4  # key, reason (bad samples only), then the caption
IMAGE_REASONS = ("missing_image", "corrupt_image", "corrupt_npy")
BACKGROUND, INK, KEY_INK, BAD_INK = (255, 255, 255), (20, 20, 20), (40, 70, 160), (200, 0, 0)
FRAME = (215, 215, 215)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Hgjy|")
    return bottom - top + 3


def tile_size(thumb: int = THUMB) -> tuple[int, int]:
    return thumb + 2 * PAD, thumb + 2 * PAD + TEXT_LINES * _line_height(_font())


def sheet_size(tiles: int, thumb: int = THUMB, columns: int = COLUMNS) -> tuple[int, int]:
    """Pixel size of a sheet holding `tiles` tiles."""
    width, height = tile_size(thumb)
    cols = max(1, min(columns, tiles))
    rows = max(1, -(-tiles // cols))
    return cols * width, rows * height


@dataclass
class Tile:
    key: str
    caption: str
    image: Image.Image | None  # the thumbnail, or None for a placeholder
    reason: str | None  # why the sample is bad, None when it is fine
    note: str = ""  # placeholder text when there is no image
    fields: frozenset[str] = frozenset()  # checks.field_set of the sample


class SheetCollector:
    """Keeps thumbnails of the first `limit` samples it is offered."""

    def __init__(self, limit: int = 32, thumb: int = THUMB, columns: int = COLUMNS) -> None:
        self.limit, self.thumb, self.columns = limit, thumb, columns
        self.tiles: list[Tile] = []

    @property
    def full(self) -> bool:
        return len(self.tiles) >= self.limit

    def add(self, raw: dict, reason: str | None = None) -> None:
        if self.full:
            return
        image, why = preview_image(raw)
        if reason in IMAGE_REASONS:
            image, why = None, reason
        if image is not None:
            small = image.width < self.thumb and image.height < self.thumb
            method = Image.Resampling.NEAREST if small else Image.Resampling.BICUBIC
            image = ImageOps.contain(image, (self.thumb, self.thumb), method=method)
        note = (why or "").split(":")[0]
        self.tiles.append(Tile(str(raw.get("__key__")), preview_caption(raw), image, reason, note,
                               field_set(payload(raw))))

    def render(self) -> Image.Image:
        font = _font()
        line = _line_height(font)
        tile_w, tile_h = tile_size(self.thumb)
        sheet = Image.new("RGB", sheet_size(len(self.tiles), self.thumb, self.columns), BACKGROUND)
        draw = ImageDraw.Draw(sheet)
        cols = max(1, min(self.columns, len(self.tiles)))
        for i, tile in enumerate(self.tiles):
            x, y = (i % cols) * tile_w + PAD, (i // cols) * tile_h + PAD
            box = (x, y, x + self.thumb - 1, y + self.thumb - 1)
            if tile.image is None:
                self._placeholder(draw, box, tile.note or "no image", font)
            else:
                ox = x + (self.thumb - tile.image.width) // 2
                oy = y + (self.thumb - tile.image.height) // 2
                sheet.paste(tile.image, (ox, oy))
            if tile.reason:
                draw.rectangle(box, outline=BAD_INK, width=2)
            else:
                draw.rectangle(box, outline=FRAME)
            ty = y + self.thumb + 2
            draw.text((x, ty), _fit(tile.key, font, self.thumb), fill=KEY_INK, font=font)
            if tile.reason:
                ty += line
                draw.text((x, ty), _fit(tile.reason, font, self.thumb), fill=BAD_INK, font=font)
            text = _wrap(tile.caption, font, self.thumb, TEXT_LINES - 1 - bool(tile.reason))
            for n, part in enumerate(text, start=1):
                draw.text((x, ty + n * line), part, fill=INK, font=font)
        return sheet

    def save(self, path: str | os.PathLike) -> str:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.render().save(path, format="PNG")
        return path

    @staticmethod
    def _placeholder(draw: ImageDraw.ImageDraw, box, note: str, font) -> None:
        x0, y0, x1, y1 = box
        draw.rectangle(box, fill=(225, 225, 225))
        draw.line((x0, y0, x1, y1), fill=(170, 170, 170), width=2)
        draw.line((x0, y1, x1, y0), fill=(170, 170, 170), width=2)
        text = _fit(note, font, x1 - x0 - 4)
        width = font.getlength(text)
        draw.text((x0 + (x1 - x0 - width) / 2, (y0 + y1) / 2 - 6), text, fill=BAD_INK, font=font)


def _fit(text: str, font, width: int) -> str:
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _wrap(text: str, font, width: int, lines: int) -> list[str]:
    """Word-wrapped to `width` px in at most `lines` lines; the last one ends in ... when
    the text is longer."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        current = words.pop(0)
        while words and font.getlength(current + " " + words[0]) <= width:
            current += " " + words.pop(0)
        out.append(current)
    if words and out:
        out[-1] = _fit(out[-1] + " " + " ".join(words), font, width)
    return [_fit(part, font, width) for part in out]
