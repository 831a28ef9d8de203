"""``headstart.fit`` checks the strategy and its settings before any work, through the public
``TransferClassifier.strategy_settings`` (the same settings ``fit`` passes to the strategy)."""

from __future__ import annotations

from pathlib import Path

import pytest

import headstart
from headstart import ConfigError, TransferClassifier


def test_strategy_settings_are_the_validated_settings() -> None:
    assert TransferClassifier(strategy="full", epochs=3).strategy_settings() == {"epochs": 3}
    assert TransferClassifier(strategy="contrastive", strategy_params={"steps": 4}).strategy_settings()["steps"] == 4
    with pytest.raises(ConfigError, match=r"unknown strategy 'linear-prob'\. Did you mean 'linear-probe'"):
        TransferClassifier(strategy="linear-prob").strategy_settings()


@pytest.mark.parametrize("params,message", [
    ({"strategy": "linear-prob"}, "unknown strategy 'linear-prob'"),
    ({"strategy": "full", "lr": -1}, "The 'lr' setting of strategy 'full' must be a float"),
    ({"strategy": "linear-probe", "epochs": 3}, "The 'epochs' setting is not used by strategy 'linear-probe'"),
])
def test_fit_refuses_bad_strategy_settings_before_touching_the_data(params: dict, message: str,
                                                                     tmp_path: Path) -> None:
    # The data does not exist: a DataError would mean the data was read before the settings were checked.
    with pytest.raises(ConfigError, match=message):
        headstart.fit(tmp_path / "missing.csv", out=tmp_path / "out", **params)
    assert not (tmp_path / "out").exists()
