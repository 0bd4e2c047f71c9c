"""The media panel evaluate() returns: one row per question, image | question | answer."""

from __future__ import annotations

from PIL import Image, ImageDraw


def qa_panel(rows: list[tuple[Image.Image, str, str, str]], side: int = 64) -> Image.Image:
    """rows of (image, question, predicted answer, gold answer); a wrong answer in red."""
    width = side + 360
    panel = Image.new("RGB", (width, side * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(panel)
    for i, (image, question, pred, gold) in enumerate(rows):
        y = i * side
        panel.paste(image.convert("RGB").resize((side, side), Image.NEAREST), (0, y))
        draw.text((side + 8, y + side // 2 - 14), question[:56], fill="black")
        colour = (0, 120, 0) if pred.strip().lower() == gold.strip().lower() else (200, 0, 0)
        draw.text((side + 8, y + side // 2 + 2), f"-> {pred[:40]}  (gold: {gold})", fill=colour)
    return panel
