"""Typed strategy settings: declared once per strategy, validated by one validator, never dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_texts
from headstart import TransferClassifier
from headstart.backbones import create_backbone
from headstart.cli.app import run
from headstart.data import from_memory
from headstart.errors import ConfigError
from headstart.strategies import STRATEGIES, FitContext, create_strategy
from headstart.strategies import linear_probe as linear_probe_module
from headstart.strategies.settings import check_settings, parse_assignments, users_of
from headstart.strategies.settings import settings_of as declared

QUICK = ("--no-compare", "--no-learning-curve", "--no-track", "-q")
FINE_TUNING = {"partial", "full", "progressive", "lora"}


def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_declares_every_setting_it_takes_with_its_real_default(name: str) -> None:
    params = create_strategy(name).params
    settings = declared(name)
    derived = {"budget_seconds"}  # auto's parsed budget, not a setting
    assert set(params) - derived == set(settings), name
    for setting in settings.values():
        expected = list(setting.default) if setting.type is tuple else setting.default
        assert params[setting.name] == expected, (name, setting.name)
        assert setting.valid(setting.default), (name, setting.name)
        assert setting.help


@pytest.mark.parametrize("strategy,params,users", [
    ("linear-probe", {"epochs": 3}, FINE_TUNING),
    ("linear-probe", {"loss": "focal"}, FINE_TUNING),
    ("auto", {"loss": "focal"}, FINE_TUNING),
    ("auto", {"epochs": 2}, FINE_TUNING),
    ("full", {"unfreeze": 2}, {"partial"}),
    ("full", {"C": 0.5}, {"linear-probe"}),
    ("contrastive", {"budget": "30s"}, {"auto"}),
    ("partial", {"cv": 3}, {"linear-probe"}),
])
def test_a_setting_the_strategy_does_not_use_is_an_error_naming_those_that_do(
        strategy: str, params: dict[str, Any], users: set[str]) -> None:
    (name, _), = params.items()
    clf = TransferClassifier(backbone="tiny-bert", strategy=strategy, **params)
    with pytest.raises(ConfigError) as raised:
        clf.fit(*make_texts(6))
    message = str(raised.value)
    assert f"The {name!r} setting is not used by strategy {strategy!r}; it is used by: " in message
    named = set(message.split("it is used by: ")[1].split(".")[0].split(", "))
    assert named == users == set(users_of(name))
    assert "Drop it or choose one of those strategies." in message


def test_estimator_defaults_and_none_are_not_given_settings() -> None:
    # cv=5 is the estimator's default: not an explicit setting, so no error for `full`.
    assert TransferClassifier(strategy="full").strategy_settings() == {}
    assert TransferClassifier(strategy="linear-probe").strategy_settings() == {"cv": 5}
    assert TransferClassifier(strategy="auto", class_weight="balanced", budget="30s").strategy_settings() == {
        "class_weight": "balanced", "budget": "30s"}


@pytest.mark.parametrize("strategy,params,message", [
    ("full", {"lr": -1}, "The 'lr' setting of strategy 'full' must be a float in (0, inf) or None. Got -1."),
    ("partial", {"epochs": 2.5}, "The 'epochs' setting of strategy 'partial' must be an int in [1, inf). Got 2.5."),
    ("lora", {"layer_decay": 1.5}, "'layer_decay' setting of strategy 'lora' must be a float in (0, 1]. Got 1.5."),
    ("full", {"loss": "hinge"}, "must be one of 'cross-entropy', 'focal'. Got 'hinge'."),
    ("linear-probe", {"class_weight": "auto"}, "must be one of 'balanced' or None. Got 'auto'."),
    ("auto", {"budget": "soon"}, "'budget' setting of strategy 'auto' must be a duration like 90s"),
    ("full", {"augment": "yes"}, "'augment' setting of strategy 'full' must be a bool or None. Got 'yes'."),
])
def test_wrong_type_or_range_is_one_clear_error(strategy: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TransferClassifier(strategy=strategy, **params).strategy_settings()
    assert message in str(raised.value)
    with pytest.raises(ConfigError) as again:  # the same validator behind create_strategy
        create_strategy(strategy, **params)
    assert str(again.value) == str(raised.value)
    with pytest.raises(ConfigError) as direct:  # and behind a strategy built directly
        STRATEGIES[strategy](**params)
    assert str(direct.value) == str(raised.value)


def test_strategy_params_are_validated_typos_get_a_suggestion_and_conflicts_are_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("'progressive' must be an int in [1, inf). Got 0")):
        TransferClassifier(strategy="progressive", strategy_params={"stages": 0}).strategy_settings()
    with pytest.raises(ConfigError, match=re.escape("not a setting of any strategy. Did you mean 'steps'")):
        TransferClassifier(strategy="contrastive", strategy_params={"stepz": 3}).strategy_settings()
    with pytest.raises(ConfigError, match="given twice"):
        TransferClassifier(strategy="full", epochs=3, strategy_params={"epochs": 4}).strategy_settings()
    with pytest.raises(ConfigError, match="give a dict"):
        TransferClassifier(strategy="full", strategy_params=[("epochs", 4)]).strategy_settings()


def test_set_assignments_parse_by_declared_type() -> None:
    assert parse_assignments("contrastive", ["steps=40", "pairing=sampled", "lr=1e-4", "class_weight=none"]) == {
        "steps": 40, "pairing": "sampled", "lr": 1e-4, "class_weight": None}
    assert parse_assignments("progressive", ["augment=false", "max-groups=2"]) == {
        "augment": False, "max_groups": 2}
    assert parse_assignments("auto", ["budget=90"]) == {"budget": 90.0}
    assert parse_assignments("linear-probe", ["Cs=0.1,1,10"]) == {"Cs": (0.1, 1.0, 10.0)}
    with pytest.raises(ConfigError, match="write KEY=VALUE"):
        parse_assignments("lora", ["lora_alpha"])
    with pytest.raises(ConfigError, match=re.escape("must be an int in [1, inf). Got 'many'")):
        parse_assignments("lora", ["lora_rank=many"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_assignments("lora", ["lora_rank=2", "lora_rank=4"])
    with pytest.raises(ConfigError, match="'epochs' setting is not used by strategy 'contrastive'"):
        parse_assignments("contrastive", ["epochs=2"])


@pytest.mark.parametrize("args,message", [
    (("--set", "steps"), "write KEY=VALUE"),
    (("--set", "steps=many"), "The 'steps' setting of strategy 'contrastive' must be an int in [1, inf). Got 'many'."),
    (("--set", "epochs=3"), "The 'epochs' setting is not used by strategy 'contrastive'"),
    (("--loss", "focal"), "The 'loss' setting is not used by strategy 'contrastive'"),
    (("--lr", "-1"), "The 'lr' setting of strategy 'contrastive' must be a float in (0, inf). Got -1.0."),
])
def test_cli_set_and_dedicated_options_fail_with_a_message_and_no_traceback(
        capsys: pytest.CaptureFixture[str], text_table: Path, tmp_path: Path, args: tuple[str, ...],
        message: str) -> None:
    code, out, err = _cli(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "contrastive",
                          "--out", tmp_path / "b", *QUICK, *args)
    assert code in (1, 2)
    assert message in " ".join((out + err).split())
    assert "Traceback" not in out + err
    assert not (tmp_path / "b").exists()


def test_cli_set_reaches_the_strategy_and_every_setting_is_recorded(
        capsys: pytest.CaptureFixture[str], text_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    code, _, err = _cli(capsys, "fit", text_table, "--backbone", "tiny-bert", "--strategy", "contrastive",
                        "--out", out, *QUICK, "--set", "steps=2", "--set", "pair_max_length=16",
                        "--class-weight", "balanced")
    assert code == 0, err
    strategy = json.loads((out / "headstart.json").read_text())["strategy"]
    assert strategy["steps_run"] == 2
    params = strategy["params"]
    assert params["steps"] == 2 and params["pair_max_length"] == 16 and params["class_weight"] == "balanced"
    assert set(params) == set(declared("contrastive"))  # every setting used, defaults included


def test_strategies_command_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "strategies", "progressive", "--json")
    assert code == 0
    listed = json.loads(out)["progressive"]["settings"]
    assert listed["stages"] == {"type": "an int in [1, inf)", "default": 3,
                                "help": "unfreezing stages after the head stage"}
    code, _, err = _cli(capsys, "strategies", "progresive")
    assert code == 1 and "Did you mean 'progressive'" in err


@pytest.fixture
def probe_weights(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The class_weight of every linear probe fitted (start, fallback, head or floor)."""
    seen: list[Any] = []
    real = linear_probe_module.probe_with_oof

    def spy(x: np.ndarray, y: np.ndarray, /, **kwargs: Any) -> Any:
        seen.append(kwargs.get("class_weight"))
        return real(x, y, **kwargs)

    monkeypatch.setattr(linear_probe_module, "probe_with_oof", spy)
    return seen


