"""Shared fixtures for the retrieval tests: the real MiniLM encoder (loaded once) and
real sentences (docstrings of a few standard-library modules, offline)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from mmtrain.rag.chunking import chunk_text

STDLIB = ("argparse", "collections", "json", "pathlib", "typing", "logging", "subprocess",
          "tarfile", "zipfile", "email.message", "http.client", "unittest.case", "csv",
          "datetime", "decimal", "fractions", "statistics", "shutil", "tempfile", "textwrap")


@pytest.fixture(scope="session")
def encoder():
    from mmtrain.rag.encoder import MiniLMEncoder

    return MiniLMEncoder(max_length=128)


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """~300 unique real passages (>= 8 words), in a fixed order."""
    out: list[str] = []
    for name in STDLIB:
        tree = ast.parse(Path(importlib.import_module(name).__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.Module)):
                doc = ast.get_docstring(node)
                for ch in chunk_text(doc or "", max_words=48, overlap=8):
                    if len(ch.text.split()) >= 8 and ch.text not in out:
                        out.append(ch.text)
    return out[:300]


@pytest.fixture(scope="session")
def embedded(encoder, sentences) -> np.ndarray:
    return encoder.embed(sentences)
