"""Real documents in: PDF pages rendered with pypdfium2, words and boxes from the text
layer.

pypdfium2 gives character boxes in PDF points with a bottom-left origin; we flip y,
scale to the rendered pixels, and group characters into words ourselves (a space, a line
break or a horizontal gap wider than the characters starts a new word). A page without a
text layer (a scan) comes back with no words: read it with the OCR-free reader instead.
`write_pdf` makes a PDF with known words (standard Helvetica) for tests and demos.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

POINTS_PER_INCH = 72


def read_pdf(source: str | Path | bytes, dpi: float = 150,
             pages: list[int] | None = None) -> list[dict]:
    """-> one page dict per page: `image` (PIL RGB), `words`, `boxes` (pixels of that image,
    [x0, y0, x1, y1], top-left origin), `labels` (all "other": unknown), `page` index."""
    doc = pdfium.PdfDocument(source)
    try:
        return [read_page(doc[i], dpi) | {"page": i} for i in (pages or range(len(doc)))]
    finally:
        doc.close()


def read_page(page: pdfium.PdfPage, dpi: float = 150) -> dict:
    scale = dpi / POINTS_PER_INCH
    image = page.render(scale=scale).to_pil().convert("RGB")
    words, boxes = page_words(page, scale)
    return {"image": image, "words": words, "boxes": boxes, "labels": ["other"] * len(words)}


def page_words(page: pdfium.PdfPage, scale: float) -> tuple[list[str], list[list[float]]]:
    height = page.get_height()
    text = page.get_textpage()
    words: list[str] = []
    boxes: list[list[float]] = []
    chars: list[str] = []
    box: list[float] = []  # the word's tight (ink) box so far
    last: list[float] = []  # the previous character's loose (font-height) box

    def flush() -> None:
        if chars:
            words.append("".join(chars))
            boxes.append([round(v * scale, 2) for v in box])
            chars.clear()

    try:
        for i in range(text.count_chars()):
            ch = text.get_text_range(i, 1)
            if not ch or ch.isspace():
                flush()
                continue
            left, bottom, right, top = text.get_charbox(i)
            cbox = [left, height - top, right, height - bottom]  # flip y: top-left origin
            # grouping uses font-height boxes: a "." or "-" has a tiny ink box
            l_, b_, r_, t_ = text.get_charbox(i, loose=True)
            loose = [l_, height - t_, r_, height - b_]
            if chars and _starts_word(last, loose):
                flush()
            last = loose
            box = cbox if not chars else [min(box[0], cbox[0]), min(box[1], cbox[1]),
                                          max(box[2], cbox[2]), max(box[3], cbox[3])]
            chars.append(ch)
        flush()
    finally:
        text.close()
    return words, boxes


def _starts_word(prev: list[float], char: list[float]) -> bool:
    """Another line (little vertical overlap with the previous character), a step back
    left, or a gap over a third of the font height (text layers without space characters
    still split into words)."""
    h = max(char[3] - char[1], 1e-3)
    overlap = min(prev[3], char[3]) - max(prev[1], char[1])
    return overlap < 0.5 * h or char[0] - prev[2] > 0.33 * h or char[2] < prev[0]


def write_pdf(path: str | Path, size: tuple[float, float],
              lines: list[tuple[str, float, float, float]]) -> None:
    """One-page PDF of `size` (width, height) points; each line is (text, x, y_top,
    font_size) in points from the top-left, set in the standard Helvetica font."""
    doc = pdfium.PdfDocument.new()
    width, height = size
    page = doc.new_page(width, height)
    font = pdfium_c.FPDFText_LoadStandardFont(doc.raw, b"Helvetica")
    for text, x, y_top, font_size in lines:
        obj = pdfium_c.FPDFPageObj_CreateTextObj(doc.raw, font, ctypes.c_float(font_size))
        encoded = (text + "\x00").encode("utf-16-le")
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        pdfium_c.FPDFText_SetText(obj, ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ushort)))
        # baseline at the font's ascent below the top (Helvetica's ascent ~0.72 em)
        pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, height - y_top - 0.72 * font_size)
        pdfium_c.FPDFPage_InsertObject(page.raw, obj)
    pdfium_c.FPDFPage_GenerateContent(page.raw)
    pdfium_c.FPDFFont_Close(font)
    doc.save(str(path))
    page.close()
    doc.close()


def render_to_image(source: str | Path | bytes, index: int = 0, dpi: float = 150) -> Image.Image:
    doc = pdfium.PdfDocument(source)
    try:
        return doc[index].render(scale=dpi / POINTS_PER_INCH).to_pil().convert("RGB")
    finally:
        doc.close()
