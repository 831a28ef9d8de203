"""Fine-tuning leaves its linear-probe start only on a validation gain the split cannot fake (issue 15).

The paired test itself (:func:`headstart.evaluation.paired.significant_gain`) on hand-made
per-item results, then the fine-tuning strategies on ``tiny-bert``: a gain that is not
significant hands back the probe on the pretrained backbone, a significant one keeps the
fine-tuned model, and both record the numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_texts
from headstart import TransferClassifier
from headstart.backbones import create_backbone
from headstart.errors import ConfigError
from headstart.evaluation import paired
from headstart.evaluation.paired import SIGNIFICANCE_SE, significant_gain


def _won_lost(won: int, lost: int, n: int) -> tuple[list[int], list[int]]:
    """Per-item correctness of a new model and a base on ``n`` items: the new one alone is right on
    ``won`` items, the base alone on ``lost``, and both are right on the rest."""
    new = [1] * won + [0] * lost + [1] * (n - won - lost)
    base = [0] * won + [1] * lost + [1] * (n - won - lost)
    return new, base


# ------------------------------------------------------------------------------ the paired test
def test_no_gain_keeps_the_base() -> None:
    same = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    result = significant_gain(same, same)
    assert result["gain"] == 0.0 and result["se"] == 0.0 and not result["significant"]
    assert result["n"] == 10 and result["accuracy"] == result["base_accuracy"] == 0.7
    # Different items right, same count: no gain either, whatever the spread.
    assert not significant_gain([1, 0] * 5, [0, 1] * 5)["significant"]


def test_a_large_consistent_gain_leaves_the_base() -> None:
    new, base = _won_lost(won=12, lost=0, n=30)
    result = significant_gain(np.array(new, dtype=bool), np.array(base, dtype=bool))
    assert result["significant"] and result["gain"] == pytest.approx(0.4)
    assert result["needed"] == pytest.approx(SIGNIFICANCE_SE * result["se"]) and result["gain"] > result["needed"]
    assert result["accuracy"] == 1.0 and result["base_accuracy"] == pytest.approx(0.6)


def test_a_small_gain_on_few_items_keeps_the_base() -> None:
    new, base = _won_lost(won=1, lost=0, n=6)  # one item better on six: +16.7 points, and noise
    result = significant_gain(new, base)
    assert result["gain"] == pytest.approx(1 / 6) and not result["significant"]
    assert result["needed"] > result["gain"]
    # The case: a 30-item split, a lead of 4 items (13 points) is not evidence; 5 is.
    assert not significant_gain(*_won_lost(4, 0, 30))["significant"]
    assert significant_gain(*_won_lost(5, 0, 30))["significant"]
    assert not significant_gain(*_won_lost(2, 0, 2))["significant"]  # se 0, but two items prove nothing
    assert not significant_gain(*_won_lost(6, 1, 30))["significant"]  # wins offset by a loss
    assert significant_gain(*_won_lost(7, 1, 30))["significant"]


def test_a_loss_or_too_few_items_is_never_significant_and_mismatches_are_refused() -> None:
    assert not significant_gain(*_won_lost(0, 8, 30))["significant"]
    single = significant_gain([1], [0])
    assert single["gain"] == 1.0 and single["se"] is None and not single["significant"]
    assert significant_gain([], [])["n"] == 0 and not significant_gain([], [])["significant"]
    with pytest.raises(ConfigError, match="same items"):
        significant_gain([1, 0, 1], [1, 0])


# ------------------------------------------------------------------------------ the strategies
def test_fine_tuning_with_an_insignificant_validation_gain_hands_back_the_probe() -> None:
    """12 texts per class: 4 are held out, the probe already gets all 4 right, so the epoch the
    loop kept (lower validation loss) cannot show a gain; the result is the probe, refitted on
    train + validation, on the pretrained backbone, and the numbers say why."""
    texts, labels = make_texts(12)
    clf = TransferClassifier(backbone="tiny-bert", strategy="partial", lr=1e-2, epochs=2, cache=False,
                             random_state=0).fit(texts, labels)
    details = clf.strategy_details_
    assert [h["best_epoch"] for h in details["phases"]] != [-1]  # an epoch did look better on validation
    decision = details["leave_probe"]
    assert decision["decided_by"] == "insignificant-gain" and not decision["left_probe"]
    assert decision["n_val"] == details["n_val"] == 4 and details["n_train"] + details["n_val"] == 24
    assert decision["gain"] == pytest.approx(decision["val_accuracy_finetuned"] - decision["val_accuracy_probe"])
    assert decision["gain"] <= decision["needed_gain"] and "standard errors" in decision["rule"]
    assert "standard errors" in details["kept_probe"] and "backbone unchanged" in details["kept_probe"]
    assert not clf.backbone_changed_
    pretrained = create_backbone("tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(clf.backbone_.state_dict().values(),
                                                 pretrained.state_dict().values()))
    probe = TransferClassifier(backbone="tiny-bert", cache=False, random_state=0).fit(texts, labels)
    assert (clf.predict(texts) == probe.predict(texts)).all()  # the same probe, up to its refit's row order


def test_a_significant_gain_keeps_the_fine_tuned_model_and_records_the_numbers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On tiny data the probe is hard to beat for real, so the test's verdict is forced to
    "significant" (the numbers stay the measured ones): the fine-tuned weights are the result."""
    import headstart.strategies.finetune as finetune

    def forced(ft_correct, probe_correct):
        return {**paired.significant_gain(ft_correct, probe_correct), "significant": True}

    monkeypatch.setattr(finetune, "significant_gain", forced)
    texts, labels = make_texts(12)
    clf = TransferClassifier(backbone="tiny-bert", strategy="lora", lr=1e-2, epochs=2, cache=False,
                             random_state=0).fit(texts, labels)
    details = clf.strategy_details_
    assert clf.backbone_changed_ and "kept_probe" not in details
    decision = details["leave_probe"]
    assert decision["decided_by"] == "significant-gain" and decision["left_probe"] and decision["n_val"] == 4
    assert {"val_accuracy_finetuned", "val_accuracy_probe", "gain", "se", "needed_gain"} <= set(decision)
    assert details["lora_layers_merged"] > 0  # judged after the merge, on what the bundle holds


def test_without_a_validation_split_nothing_is_judged() -> None:
    texts, labels = make_texts(8)  # under 10 per class: no split is carved, fine-tuning runs as before
    clf = TransferClassifier(backbone="tiny-bert", strategy="partial", unfreeze=1, lr=1e-2, epochs=1, cache=False,
                             random_state=0).fit(texts, labels)
    details = clf.strategy_details_
    assert clf.backbone_changed_ and details["n_val"] == 0
    assert "leave_probe" not in details and "kept_probe" not in details
