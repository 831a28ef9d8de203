"""Every strategy on the real embedded backbones and real data beats the trivial baseline.

Kept affordable for CI on two CPU cores: few epochs, texts read as at most 2 windows of 128 tokens, image
strategies trained on 6 silhouettes per class (tested on 10 per class). The full comparison, with more epochs and
seeds, is ``benchmarks/strategies.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from headstart import TransferClassifier
from headstart.data import load_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("strategies-cache")


@pytest.fixture(scope="module")
def spam() -> dict[str, list]:
    path = SHARED / "spam-assassin" / "emails.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not found")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rng = random.Random(0)
    by_label = {lab: [r for r in rows if r["label"] == lab] for lab in ("ham", "spam")}
    for group in by_label.values():
        rng.shuffle(group)
    test = by_label["ham"][:100] + by_label["spam"][:100]  # balanced: the trivial baseline is 0.5
    pool = {lab: group[100:] for lab, group in by_label.items()}
    return {"test": test, "pool": pool}


def _train(spam: dict, per_class: int) -> tuple[list[str], list[str]]:
    rows = spam["pool"]["ham"][:per_class] + spam["pool"]["spam"][:per_class]
    return [r["text"] for r in rows], [r["label"] for r in rows]


@pytest.mark.parametrize("per_class,strategy", [
    (8, "partial"), (8, "full"), (8, "progressive"), (8, "lora"), (8, "contrastive"),
    (32, "lora"), (32, "contrastive"), (32, "auto"),
])
def test_text_strategies_beat_the_trivial_baseline(spam: dict, cache: Path, per_class: int, strategy: str) -> None:
    texts, labels = _train(spam, per_class)
    # Each strategy gets only the settings it uses (others are an error): epochs for fine-tuning, budget for auto.
    extra = {"auto": {"budget": "60s"}, "contrastive": {}}.get(strategy, {"epochs": 3})
    # Two windows: reading all 16 of every e-mail makes each fine-tuning epoch 8x dearer (minutes per test).
    clf = TransferClassifier(backbone="minilm", strategy=strategy, max_length=128, windows=2, cache=cache,
                             random_state=0, **extra).fit(texts, labels)
    test_x = [r["text"] for r in spam["test"]]
    test_y = [r["label"] for r in spam["test"]]
    accuracy = clf.score(test_x, test_y)
    print(f"\nspam {per_class}/class {strategy}: test accuracy {accuracy:.3f} (trivial 0.500)")
    assert accuracy > 0.65


@pytest.mark.parametrize("strategy", ["partial", "full", "progressive", "lora", "auto"])
def test_image_strategies_beat_the_trivial_baseline(cache: Path, strategy: str) -> None:
    path = SHARED / "animal-silhouettes"
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = load_data(path)
    train, test = data.split("train"), data.split("test")
    rng = np.random.default_rng(0)
    pick_train = [i for c in train.classes for i in rng.choice(
        [j for j, lab in enumerate(train.labels) if lab == c], 6, replace=False)]
    pick_test = [i for c in test.classes for i in rng.choice(
        [j for j, lab in enumerate(test.labels) if lab == c], 10, replace=False)]
    train, test = train.subset(pick_train), test.subset(pick_test)
    extra = {"epochs": 2} if strategy != "auto" else {"budget": "45s"}
    if strategy == "progressive":
        extra["epochs"] = 1
    clf = TransferClassifier(backbone="efficientnet_lite0", strategy=strategy, cache=cache, random_state=0,
                             **extra).fit(train)
    accuracy = clf.score(test, test.labels)
    print(f"\nanimal-silhouettes 6/class {strategy}: test accuracy {accuracy:.3f} (trivial 0.100)")
    assert accuracy > 0.3  # trivial: 0.1; with 6 images per class and 2 epochs, well above it
