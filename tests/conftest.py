"""Shared fixtures: an isolated embedding cache, tiny synthetic datasets with a known answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The real datasets live in shared/ beside the repository (as in CI's clone); override with
# HEADSTART_SHARED_DATASETS.
SHARED = Path(os.environ.get("HEADSTART_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own embedding cache and no hub access."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("HEADSTART_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # No MLflow store in the working directory: tracking is off, and points at a per-test store
    # for a test that turns it on (monkeypatch.delenv("HEADSTART_NO_TRACK")).
    store = tmp_path_factory.mktemp("mlruns") / "mlruns.db"
    monkeypatch.setenv("HEADSTART_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("HEADSTART_NO_TRACK", "1")
    return cache


POSITIVE = ["good", "great", "lovely", "superb", "happy", "nice", "fine", "excellent"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "sad", "nasty", "broken", "horrid"]


def make_texts(n_per_class: int = 20, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two classes of short texts told apart by their (disjoint) vocabularies."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
        for i in range(n_per_class):
            picked = rng.choice(words, size=3)
            texts.append(f"{' '.join(picked)} item {i}")
            labels.append(label)
    return texts, labels


def make_image(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A bright disc on dark ground ("disc") or a dark square on bright ground ("square")."""
    yy, xx = np.mgrid[:size, :size]
    cx, cy = rng.integers(10, size - 10, size=2)
    if kind == "disc":
        img = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < 36, 230, 20)
    else:
        img = np.where((abs(xx - cx) < 6) & (abs(yy - cy) < 6), 20, 230)
    noise = rng.integers(0, 20, size=(size, size))
    return Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8)).convert("RGB")


@pytest.fixture
def text_table(tmp_path: Path) -> Path:
    import pandas as pd

    texts, labels = make_texts(20)
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts, "label": labels, "source": ["a", "b"] * 20}).to_csv(path, index=False)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for kind in ("disc", "square"):
        (root / kind).mkdir(parents=True)
        for i in range(15):
            make_image(kind, rng).save(root / kind / f"{kind}_{i:02d}.png")
    return root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow tests (real backbones, real datasets)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def plugin() -> Iterator[object]:
    """The toy third modality (tests/toy_modality.py), loaded as a user's plugin is: by $HEADSTART_MODALITIES."""
    from headstart.modalities import ENV_VAR, get_modality, load_plugins

    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "toy_modality"
    load_plugins()
    yield get_modality("vectors")
    if saved is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = saved
