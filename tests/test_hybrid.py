"""The hybrid: TF-IDF replay, the stacking rule, the estimator, bundles and the ONNX engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import headstart
from headstart import TransferClassifier
from headstart.errors import BundleError, ConfigError
from headstart.hybrid import TfidfModel, _vectorizer, fit_hybrid

FILLER = ("the", "and", "of", "report", "week", "team", "note", "update", "data", "plan", "call", "item")
KEYWORDS = ("zircon", "quokka", "bramble", "fjord")


def keyword_texts(per_class: int = 12, seed: int = 0) -> tuple[list[str], list[str]]:
    """Four classes told apart by one keyword hidden among shared filler words: TF-IDF reads it
    at once; a tiny random encoder's pooled features mostly see the filler."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, word in zip("abcd", KEYWORDS):
        for _ in range(per_class):
            words = list(rng.choice(FILLER, size=30))
            words.insert(int(rng.integers(0, 30)), word)
            texts.append(" ".join(words))
            labels.append(label)
    return texts, labels


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_replay_equals_scikit_learn(n_classes: int) -> None:
    texts, labels = keyword_texts(10)
    texts += ["Ünïcode wörds ÀND Capitals", "", "x y z", "zircon zircon zircon fjord"]
    labels += ["a", "b", "c", "d"]
    keep = [i for i, v in enumerate(labels) if v in "abcd"[:n_classes]]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    y = np.array(["abcd".index(v) for v in labels])
    vectorizer = _vectorizer()
    model = LogisticRegression(C=10, max_iter=2000).fit(vectorizer.fit_transform(texts), y)
    replay = TfidfModel.from_sklearn(vectorizer, model, n_classes)
    unseen = ["never seen words", "ZIRCON quokka", "", "fjord, fjord; bramble!"]
    expected = model.decision_function(vectorizer.transform(texts + unseen))
    if n_classes == 2:
        expected = np.column_stack([np.zeros_like(expected), expected])
    np.testing.assert_allclose(replay.logits(texts + unseen), expected, atol=1e-10)


def test_stacking_is_used_only_when_it_clearly_wins() -> None:
    texts, labels = keyword_texts(12)
    y = np.array(["abcd".index(v) for v in labels])
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2, len(y), 4))  # a transfer model that knows nothing
    hybrid, evidence = fit_hybrid(texts, y, noise, seed=0)
    assert hybrid is not None and evidence["used"] and evidence["weight"] < 0.5
    assert evidence["gain_over_transfer"] > 2 * evidence["standard_error"]
    perfect = np.eye(4)[y][None] * 8.0  # a transfer model that is always right
    hybrid, evidence = fit_hybrid(texts, y, perfect, seed=0)
    assert hybrid is None and not evidence["used"] and evidence["transfer_cv_accuracy"] == 1.0


@pytest.fixture(scope="module")
def stacked() -> TransferClassifier:
    texts, labels = keyword_texts(12)
    return TransferClassifier(backbone="tiny-bert", cache=False).fit(texts, labels)


def test_the_estimator_stacks_and_saves(stacked: TransferClassifier, tmp_path: Path) -> None:
    texts, labels = keyword_texts(12)
    clf = stacked
    info = clf.strategy_details_["hybrid"]
    assert info["used"], info
    assert info["gain_over_transfer"] > 0
    test_texts, test_labels = keyword_texts(25, seed=1)
    proba = clf.predict_proba(test_texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    off = TransferClassifier(backbone="tiny-bert", cache=False, hybrid="off").fit(texts, labels)
    assert off.hybrid_ is None and off.strategy_details_["hybrid"] == {"used": False, "why": "hybrid='off'"}
    truth = np.array(test_labels)
    assert (clf.predict(test_texts) == truth).mean() > (off.predict(test_texts) == truth).mean()

    clf.save(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "headstart.json").read_text())
    assert manifest["hybrid"]["vocabulary"] in manifest["files"]
    loaded = headstart.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.predict_proba(test_texts), proba, atol=1e-6)


@pytest.mark.slow
def test_the_onnx_engine_replays_the_hybrid(stacked: TransferClassifier, tmp_path: Path) -> None:
    from headstart.serving.engine import load_engine
    from headstart.serving.export import export_onnx

    stacked.save(tmp_path / "b")
    test_texts, test_labels = keyword_texts(5, seed=1)
    proba = stacked.predict_proba(test_texts)
    table = tmp_path / "items.jsonl"
    table.write_text("".join(json.dumps({"text": t, "label": v}) + "\n" for t, v in zip(test_texts, test_labels)))
    export_onnx(tmp_path / "b", data=table)
    onnx = load_engine(tmp_path / "b", "onnx")
    np.testing.assert_allclose(onnx.predict_proba(test_texts), proba, atol=1e-4)
    # The ONNX engine's process blends without importing torch or scikit-learn.
    code = ("import sys; from headstart.serving.engine import load_engine; "
            f"e = load_engine({str(tmp_path / 'b')!r}, 'onnx'); e.predict_proba(['zircon the week']); "
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_a_damaged_hybrid_is_refused(tmp_path: Path) -> None:
    texts, labels = keyword_texts(12)
    TransferClassifier(backbone="tiny-bert", cache=False).fit(texts, labels).save(tmp_path / "b")
    vocabulary = tmp_path / "b" / "hybrid_vocabulary.json"
    vocabulary.write_text(json.dumps(["only", "two"]))
    with pytest.raises(BundleError, match=r"hybrid_vocabulary\.json"):
        headstart.load(tmp_path / "b")


def test_an_unknown_hybrid_mode_is_refused() -> None:
    texts, labels = keyword_texts(4)
    with pytest.raises(ConfigError, match="hybrid='always'"):
        TransferClassifier(backbone="tiny-bert", cache=False, hybrid="always").fit(texts, labels)
