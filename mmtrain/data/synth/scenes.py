"""Coloured-shape scenes: the image half of the synthetic world.

Each scene is one shape (colour, kind, size, position) on a plain background, with a
caption and question/answer pairs. Everything is a pure function of a seeded RNG, so a
seed reproduces the same world on every machine.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 220),
    "yellow": (235, 205, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.22, "large": 0.36}  # half-extent as a fraction of the image side
POSITIONS = {
    "center": (0.5, 0.5),
    "left": (0.3, 0.5),
    "right": (0.7, 0.5),
    "top": (0.5, 0.3),
    "bottom": (0.5, 0.7),
}
CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} on a {background} background",
    "a {colour} {shape}, {size}, at the {position}, {background} background",
    "{size} {colour} {shape} in the {position} of a {background} image",
    "a photo of a {colour} {shape}",
    # the generic word too, so prompts like "a red shape" are in the training distribution
    "a {colour} shape on a {background} background",
    "a {size} {colour} shape at the {position}",
)


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    position: str
    background: str

    def caption(self, template: int = 0) -> str:
        text = CAPTION_TEMPLATES[template % len(CAPTION_TEMPLATES)]
        text = text.format(**asdict(self)).replace(" at the center", " in the center")
        return re.sub(r"\ba (?=[aeiou])", "an ", text)

    def questions(self) -> list[dict[str, str]]:
        return [
            {"question": "what colour is the shape?", "answer": self.colour},
            {"question": "what shape is it?", "answer": self.shape},
            {"question": "is the shape large or small?", "answer": self.size},
            {"question": "where is the shape?", "answer": self.position},
            {"question": "what colour is the background?", "answer": self.background},
        ]


def sample_scene(rng: np.random.Generator) -> Scene:
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    return Scene(
        colour=pick(list(COLOURS)),
        shape=pick(SHAPES),
        size=pick(list(SIZES)),
        position=pick(list(POSITIONS)),
        background=pick(list(BACKGROUNDS)),
    )


def render_scene(scene: Scene, size: int = 64, supersample: int = 4) -> Image.Image:
    """Draws the scene at `size` px, antialiased by drawing larger and downsampling."""
    side = size * supersample
    image = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    cx, cy = (c * side for c in POSITIONS[scene.position])
    r = SIZES[scene.size] * side
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif scene.shape == "square":
        s = r * 0.85  # equal area feel next to the circle
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif scene.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif scene.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}; valid: {', '.join(SHAPES)}")
    return image.resize((size, size), Image.LANCZOS)


def dominant_colour(image: Image.Image | np.ndarray) -> str | None:
    """The object colour covering the most pixels, or None when no pixel is nearer to an
    object colour than to a background colour. Used by metrics and learning tests."""
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    names = list(COLOURS) + list(BACKGROUNDS)
    palette = np.array([COLOURS.get(n) or BACKGROUNDS[n] for n in names], dtype=np.float32)
    nearest = ((pixels[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    counts = np.bincount(nearest, minlength=len(names))[: len(COLOURS)]
    return names[int(counts.argmax())] if counts.max() > 0 else None
