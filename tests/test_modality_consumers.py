"""Audit, evaluation, strategies and model ask the data's modality instead of comparing its name.

A modality defined here (``probe-vectors``: 1-D numpy vectors, registered for one test at a
time) changes each answer the core modules ask for, and every test checks that the core module
followed it: the old name branches gave the image answer (or nothing) to anything not text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headstart import modalities as modality_registry
from headstart.audit import audit_dataset
from headstart.audit.base import CHECKS, Outcome, register
from headstart.data import Dataset, from_memory
from headstart.errors import ConfigError
from headstart.evaluation import baselines as B
from headstart.evaluation.proof import mistakes
from headstart.modalities.base import Modality
from headstart.modalities.text import SHINGLE_JACCARD, TextModality
from headstart.strategies import STRATEGIES
from headstart.strategies.auto import candidates
from headstart.transferability.ranking import resolve_candidates

NAME = "probe_vectors"
DIM = 8


class ProbeVectors(Modality):
    name = NAME
    plural = "vectors"
    default_backbone = "tiny-cnn"
    augment_by_default = True
    finetune_lr = 0.123
    lora_lr = 0.456
    scratch_lr = 0.789
    classic_recipe = "dense"
    classic_name = "classic: logistic regression on the vector"
    classic_note = "the 8 raw values"
    near_key_how = "rounded"
    near_fingerprint_how = "direction"
    near_without_backbone = "rounded and rescaled copies only"

    def preview(self, item: Any, locator: str) -> dict[str, Any]:
        return {"kind": "text", "text": f"vector {locator}"}

    def auto_candidates(self, per_class: float, gpu: bool) -> list[tuple[str, dict[str, Any], str]]:
        return [("full", {"epochs": 2}, "vectors are cheap")]

    def inspect(self, item: Any, locator: str) -> dict[str, Any]:
        v = np.asarray(item, dtype=np.float32)
        return {"error": None, "fingerprint": v / np.linalg.norm(v)}

    def near_key(self, item: Any) -> str | None:
        return str(np.round(np.asarray(item), 1).tolist())

    def same_content(self, a: Any, b: Any) -> bool:
        return bool(np.sign(a[0]) == np.sign(b[0]))  # the content test rejects pairs of opposite signs


@pytest.fixture
def vectors(monkeypatch: pytest.MonkeyPatch) -> ProbeVectors:
    modality = ProbeVectors()
    monkeypatch.setitem(modality_registry._REGISTRY, NAME, modality)
    return modality


def _data(n_per_class: int = 15, seed: int = 0) -> Dataset:
    """Two classes of random vectors told apart by the sign of their first value, in distinct directions."""
    rng = np.random.default_rng(seed)
    items = [(rng.normal(0, 1, DIM) + np.eye(DIM)[0] * (3 if c else -3)).astype(np.float32)
             for c in range(2) for _ in range(n_per_class)]
    labels = [f"c{c}" for c in range(2) for _ in range(n_per_class)]
    return Dataset(items=items, labels=labels, modality=NAME)


# ---------------------------------------------------------------------------- audit
def test_a_check_declared_for_some_modalities_is_skipped_on_others(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setitem(CHECKS, "probe-only-images", None)  # restored (removed) after the test
    register("probe-only-images", "Probe", "Runs on images only.", modalities="image")(
        lambda ctx: calls.append(ctx) or Outcome("ok", "ran"))
    assert CHECKS["probe-only-images"].modalities == ("image",)
    texts = from_memory(["one text", "another text"], ["a", "b"])
    result = audit_dataset(texts, backbone=None, checks=["probe-only-images"]).check("probe-only-images")
    assert (result.severity, result.summary, calls) == ("skipped", "not image data", [])


def test_checks_of_one_modality_skip_other_data_and_no_files_are_read(vectors: ProbeVectors) -> None:
    report = audit_dataset(_data(), backbone=None,
                           checks=["empty-texts", "image-properties", "unreadable-files"])
    assert report.check("empty-texts").summary == "not text data"
    assert report.check("image-properties").summary == "not image data"
    assert (report.check("unreadable-files").severity, report.check("unreadable-files").summary) == ("ok", "no file inputs")


def test_near_duplicates_use_the_modalitys_key_fingerprint_and_content_test(vectors: ProbeVectors) -> None:
    data = _data()
    data.items[1] = data.items[0] + np.float32(1e-3)  # the same up to rounding: equal near_key
    data.items[20] = data.items[16] * np.float32(3)    # a rescaled copy: the same direction (fingerprint)
    report = audit_dataset(data, backbone=None, checks=["near-duplicates"])
    near = report.check("near-duplicates")
    assert near.summary.endswith("(rounded and rescaled copies only: no backbone ran)")
    hows = {tuple(f.items): f.detail.split(" similarity")[0] for f in near.findings}
    assert hows == {(0, 1): "rounded", (16, 20): "direction"}

    # Embedding pairs are kept only when the modality says the items hold the same content.
    features = np.stack([np.asarray(v, dtype=np.float32) for v in data.items])
    features[5] = features[3]            # close embeddings, same sign: kept
    features[25] = features[4] * 1.0001  # close embeddings, opposite signs (classes): rejected
    found = audit_dataset(data, features=features, checks=["near-duplicates"]).check("near-duplicates")
    pairs = {tuple(f.items): f.detail.split(" similarity")[0] for f in found.findings}
    assert pairs.get((3, 5)) == "embedding" and (4, 25) not in pairs


def test_the_audit_embeds_with_the_modalitys_default_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TextModality, "default_backbone", "tiny-bert")
    texts = from_memory(["red apple pie", "green apple tart", "blue car wheel", "black car door"],
                        ["food", "food", "car", "car"])
    report = audit_dataset(texts, backbone="default", checks=["near-duplicates"], cache=False)
    assert report.backbone["name"] == "tiny-bert"


def test_the_near_duplicate_description_states_the_text_threshold() -> None:
    assert f"{SHINGLE_JACCARD:.0%} of their 3-word shingles" in CHECKS["near-duplicates"].description


def test_texts_are_compared_beyond_their_first_20000_characters() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    opening = " ".join(rng.choice(words, 5000))  # ~30,000 characters in common
    a, b = (opening + " " + " ".join(rng.choice(words, 30_000)) for _ in range(2))
    assert not TextModality().same_content(a, b)  # the audit always read 200,000 characters


# ---------------------------------------------------------------------------- evaluation
def test_the_classic_baseline_follows_the_modalitys_recipe(vectors: ProbeVectors) -> None:
    train, test = _data(seed=0), _data(seed=1)
    classic = B.classic(train, test, ["c0", "c1"])
    assert classic.name == "classic: logistic regression on the vector"
    assert classic.note.startswith("the 8 raw values, C=")
    assert (classic.proba.argmax(1) == np.array([0] * 15 + [1] * 15)).mean() == 1.0

    vectors.classic_recipe = "tfidf"  # the instance only: strings in, TF-IDF + logistic regression
    vectors.classic_inputs = lambda items, locators: ["low" if v[0] < 0 else "high" for v in items]
    assert (B.classic(train, test, ["c0", "c1"]).proba.argmax(1) == np.array([0] * 15 + [1] * 15)).all()

    vectors.classic_recipe = "raw"
    with pytest.raises(ConfigError, match=r"probe_vectors modality's classic_recipe is 'raw'.*tfidf, dense"):
        B.classic(train, test, ["c0", "c1"])


def test_mistakes_are_previewed_by_the_modality(vectors: ProbeVectors) -> None:
    test = _data(n_per_class=2)
    proba = np.tile([0.1, 0.9], (4, 1))  # everything called c1: items 0 and 1 are wrong
    shown = mistakes(test, proba, ["c0", "c1"])
    assert [m["preview"] for m in shown] == [{"kind": "text", "text": f"vector {test.locators[i]}"} for i in (0, 1)]


# ---------------------------------------------------------------------------- strategies and model
def test_strategies_take_their_defaults_from_the_modality(vectors: ProbeVectors) -> None:
    assert STRATEGIES["full"]().lr(NAME) == 0.123
    assert STRATEGIES["lora"]().lr(NAME) == 0.456
    assert STRATEGIES["full"]().train_config(1, NAME).augment is True
    assert STRATEGIES["full"](augment=False).train_config(1, NAME).augment is False
    assert STRATEGIES["full"](lr=0.01).lr(NAME) == 0.01
    assert candidates(NAME, 50.0, torch.device("cpu")) == [("full", {"epochs": 2}, "vectors are cheap")]


def test_auto_refuses_a_candidate_that_is_not_a_strategy(vectors: ProbeVectors) -> None:
    vectors.auto_candidates = lambda per_class, gpu: [("fulll", {}, "a typo")]
    with pytest.raises(ConfigError, match=r"proposes 'fulll' as an auto candidate.*known: .*full"):
        candidates(NAME, 50.0, torch.device("cpu"))


def test_default_backbones_come_from_the_modality(monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.classifier import TransferClassifier

    monkeypatch.setattr(TextModality, "default_backbone", "tiny-bert")
    backbone = TransferClassifier(max_length=16)._build_backbone("text")
    assert (backbone.spec.name, backbone.max_length) == ("tiny-bert", 16)
    assert resolve_candidates("offline", "text")[-1] == "random:tiny-bert"


def test_a_backbone_of_another_modality_names_the_modalitys_default(vectors: ProbeVectors) -> None:
    from headstart.classifier import TransferClassifier

    with pytest.raises(ConfigError, match=r"takes text but the data is probe_vectors.*such as 'tiny-cnn'"):
        TransferClassifier(backbone="tiny-bert")._build_backbone(NAME)
