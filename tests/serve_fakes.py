"""A fake engine for the service's tests, in a module light enough for a server subprocess to
import (no torch): ``HEADSTART_SERVE_ENGINE_FACTORY=serve_fakes:fake_text_engine``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class FakeEngine:
    """Text: P(spam) = words / 10 (capped); image: P(bright) = mean brightness. Records the images
    of each call, to see how many decoded pixels the service held at once."""

    def __init__(self, modality: str = "text", batch_size: int = 8) -> None:
        self.name, self.modality, self.batch_size = "fake", modality, batch_size
        self.classes = ["ham", "spam"] if modality == "text" else ["dark", "bright"]
        self.metadata = {"labels": self.classes, "backbone": {"name": "fake", "source": "/srv/models/secret-folder"},
                         "bundle": "/home/someone/runs/spam", "verdict": None}
        self.calls: list[list[tuple[int, int]]] = []

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray:
        if self.modality == "text":
            p = np.array([min(len(t.split()), 10) / 10 for t in items])
        else:
            self.calls.append([im.size for im in items])
            # np.mean over uint8 accumulates in chunks: no float copy of a large image
            p = np.array([float(np.asarray(im).mean()) / 255 for im in items])
        return np.column_stack([1 - p, p])


def fake_text_engine(bundle: str, engine: str) -> FakeEngine:
    """For HEADSTART_SERVE_ENGINE_FACTORY=serve_fakes:fake_text_engine (a server subprocess)."""
    return FakeEngine("text")


def fake_image_engine(bundle: str, engine: str) -> FakeEngine:
    return FakeEngine("image")
