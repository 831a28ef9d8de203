"""Evidence: metrics against scikit-learn, calibration, slices, the verdict, baselines, the report dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_image, make_texts
from headstart import TransferClassifier
from headstart.backbones import create_backbone
from headstart.data import assign_splits, from_memory
from headstart.evaluation import baselines as B
from headstart.evaluation.metrics import calibration, classification_metrics, slice_metrics
from headstart.evaluation.proof import labels_saved, prove, subsample
from headstart.evaluation.verdict import HELPS, NEGATIVE, NO_DIFFERENCE, paired_bootstrap, verdict


# ---------------------------------------------------------------------------- metrics
def test_metrics_equal_scikit_learn_on_fixed_predictions() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    proba = rng.dirichlet(np.ones(3), size=60)
    y = rng.integers(0, 3, size=60)
    labels = [classes[i] for i in y]
    m = classification_metrics(labels, proba, classes)
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_expected_calibration_error_on_known_inputs() -> None:
    proba = np.tile([0.9, 0.1], (10, 1))
    nine_right = np.array([0] * 9 + [1])
    ece, bins = calibration(nine_right, proba)
    assert ece == pytest.approx(0.0)  # 90% confident, 90% right
    assert ece_of(np.zeros(10, int), proba) == pytest.approx(0.1)  # 90% confident, always right
    assert [b["count"] for b in bins["bins"]] == [0] * 8 + [10, 0]
    # two bins: 0.6 confident and 50% right (4 items), 1.0 confident and right (6 items)
    proba = np.array([[0.6, 0.4]] * 4 + [[1.0, 0.0]] * 6)
    y = np.array([0, 0, 1, 1] + [0] * 6)
    assert ece_of(y, proba) == pytest.approx(0.4 * 0.1)


def ece_of(y: np.ndarray, proba: np.ndarray) -> float:
    return calibration(y, proba)[0]


def test_slices_flag_only_gaps_larger_than_noise() -> None:
    classes = ["x", "y"]
    y = ["x"] * 100
    proba = np.tile([0.9, 0.1], (100, 1))
    proba[:20] = [0.1, 0.9]  # 20 mistakes, all in slice "bad" (20 items): 0% there, 100% elsewhere
    groups = ["bad"] * 20 + ["good"] * 76 + ["tiny"] * 4
    proba[96:98] = [0.1, 0.9]  # "tiny": 2 of 4 wrong, but 4 items are too few to flag
    rows = {r["value"]: r for r in slice_metrics(y, proba, classes, {"g": groups})["g"]}
    assert rows["bad"]["flagged"] and not rows["good"]["flagged"] and not rows["tiny"]["flagged"]
    assert rows["bad"]["accuracy"] == 0.0 and rows["bad"]["gap"] == pytest.approx(0.78)


# ---------------------------------------------------------------------------- verdict
def test_verdict_on_constructed_cases() -> None:
    rng = np.random.default_rng(0)
    good = rng.random(400) < 0.9
    poor = rng.random(400) < 0.6
    helps = verdict(good, [{"name": "scratch", "correct": poor}, {"name": "trivial", "correct": poor & good}])
    assert helps["label"] == HELPS and helps["baseline"]["name"] == "scratch"  # the strongest baseline
    assert helps["ci"][0] > 0 and helps["ci"][0] < helps["difference"] < helps["ci"][1]
    assert verdict(poor, [{"name": "tf-idf", "correct": good}])["label"] == NEGATIVE
    coin = rng.random(400) < 0.5
    same = verdict(coin, [{"name": "other coin", "correct": rng.random(400) < 0.5}])
    assert same["label"] == NO_DIFFERENCE and same["ci"][0] < 0 < same["ci"][1]
    spread = verdict(good, [{"name": "s", "correct": poor}], seed_runs=[(0.88, 0.61), (0.91, 0.58)])
    assert spread["seeds"]["n"] == 3 and "3 seeds" in spread["explanation"]


def test_paired_bootstrap_is_seeded_and_covers_the_truth() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(300) < 0.8, rng.random(300) < 0.7
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    lo, hi = paired_bootstrap(a, b)
    assert lo < a.mean() - b.mean() < hi
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap(a, b[:10])


# ---------------------------------------------------------------------------- baselines
def test_reinitialised_backbone_keeps_the_architecture_and_loses_the_weights() -> None:
    backbone = create_backbone("tiny-bert")
    fresh = B.reinitialised(backbone, seed=0)
    assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in backbone.named_parameters()]
    old = dict(backbone.named_parameters())
    matrices = [n for n, p in fresh.named_parameters() if p.dim() >= 2]  # norms reset to 1/0, as they start
    assert matrices and all(not torch.equal(dict(fresh.named_parameters())[n], old[n]) for n in matrices)
    again = B.reinitialised(backbone, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), again.parameters()))  # seeded


def test_subsample_is_stratified_with_two_per_class_at_least() -> None:
    texts, labels = make_texts(20)
    data = from_memory(texts, labels)
    idx = subsample(data, 0.1, seed=0)
    assert sorted(np.array(labels)[idx].tolist()) == ["neg"] * 2 + ["pos"] * 2
    assert len(subsample(data, 1.0, seed=0)) == 40


def test_labels_saved_sentence() -> None:
    n = [10, 25, 50, 100]
    series = [{"name": "transfer", "values": [0.8, 0.85, 0.9, 0.92]},
              {"name": "no pretraining: classic model", "values": [0.5, 0.6, 0.81, 0.85]}]
    assert "needs 50 (5.0× as many)" in labels_saved(series, n)
    series[1]["values"] = [0.5, 0.6, 0.7, 0.75]
    assert "even with all 100" in labels_saved(series, n)


# ---------------------------------------------------------------------------- the whole report
def _text_data(n: int = 30, seed: int = 0, shuffle_labels: bool = False):
    texts, labels = make_texts(n, seed=seed)
    if shuffle_labels:
        labels = list(np.random.default_rng(seed).permutation(labels))
    groups = ["short" if i % 3 else "long" for i in range(len(texts))]
    data = from_memory(texts, labels)
    data.slices = {"group": groups}
    return assign_splits(data, val_fraction=0.1, test_fraction=0.3, seed=0)


def test_prove_builds_every_part_of_the_report() -> None:
    data = _text_data()
    clf = TransferClassifier(backbone="tiny-bert", cache=False, random_state=0).fit(data)
    report = prove(clf, data, scratch_budget=3, command="headstart fit x")
    kinds = [row["kind"] for row in report["comparison"]]
    assert kinds == ["transfer", "trivial", "classic", "random-features", "scratch"]
    assert all(row["accuracy"] is not None and row["ece"] is not None for row in report["comparison"])
    assert report["verdict"]["label"] in (HELPS, NO_DIFFERENCE, NEGATIVE)
    assert report["verdict"]["n_test"] == report["task"]["n_test"] == report["metrics"]["n"]
    lc = report["learning_curve"]
    assert lc["fractions"] == [0.1, 0.25, 0.5, 1.0] and len(lc["series"]) == 3
    assert lc["n_labels"] == sorted(lc["n_labels"]) and lc["n_labels"][-1] == report["task"]["n_train"] + report["task"]["n_val"]
    # Its last point (every label) is the fit that ran already: the baselines, and the model when it is that probe.
    accuracy = {row["kind"]: row["accuracy"] for row in report["comparison"]}
    assert [s["values"][-1] for s in lc["series"][1:]] == pytest.approx([accuracy["classic"], accuracy["random-features"]])
    if getattr(clf, "hybrid_", None) is None:
        assert lc["series"][0]["values"][-1] == pytest.approx(accuracy["transfer"])
    assert set(report["slices"]) == {"group"}
    assert all(m["true"] != m["predicted"] for m in report["mistakes"])
    assert report["latency"]["p95_ms"] >= report["latency"]["p50_ms"] > 0
    assert report["reproduce"]["command"] == "headstart fit x" and report["reproduce"]["data_fingerprint"]
    quick = prove(clf, data, compare=False, learning_curve=False)
    assert quick["verdict"] is None and [r["kind"] for r in quick["comparison"]] == ["transfer"]


def test_random_labels_are_never_called_transfer_helps() -> None:
    """A control where nothing can be learned: pretrained features must not 'help'."""
    data = _text_data(n=60, shuffle_labels=True)
    clf = TransferClassifier(backbone="tiny-bert", cache=False, random_state=0).fit(data)
    report = prove(clf, data, scratch_budget=0, learning_curve=False)
    assert report["verdict"]["label"] != HELPS, report["verdict"]


def test_image_baselines_run_on_pixels() -> None:
    rng = np.random.default_rng(0)
    kinds = ["disc", "square"] * 12
    data = assign_splits(from_memory(np.stack([np.asarray(make_image(k, rng)) for k in kinds]), kinds),
                         val_fraction=0.0, test_fraction=0.25, seed=0)
    clf = TransferClassifier(backbone="tiny-cnn", cache=False, random_state=0).fit(data)
    report = prove(clf, data, scratch_budget=2, learning_curve=False)
    classic = next(r for r in report["comparison"] if r["kind"] == "classic")
    assert "pixels" in classic["name"] and classic["accuracy"] >= 0.8  # discs vs squares: pixels suffice
    assert all(m["preview"]["data_uri"].startswith("data:image/png;base64,") for m in report["mistakes"])
