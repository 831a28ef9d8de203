"""The training loop and the fine-tuning strategies, on tiny backbones.

The PEFT-style checks: every trainable parameter gets a gradient; exactly the intended
parameters change (frozen ones are bit-identical); learning happens; LoRA merged equals
unmerged; and a fit killed with SIGKILL mid-epoch, then resumed, ends where an
uninterrupted fit ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_image, make_texts
from headstart import TransferClassifier, load
from headstart.backbones import create_backbone
from headstart.data import from_memory
from headstart.errors import ConfigError
from headstart.evaluation.paired import significant_gain
from headstart.heads import LinearHead
from headstart.strategies import FitContext, create_strategy
from headstart.strategies.auto import parse_budget
from headstart.strategies.contrastive import in_batch_loss, make_batches
from headstart.strategies.finetune import decayed_lrs
from headstart.strategies.lora import Lora, merge_lora
from headstart.training.checkpoint import has_checkpoint, load_checkpoint
from headstart.training.loop import ClassifierModel, Examples, TrainConfig, train
from headstart.training.losses import FocalLoss, make_loss
from headstart.training.optim import make_scheduler


def _context(backbone) -> FitContext:
    from headstart.features import extract_features

    return FitContext(embed=lambda ds: extract_features(backbone, ds), seed=0,
                      embed_with=lambda b, ds: extract_features(b, ds))


# Under 10 examples per class no validation split is held out, so training keeps its last
# weights (with one, restore-best may rightly keep the starting point and nothing "changes").
def _texts(n: int = 8):
    texts, labels = make_texts(n)
    return from_memory(texts, labels)


def _images(n: int = 8):
    rng = np.random.default_rng(0)
    kinds = ["disc", "square"] * n
    return from_memory(np.stack([np.asarray(make_image(k, rng)) for k in kinds]), kinds)


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


# ------------------------------------------------------------------------------ the loop
def test_loop_learns_a_separable_task_from_a_random_head() -> None:
    backbone = create_backbone("tiny-cnn")
    data = _images(12)
    head = LinearHead(backbone.spec.feature_dim, 2)
    model = ClassifierModel(backbone, head)
    targets = torch.tensor([0 if k == "disc" else 1 for k in data.labels])
    examples = Examples(list(data.items), list(data.locators), targets)
    losses: list[float] = []
    named = [(n, p) for n, p in model.named_parameters()]
    result = train(model, [("all", named, 3e-3)], examples, examples,
                   TrainConfig(epochs=6, batch_size=8, augment=False, patience=10, warmup=0.0),
                   seed=0, device=torch.device("cpu"), n_classes=2,
                   callbacks={"on_batch_end": [lambda e: losses.append(e["loss"])]})
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.7, losses
    assert result.history[-1]["val_accuracy"] >= 0.9
    assert result.epochs_run == 6 and len(result.history) == 7  # the starting point, then 6 epochs
    assert result.history[0]["epoch"] == -1


def test_every_trainable_parameter_gets_a_gradient() -> None:
    for name in ("tiny-bert", "tiny-cnn"):
        backbone = create_backbone(name)
        model = ClassifierModel(backbone, LinearHead(backbone.spec.feature_dim, 2))
        items = ["abc", "de fg"] if name == "tiny-bert" else [make_image("disc", np.random.default_rng(0))] * 2
        model(backbone.preprocess(items)).sum().backward()
        missing = [n for n, p in model.named_parameters()
                   if p.requires_grad and not n.startswith("backbone.model.classifier") and p.grad is None]
        assert missing == [], (name, missing)


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(epochs=0, batch_size=0, monitor="f1", mixed_precision="fp8")
    message = str(err.value)
    assert all(word in message for word in ("epochs=0", "batch_size=0", "monitor", "mixed_precision"))


def test_losses_and_schedule() -> None:
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), torch.nn.functional.cross_entropy(logits, target))
    assert make_loss("focal", focal_gamma=2.0)(logits, target) < make_loss("cross-entropy")(logits, target)
    with pytest.raises(ConfigError, match="loss"):
        make_loss("hinge")
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, "cosine", total_steps=100, warmup_fraction=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[5] < lrs[10] and max(lrs) == pytest.approx(1.0, abs=0.01) and lrs[-1] < 0.01


def test_layer_wise_decay_lowers_the_rate_towards_the_input() -> None:
    groups = create_backbone("tiny-cnn").layer_groups()
    lrs = decayed_lrs(groups, 1.0, 0.5)
    values = [lrs[g.name] for g in groups]
    assert values == sorted(values) and values[-1] == 0.5 and values[0] == 0.5 ** len(groups)
    assert set(decayed_lrs(groups, 1.0, 0.5, top_k=2)) == {groups[-2].name, groups[-1].name}


# ---------------------------------------------------------- which parameters change
@pytest.mark.parametrize("backbone_name", ["tiny-cnn", "tiny-bert"])
def test_partial_changes_only_the_top_groups_and_the_head(backbone_name: str) -> None:
    backbone = create_backbone(backbone_name)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    data = _images() if backbone_name == "tiny-cnn" else _texts()
    fitted = create_strategy("partial", unfreeze=1, epochs=2, lr=1e-2).fit(backbone, data, None, _context(backbone))
    top = set(backbone.layer_groups()[-1].param_names)
    changed = _changed(before, fitted.backbone.state_dict())
    assert changed, "nothing trained"
    assert changed <= top, f"frozen parameters changed: {sorted(changed - top)[:5]}"
    assert not any("running_" in k for k in changed)  # BatchNorm statistics untouched
    assert fitted.backbone_changed and fitted.details["phases"][0]["epochs_run"] >= 1


def test_full_trains_every_group_and_progressive_only_what_it_unfroze() -> None:
    backbone = create_backbone("tiny-bert")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    create_strategy("full", epochs=1, lr=1e-2).fit(backbone, _texts(), None, _context(backbone))
    changed = _changed(before, backbone.state_dict())
    for group in backbone.layer_groups():
        assert set(group.param_names) & changed, group.name

    backbone = create_backbone("tiny-bert")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    fitted = create_strategy("progressive", epochs=1, max_groups=1, lr=1e-2).fit(backbone, _texts(), None,
                                                                               _context(backbone))
    assert [p["phase"] for p in fitted.details["phases"]] == ["head", "top-1"]
    assert _changed(before, backbone.state_dict()) <= set(backbone.layer_groups()[-1].param_names)


class _LoraSnapshot(Lora):
    """Records the model right before the adapters are merged."""

    def finish(self, model):
        self.base_weights = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if "base_layer" in n}
        probe = model.backbone.preprocess(["some words", "other words here"])
        with torch.no_grad():
            self.unmerged_out = model(probe)
        self.probe = probe
        return super().finish(model)


def test_lora_trains_adapters_only_and_merges_to_the_same_outputs() -> None:
    backbone = create_backbone("tiny-bert")
    original = {f"backbone.{k}": v.clone() for k, v in backbone.named_parameters()}
    strategy = _LoraSnapshot(lora_rank=4, epochs=2, lr=5e-2)
    fitted = strategy.fit(backbone, _texts(), None, _context(backbone))
    # Base weights untouched during training (adapters only).
    for name, value in strategy.base_weights.items():
        original_name = "backbone." + name.replace(".base_layer", "")
        assert torch.equal(value, original[original_name]), name
    # Merged: a plain model again, whose outputs equal the adapted one's.
    assert not any("lora_" in n for n, _ in fitted.backbone.named_parameters())
    model = ClassifierModel(fitted.backbone, fitted.head).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(strategy.probe), strategy.unmerged_out, atol=1e-5, rtol=1e-4)
    assert fitted.details["lora_layers_merged"] > 0
    assert _changed({k: v for k, v in original.items()},
                    {f"backbone.{k}": v for k, v in fitted.backbone.named_parameters()})


def test_merge_lora_on_a_conv_net() -> None:
    from peft import LoraConfig, inject_adapter_in_model

    from headstart.strategies.lora import lora_targets

    backbone = create_backbone("tiny-cnn")
    inject_adapter_in_model(LoraConfig(r=2, target_modules=lora_targets(backbone.model)), backbone.model)
    for name, p in backbone.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # non-zero update
    x = backbone.preprocess([make_image("disc", np.random.default_rng(1))])
    with torch.no_grad():
        before = backbone.forward_features(x)
        assert merge_lora(backbone.model) > 0
        torch.testing.assert_close(backbone.forward_features(x), before, atol=1e-4, rtol=1e-4)


def test_fine_tuning_that_gains_nothing_hands_back_the_probe_on_every_label() -> None:
    """With a validation split and a learning rate too small to move anything, no epoch beats the
    linear-probe start: the result is the probe, refitted on train + validation, backbone unchanged."""
    texts, labels = make_texts(12)  # 12 per class: a validation split is held out
    clf = TransferClassifier(backbone="tiny-bert", strategy="partial", lr=1e-12, epochs=2, cache=False,
                             random_state=0).fit(texts, labels)
    details = clf.strategy_details_
    assert "kept_probe" in details and not clf.backbone_changed_
    assert details["n_train"] + details["n_val"] == 24
    pretrained = create_backbone("tiny-bert")
    assert all(torch.equal(a, b) for a, b in zip(clf.backbone_.state_dict().values(),
                                                 pretrained.state_dict().values()))
    probe = TransferClassifier(backbone="tiny-bert", cache=False, random_state=0).fit(texts, labels)
    assert (clf.predict(texts) == probe.predict(texts)).all()


def test_contrastive_is_for_text_and_records_its_pairs() -> None:
    backbone = create_backbone("tiny-bert")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    fitted = create_strategy("contrastive", steps=5, batch_size=8).fit(backbone, _texts(), None, _context(backbone))
    assert fitted.details["pairing"] == "in-batch" and fitted.details["steps_run"] == 5
    assert fitted.details["n_pairs"] == 5 * 28 and fitted.backbone_changed  # 8 texts -> 28 pairs per step
    assert _changed(before, fitted.backbone.state_dict())
    backbone = create_backbone("tiny-bert")
    sampled = create_strategy("contrastive", pairing="sampled", max_pairs=64, batch_size=8).fit(
        backbone, _texts(), None, _context(backbone))
    assert sampled.details["n_pairs"] == 64 and sampled.details["steps_run"] == 8
    with pytest.raises(ConfigError, match="for text"):
        create_strategy("contrastive").fit(create_backbone("tiny-cnn"), _images(), None, _context(backbone))
    with pytest.raises(ConfigError, match="pairing"):
        create_strategy("contrastive", pairing="triplets")


def test_in_batch_pairs_are_stratified_and_use_every_example() -> None:
    labels = [c for c in "abcdef" for _ in range(5)]  # 6 classes of 5
    batches = make_batches(labels, batch_size=8, steps=30, seed=0)
    assert all(len(b) == len(set(b)) == 8 for b in batches)
    for b in batches:  # 4 classes of 2: every batch holds positive and negative pairs
        assert sorted(Counter(labels[i] for i in b).values()) == [2, 2, 2, 2]
    assert {i for b in batches[:8] for i in b} == set(range(30))  # rounds: everything before repeats
    assert make_batches(labels, 8, 30, seed=0) == batches and make_batches(labels, 8, 30, seed=1) != batches
    assert all(len(b) == 3 for b in make_batches(["x"] * 3, 8, 2, seed=0))  # one small class: no endless loop
    same, apart = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0, 1])
    assert float(in_batch_loss(same, apart)) == pytest.approx(0.0, abs=1e-6)
    # labels 0,1,1: the negatives (0,1) cos 1 and (0,2) cos 0 average 0.5; the positive (1,2) cos 0 costs 1
    assert float(in_batch_loss(same, torch.tensor([0, 1, 1]))) == pytest.approx(0.75)


def test_training_stops_at_the_deadline() -> None:
    backbone = create_backbone("tiny-cnn")
    data = _images(4)
    model = ClassifierModel(backbone, LinearHead(backbone.spec.feature_dim, 2))
    examples = Examples(list(data.items), list(data.locators), torch.tensor([0, 1] * 4))
    result = train(model, [("all", list(model.named_parameters()), 1e-3)], examples, None,
                   TrainConfig(epochs=5, batch_size=4, augment=False), seed=0, device=torch.device("cpu"),
                   n_classes=2, deadline=time.monotonic())
    assert result.epochs_run == 1 and result.stopped_for_time
    text_backbone = create_backbone("tiny-bert")
    context = _context(text_backbone)
    context.deadline = time.monotonic()
    fitted = create_strategy("contrastive", steps=50).fit(text_backbone, _texts(), None, context)
    assert fitted.details["steps_run"] == 0 and fitted.details["steps_planned"] == 50


def test_auto_keeps_the_floor_without_a_validation_split() -> None:
    data = _images(6)  # under 10 per class: no split to judge fine-tuning by
    details = TransferClassifier(backbone="tiny-cnn", strategy="auto", cache=False, budget="5m").fit(
        list(data.items), list(data.labels)).strategy_details_
    assert details["chosen"] == "linear-probe" and details["n_val"] == 0 and not details["refitted"]
    assert details["decisions"][0]["n_train"] == 12 and details["decisions"][0]["chosen"]
    skipped = details["decisions"][1:]
    assert skipped and all(not d["ran"] and "no validation split" in d["skipped"] and "--strategy" in d["skipped"]
                           for d in skipped)


def test_auto_cross_validates_pair_training_against_the_probe_on_the_same_folds() -> None:
    texts, labels = make_texts(6)  # too few for a validation split, enough for 3 folds
    clf = TransferClassifier(backbone="tiny-bert", strategy="auto", cache=False, budget="5m",
                             random_state=0).fit(texts, labels)
    details = clf.strategy_details_
    pairs = next(d for d in details["decisions"] if d["strategy"] == "contrastive")
    assert pairs["ran"] and details["cv_folds"] == 3 and "3-fold" in pairs["judged_by"]
    assert 0 <= pairs["cv_accuracy"] <= 1 and 0 <= pairs["probe_cv_accuracy"] <= 1
    assert pairs["gain"] == pytest.approx(pairs["cv_accuracy"] - pairs["probe_cv_accuracy"], abs=1e-3)
    assert pairs["needed"] >= 5 / 12 - 1e-3  # five items net of twelve: a small split's gains must be large
    # Short texts at 6 per class: a positive gain too small to prove still wins on the benchmarks' prior.
    assert (pairs["significant"] or ("prior" in pairs and pairs["gain"] > 0)) == (details["chosen"] == "contrastive")
    if details["chosen"] == "contrastive":
        assert details["refitted"] and details["n_refit"] == 12
    else:
        assert not details["refitted"] and details["chosen_details"]["n_train"] == 12


def test_auto_leaves_the_probe_only_on_a_significant_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate that wins 10 more held-out items of 20 than the probe wins and is refitted; one that wins 2
    more wins only where the benchmarks' prior says it should (short texts), and none without a gain."""
    from headstart.strategies import auto as auto_module

    texts, labels = make_texts(10)

    def fake(gain_items: int):
        def cross_validate(name, params, data, folds, run, probe_on, context):
            base = np.zeros(len(data))
            base[: len(data) // 2] = 1
            new = base.copy()
            new[len(data) // 2: len(data) // 2 + gain_items] = 1
            return new, base
        return staticmethod(cross_validate)

    monkeypatch.setattr(auto_module.Auto, "_cross_validate", fake(10))
    won = TransferClassifier(backbone="tiny-bert", strategy="auto", cache=False, budget="5m").fit(texts, labels)
    assert won.strategy_details_["chosen"] == "contrastive" and won.strategy_details_["refitted"]
    assert won.backbone_changed_
    monkeypatch.setattr(auto_module.Auto, "_cross_validate", fake(2))  # 2 items of 20: not proof
    # ... but on short texts at few labels per class the benchmarks' prior for pair training decides
    prior = TransferClassifier(backbone="tiny-bert", strategy="auto", cache=False, budget="5m").fit(texts, labels)
    pairs = next(d for d in prior.strategy_details_["decisions"] if d["strategy"] == "contrastive")
    assert prior.strategy_details_["chosen"] == "contrastive" and not pairs["significant"] and "prior" in pairs
    # ... not on long ones (where pair training lost on spam-assassin), nor without a gain
    long_texts = [f"{t} " + "received from mail server by relay host " * 30 for t in texts]
    kept = TransferClassifier(backbone="tiny-bert", strategy="auto", cache=False, budget="5m").fit(long_texts, labels)
    assert kept.strategy_details_["chosen"] == "linear-probe" and not kept.backbone_changed_
    monkeypatch.setattr(auto_module.Auto, "_cross_validate", fake(0))
    even = TransferClassifier(backbone="tiny-bert", strategy="auto", cache=False, budget="5m").fit(texts, labels)
    assert even.strategy_details_["chosen"] == "linear-probe"


def test_auto_judges_fixed_recipes_on_held_out_data_and_refits_the_winner() -> None:
    data = _images(14)
    clf = TransferClassifier(backbone="tiny-cnn", strategy="auto", cache=False, budget="5m")
    details = clf.fit(list(data.items), list(data.labels)).strategy_details_
    partial = next(d for d in details["decisions"] if d["strategy"] == "partial")
    assert partial["ran"] and partial["n_train"] + details["n_val"] == 28 and details["n_val"] >= 2
    assert "held-out split" in partial["judged_by"] and "probe_val_accuracy" in partial
    assert partial["significant"] == (details["chosen"] == "partial")
    if details["chosen"] == "partial":  # a fixed recipe: the held-out split only judged
        assert details["refitted"] and details["n_refit"] == 28
        assert details["chosen_details"]["early_stopping"] is False
    assert details["chosen_details"]["n_train"] == 28


def test_auto_records_its_decisions_and_respects_the_budget() -> None:
    texts, labels = make_texts(12)
    clf = TransferClassifier(backbone="tiny-bert", strategy="auto", budget="0.01s", cache=False).fit(texts, labels)
    details = clf.strategy_details_
    assert details["chosen"] == "linear-probe"  # nothing else fits in 10 ms
    assert details["decisions"][0]["strategy"] == "linear-probe" and details["decisions"][0]["chosen"]
    assert all(not d["ran"] and "budget" in d["skipped"] for d in details["decisions"][1:])
    generous = TransferClassifier(backbone="tiny-bert", strategy="auto", budget="5m", cache=False).fit(texts, labels)
    ran = [d for d in generous.strategy_details_["decisions"] if d["ran"]]
    assert len(ran) >= 2 and all("gain" in d and "needed" in d for d in ran[1:])
    assert sum(d["chosen"] for d in generous.strategy_details_["decisions"]) == 1
    assert parse_budget("1h30m") == 5400 and parse_budget("90s") == 90 and parse_budget(5) == 5
    with pytest.raises(ConfigError, match="budget"):
        parse_budget("soon")


# ------------------------------------------------------------------- bundles and resume
@pytest.mark.parametrize("strategy", ["partial", "lora"])
def test_fine_tuned_bundles_round_trip(strategy: str, tmp_path: Path) -> None:
    texts, labels = make_texts(8)
    clf = TransferClassifier(backbone="tiny-bert", strategy=strategy, epochs=2, lr=1e-2, cache=False).fit(texts, labels)
    clf.save(tmp_path / "b")
    loaded = load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    pristine = TransferClassifier(backbone="tiny-bert", cache=False).fit(texts, labels)
    assert not np.allclose(pristine.transform(texts), loaded.transform(texts))  # the adapted weights came along


@pytest.mark.parametrize("strategy,kill_epoch", [("partial", 2), ("progressive", 3)])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(strategy: str, kill_epoch: int, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The 4 validation items cannot show a significant gain over the probe, so both fits would
    # hand back the pristine backbone and the weight comparison below would compare nothing:
    # the verdict is forced to "leave the probe" (tests/test_leave_probe.py covers the verdict).
    import headstart.strategies.finetune as finetune

    monkeypatch.setattr(finetune, "significant_gain",
                        lambda ft, probe: {**significant_gain(ft, probe), "significant": True})
    worker = Path(__file__).with_name("resume_worker.py")
    killed = subprocess.run([sys.executable, str(worker), str(tmp_path / "run"), strategy, str(kill_epoch), "0"],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert has_checkpoint(tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["state"]["result"]["epochs_run"] >= 1

    texts, labels = make_texts(16)
    params = {"backbone": "tiny-bert", "strategy": strategy, "epochs": 4, "patience": 10, "cache": False,
              "random_state": 5}
    epochs_after_resume: list[int] = []
    resumed = TransferClassifier(**params).fit(texts, labels, run_dir=tmp_path / "run", resume=True,
                                               callbacks={"on_epoch_end": [lambda e: epochs_after_resume.append(1)]})
    epochs_straight: list[int] = []
    straight = TransferClassifier(**params).fit(texts, labels, run_dir=tmp_path / "straight",
                                                callbacks={"on_epoch_end": [lambda e: epochs_straight.append(1)]})
    # It really continued (it did not silently start over): only the unfinished epochs ran.
    assert len(epochs_after_resume) == len(epochs_straight) - kill_epoch
    for (name, a), (_, b) in zip(resumed.backbone_.state_dict().items(), straight.backbone_.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(resumed.head_.linear.weight, straight.head_.linear.weight, atol=1e-6, rtol=1e-5)
    assert resumed.backbone_changed_ and straight.backbone_changed_  # fine-tuned weights are compared
    last_resumed = resumed.strategy_details_["phases"][-1]["history"]
    last_straight = straight.strategy_details_["phases"][-1]["history"]
    assert last_resumed[-1]["val_loss"] == pytest.approx(last_straight[-1]["val_loss"], abs=1e-6)


def test_resume_refuses_a_different_fit(tmp_path: Path) -> None:
    texts, labels = make_texts(10)
    TransferClassifier(backbone="tiny-bert", strategy="partial", epochs=1, cache=False).fit(
        texts, labels, run_dir=tmp_path / "run")
    other = TransferClassifier(backbone="tiny-bert", strategy="partial", epochs=1, lr=0.5, cache=False)
    with pytest.raises(ConfigError, match="different fit"):
        other.fit(texts, labels, run_dir=tmp_path / "run", resume=True)