def _imbalanced() -> tuple[list[str], list[str]]:
    texts, labels = make_texts(12)
    keep = [i for i, label in enumerate(labels) if label == "pos" or i % 4 == 0]  # 12 pos, 3 neg
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _context(backbone: Any) -> FitContext:
    from headstart.features import extract_features

    return FitContext(embed=lambda ds: extract_features(backbone, ds, cache=None),
                      embed_with=lambda b, ds: extract_features(b, ds, cache=None))


@pytest.mark.parametrize("strategy,params", [
    ("partial", {"epochs": 1, "val_fraction": 0.0}),
    ("contrastive", {"steps": 1}),
    ("auto", {"budget": "60s"}),
])
def test_start_and_fallback_probes_carry_class_weight(probe_weights: list[Any], strategy: str,
                                                      params: dict[str, Any]) -> None:
    texts, labels = _imbalanced()
    clf = TransferClassifier(backbone="tiny-bert", strategy=strategy, class_weight="balanced", cache=False,
                             strategy_params=params).fit(texts, labels)
    assert probe_weights and set(probe_weights) == {"balanced"}
    assert clf.strategy_details_["params"]["class_weight"] == "balanced"


def test_fallback_probe_carries_class_weight_and_it_changes_the_probe(probe_weights: list[Any]) -> None:
    texts, labels = _imbalanced()
    data = from_memory(texts, labels)
    backbone = create_backbone("tiny-bert")
    probas = {}
    for weight in (None, "balanced"):
        strategy = create_strategy("partial", class_weight=weight)
        kept = strategy._keep_probe(backbone, data, data.subset(range(4)), [], _context(backbone))
        assert "kept_probe" in kept.details
        probas[weight] = kept.head.predict_proba(_context(backbone).embed(data))
    assert probe_weights == [None, "balanced"]
    # Weighted, the rare class gets more probability on average than unweighted.
    rare = list(kept.classes).index("neg")
    assert probas["balanced"][:, rare].mean() > probas[None][:, rare].mean()


def test_check_settings_returns_what_it_was_given() -> None:
    assert check_settings("lora", {"lora_rank": 4, "lora_alpha": None}) == {"lora_rank": 4, "lora_alpha": None}
