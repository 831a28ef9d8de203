"""TransferClassifier: scikit-learn conventions, learning on known-answer tasks, the linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_image, make_texts
from headstart import DataError, NotFittedError, TransferClassifier
from headstart.data import assign_splits, load_data
from headstart.errors import ConfigError


def test_unfitted_estimator_says_call_fit() -> None:
    clf = TransferClassifier(backbone="tiny-bert")
    with pytest.raises(NotFittedError, match="call fit"):
        clf.predict(["x"])
    # Also what scikit-learn code catches.
    with pytest.raises(ValueError):
        clf.predict_proba(["x"])


def test_init_only_stores_parameters_and_clone_works() -> None:
    from sklearn.base import clone

    clf = TransferClassifier(backbone="tiny-bert", C=0.5, batch_size=7, random_state=3)
    assert clf.get_params()["C"] == 0.5 and clf.get_params()["batch_size"] == 7
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    copy.set_params(C=2.0)
    assert copy.C == 2.0 and clf.C == 0.5
    # Invalid values are accepted by __init__ and rejected by fit, naming the parameter.
    bad = TransferClassifier(backbone="tiny-bert", batch_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        bad.fit(*make_texts(5))


def test_text_fit_predict_score_and_learned_attributes() -> None:
    texts, labels = make_texts(20, seed=0)
    test_texts, test_labels = make_texts(10, seed=1)
    clf = TransferClassifier(backbone="tiny-bert", random_state=0).fit(texts, labels)
    assert list(clf.classes_) == ["neg", "pos"]
    proba = clf.predict_proba(test_texts)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert clf.score(test_texts, test_labels) >= 0.85  # chance is 0.5
    assert set(clf.predict(test_texts)) <= {"neg", "pos"}
    assert clf.n_features_in_ == 32
    assert clf.strategy_details_["name"] == "linear-probe" and clf.strategy_details_["C"] > 0
    assert clf.fit_info_["seed"] == 0 and len(clf.fit_info_["data"]["fingerprint"]) == 64
    assert clf.fit_info_["versions"]["torch"]
    assert clf.transform(test_texts[:3]).shape == (3, 32)


def test_image_fit_on_arrays_with_integer_labels() -> None:
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(make_image(k, rng)) for k in ["disc", "square"] * 15])
    labels = np.array([0, 1] * 15)
    clf = TransferClassifier(backbone="tiny-cnn", random_state=0).fit(images[:20], labels[:20])
    assert clf.classes_.tolist() == [0, 1]
    assert clf.score(images[20:], labels[20:]) >= 0.8
    assert isinstance(clf.predict(images[:1])[0], (int, np.integer))


def test_default_backbone_follows_the_modality() -> None:
    clf = TransferClassifier(backbone="tiny-cnn")
    with pytest.raises(ConfigError, match="takes image but the data is text"):
        clf.fit(*make_texts(5))


def test_dataset_with_splits_reports_held_out_metrics(image_folder: Path) -> None:
    data = assign_splits(load_data(image_folder), seed=0)
    clf = TransferClassifier(backbone="tiny-cnn", random_state=0).fit(data)
    test = clf.metrics_["test"]
    assert test["n"] == data.split_counts()["test"]
    assert {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss", "per_class",
            "confusion_matrix"} <= set(test)
    assert np.sum(test["confusion_matrix"]["matrix"]) == test["n"]
    assert clf.strategy_details_["n_train"] == data.split_counts()["train"] + data.split_counts()["val"]


def test_same_seed_same_model_and_different_seed_recorded() -> None:
    texts, labels = make_texts(15)
    a = TransferClassifier(backbone="tiny-bert", random_state=7).fit(texts, labels)
    b = TransferClassifier(backbone="tiny-bert", random_state=7).fit(texts, labels)
    np.testing.assert_array_equal(a.predict_proba(texts), b.predict_proba(texts))
    assert a.fit_info_["seed"] == 7


def test_linear_probe_choices_are_recorded_and_validated() -> None:
    texts, labels = make_texts(12)
    clf = TransferClassifier(backbone="tiny-bert", cv=3, class_weight="balanced").fit(texts, labels)
    details = clf.strategy_details_
    assert details["selection"].startswith("3-fold") and "balanced accuracy" in details["selection"]
    assert details["C"] in details["params"]["Cs"]
    assert details["cv_accuracy"][f"{details['features']} C={details['C']:g}"] == details["cv_accuracy_chosen"]
    fixed = TransferClassifier(backbone="tiny-bert", C=0.1, strategy_params={"features": "l2"}).fit(texts, labels)
    assert fixed.strategy_details_["C"] == 0.1 and fixed.strategy_details_["features"] == "l2"
    assert list(fixed.strategy_details_["cv_accuracy"]) == ["l2 C=0.1"]
    with pytest.raises(ConfigError, match="class_weight"):
        TransferClassifier(backbone="tiny-bert", class_weight="heavy").fit(texts, labels)
    with pytest.raises(ConfigError, match=r"unknown strategy 'linear-prob'\. Did you mean 'linear-probe'"):
        TransferClassifier(backbone="tiny-bert", strategy="linear-prob").fit(texts, labels)


def test_single_class_and_unknown_labels_are_refused() -> None:
    with pytest.raises(DataError, match="at least 2 classes"):
        TransferClassifier(backbone="tiny-bert").fit(["a", "b", "c"], ["x", "x", "x"])
    clf = TransferClassifier(backbone="tiny-bert").fit(*make_texts(6))
    with pytest.raises(DataError, match="labels the model does not know: meh"):
        clf.evaluate(["ok text"], ["meh"])


def test_grid_search_works_with_the_estimator() -> None:
    from sklearn.model_selection import GridSearchCV

    texts, labels = make_texts(12)
    search = GridSearchCV(TransferClassifier(backbone="tiny-bert"), {"C": [0.01, 1.0]}, cv=2)
    search.fit(texts, labels)
    assert search.best_params_["C"] in (0.01, 1.0)
    assert search.best_estimator_.predict(texts[:2]).shape == (2,)


def test_strategy_params_reach_the_strategy_and_typos_are_refused() -> None:
    texts, labels = make_texts(6)
    clf = TransferClassifier(backbone="tiny-bert", strategy="contrastive", strategy_params={"steps": 3})
    assert clf.fit(texts, labels).strategy_details_["steps_run"] == 3
    with pytest.raises(ConfigError, match="step"):
        TransferClassifier(backbone="tiny-bert", strategy="contrastive", strategy_params={"step": 3}).fit(texts, labels)
