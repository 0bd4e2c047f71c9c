"""Form-like document pages (FUNSD style): the document half of the synthetic world.

A page is a header, question/answer pairs ("Name:" "Alice Smith") in one or two columns
with answers right of or below their questions, and a line or two of other text. Every
word comes with a box measured from the font that drew it, a FUNSD entity label, and the
entity/link structure; `fields` is what an OCR-free reader (Donut-like) should output.
Everything is a pure function of a seeded RNG and the page size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABELS = ("header", "question", "answer", "other")
PAPER = (255, 255, 255)
INK = {
    "header": (10, 10, 10),
    "question": (30, 30, 30),
    "answer": (20, 40, 140),
    "other": (90, 90, 90),
}

Rng = np.random.Generator
_FIRST = ("Alice", "Bob", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas")
_LAST = ("Smith", "Novak", "Okafor", "Tanaka", "Garcia", "Muller", "Rossi", "Berg", "Khan", "Lee")
_CITIES = ("Lisbon", "Oslo", "Nairobi", "Lyon", "Osaka", "Quito", "Perth", "Tartu", "Accra")
_COUNTRIES = ("Portugal", "Norway", "Kenya", "France", "Japan", "Ecuador", "Estonia", "Ghana")


def _pick(rng: Rng, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _name(rng: Rng) -> str:
    return f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}"


def _date(rng: Rng) -> str:
    return f"{rng.integers(2019, 2026)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"


def _money(rng: Rng) -> str:
    return f"${rng.integers(1, 1000)}.{rng.integers(0, 100):02d}"


def _email(rng: Rng) -> str:
    return f"{_pick(rng, _FIRST)[0].lower()}{_pick(rng, _LAST).lower()}@mail.com"


# Each form kind: headers, question -> answer generator, other lines. Answers stay short
# enough (<= ~100 px at 11 px type) to fit a column of a two-column 256 px page.
FORMS: dict[str, dict] = {
    "invoice": {
        "headers": ("INVOICE", "Tax Invoice", "Sales Invoice"),
        "questions": {
            "Invoice No.": lambda r: f"INV-{r.integers(10000):05d}",
            "Date": _date,
            "Due Date": _date,
            "Customer": _name,
            "Amount": _money,
            "Tax": _money,
            "Total": _money,
            "Account": lambda r: f"AC-{r.integers(10000):04d}",
            "Quantity": lambda r: str(r.integers(1, 100)),
        },
        "other": ("Thank you for your business.", "Payment due within 30 days.", "Page 1 of 1"),
    },
    "registration": {
        "headers": ("Registration Form", "Member Registration", "Course Enrolment"),
        "questions": {
            "Name": _name,
            "Date of Birth": _date,
            "Email": _email,
            "Phone": lambda r: f"555-{r.integers(10000):04d}",
            "City": lambda r: _pick(r, _CITIES),
            "Country": lambda r: _pick(r, _COUNTRIES),
            "Member ID": lambda r: f"M-{r.integers(100000):05d}",
            "Date": _date,
        },
        "other": ("Please write in capitals.", "All fields are required.", "Office use only"),
    },
}


@dataclass(frozen=True)
class Entity:
    id: int
    label: str
    text: str
    word_ids: list[int]
    box: list[int]  # [x0, y0, x1, y1] union of its word boxes, pixels


@dataclass
class DocumentPage:
    image: Image.Image
    form: str
    words: list[str]
    boxes: list[list[int]]  # per word [x0, y0, x1, y1], pixels, tight around the ink
    labels: list[str]  # per word, one of LABELS
    entities: list[Entity]
    links: list[list[int]]  # [question entity id, answer entity id]
    fields: dict[str, str]  # question text without colon -> answer text

    def annotation(self) -> dict:
        """Everything but the image, JSON-ready."""
        return {
            "form": self.form,
            "width": self.image.width,
            "height": self.image.height,
            "words": self.words,
            "boxes": self.boxes,
            "labels": self.labels,
            "entities": [asdict(e) for e in self.entities],
            "links": self.links,
            "fields": self.fields,
        }


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


class _PageWriter:
    """Draws entities word by word, recording each word's measured box."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), PAPER)
        self.draw = ImageDraw.Draw(self.image)
        self.words: list[str] = []
        self.boxes: list[list[int]] = []
        self.labels: list[str] = []
        self.entities: list[Entity] = []

    def add(self, text: str, label: str, x: int, y: int, font: ImageFont.FreeTypeFont) -> Entity:
        word_ids = []
        for i, word in enumerate(text.split()):
            # Offsets from the whole prefix keep the spacing the font would give the line.
            wx = x + round(font.getlength(" ".join(text.split()[:i]) + " ")) if i else x
            self.draw.text((wx, y), word, font=font, fill=INK[label])
            word_ids.append(len(self.words))
            self.words.append(word)
            self.boxes.append(list(self.draw.textbbox((wx, y), word, font=font)))
            self.labels.append(label)
        boxes = np.array([self.boxes[i] for i in word_ids])
        box = [*boxes[:, :2].min(0).tolist(), *boxes[:, 2:].max(0).tolist()]
        entity = Entity(len(self.entities), label, text, word_ids, box)
        self.entities.append(entity)
        return entity


def sample_document(rng: Rng, width: int = 256, height: int = 256) -> DocumentPage:
    form = _pick(rng, tuple(FORMS))
    vocab = FORMS[form]
    body, head = _font(max(8, round(height / 23))), _font(max(10, round(height / 16)))
    line = sum(body.getmetrics()) + 3
    margin, gutter = round(width * 0.05), round(width * 0.05)
    columns = int(rng.integers(1, 3))
    answers_below = bool(rng.integers(2))
    col_width = (width - 2 * margin - gutter * (columns - 1)) // columns

    page = _PageWriter(width, height)
    header = _pick(rng, vocab["headers"])
    hx = margin if rng.integers(2) else (width - round(head.getlength(header))) // 2
    y = page.add(header, "header", hx, margin, head).box[3] + line // 2
    if rng.integers(2):
        page.add(_pick(rng, vocab["other"]), "other", margin, y, body)
        y += line + line // 2

    footer = _pick(rng, vocab["other"])
    bottom = height - margin - line  # the footer's line
    questions: dict[str, Callable[[Rng], str]] = vocab["questions"]
    order = rng.permutation(len(questions))[: int(rng.integers(3, len(questions) + 1))]
    links, fields = [], {}
    column, cy = 0, y
    for q in (list(questions)[i] for i in order):
        answer, question = questions[q](rng), f"{q}:"
        x = margin + column * (col_width + gutter)
        q_width, a_width = body.getlength(question + " "), body.getlength(answer)
        below = answers_below or q_width + a_width > col_width
        if below and a_width + line // 2 > col_width:
            continue  # only on narrow pages: this answer fits no column
        rows = 2 if below else 1
        if cy + rows * line > bottom:  # column full: next column, or the page is full
            column, cy = column + 1, y
            x = margin + column * (col_width + gutter)
            if column == columns:
                break
        q_entity = page.add(question, "question", x, cy, body)
        ax, ay = (x + line // 2, cy + line) if below else (x + round(q_width), cy)
        a_entity = page.add(answer, "answer", ax, ay, body)
        links.append([q_entity.id, a_entity.id])
        fields[q] = answer
        cy += rows * line + line // 3
    page.add(footer, "other", margin, bottom, body)
    return DocumentPage(
        page.image, form, page.words, page.boxes, page.labels, page.entities, links, fields
    )
