"""``headstart.bundle.recreate_fit_split``: the train/val/test split fit made of data without one,
re-created from the bundle's manifest and checked against its fingerprint; the one mechanism
behind ``evaluate --split`` and the int8 accuracy of ``export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import headstart
from conftest import make_texts
from headstart import BundleError, DataError
from headstart.bundle import fit_split_settings, read_manifest, recreate_fit_split
from headstart.cli.app import run
from headstart.data import Dataset, assign_splits, load_data
from headstart.serving.export import _held_out


@pytest.fixture
def grouped(tmp_path: Path) -> Path:
    """40 texts of 2 classes, 10 patients, with timestamps."""
    texts, labels = make_texts(20)
    path = tmp_path / "notes.csv"
    pd.DataFrame({"text": texts, "label": labels, "patient": [f"p{i % 10}" for i in range(len(texts))]}
                 ).to_csv(path, index=False)
    return path


def _load(path: Path, **columns: Any) -> Dataset:
    return load_data(path, text_col="text", **columns)


def _manifest(path: Path, *, seed: int = 4, val: float = 0.15, test: float = 0.3, record: bool = True,
              **columns: Any) -> dict[str, Any]:
    """The fields fit records about its split, from splitting a fresh load of ``path`` the way fit does."""
    fitted = assign_splits(_load(path, **columns), seed=seed, val_fraction=val, test_fraction=test)
    loader = {"path": str(path), "text_col": "text", **columns}
    if record:
        loader.update(val_fraction=val, test_fraction=test)
    return {"seed": seed, "loader": loader, "data": {"fingerprint": fitted.fingerprint(), "source": str(path)},
            "_splits": fitted.splits}


def test_recreates_the_split_fit_made_with_its_seed_and_shares(grouped: Path) -> None:
    manifest = _manifest(grouped, seed=4, val=0.15, test=0.3)
    data = _load(grouped)
    assert recreate_fit_split(data, manifest) is data
    assert data.splits == manifest["_splits"]
    assert recreate_fit_split(data, manifest).splits == manifest["_splits"]  # data with the fit's split: checked
    # another seed or share would give another split: these are read from the manifest, not defaults
    assert assign_splits(_load(grouped), seed=0).splits != manifest["_splits"]


def test_recreates_a_split_by_group(grouped: Path) -> None:
    manifest = _manifest(grouped, group_col="patient")
    data = recreate_fit_split(_load(grouped, group_col="patient"), manifest)
    assert data.splits == manifest["_splits"]
    by_patient: dict[str, set[str]] = {}
    for group, split in zip(data.groups, data.splits):
        by_patient.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in by_patient.values())
    with pytest.raises(DataError, match="fingerprint differs"):  # loaded without the group column: other split
        recreate_fit_split(_load(grouped), manifest)


def test_a_bundle_that_predates_recording_the_shares_uses_fits_defaults(grouped: Path) -> None:
    manifest = _manifest(grouped, seed=2, val=0.1, test=0.2, record=False)
    assert fit_split_settings(manifest) == {"seed": 2, "val_fraction": 0.1, "test_fraction": 0.2, "recorded": False}
    assert recreate_fit_split(_load(grouped), manifest).splits == manifest["_splits"]
    recorded = _manifest(grouped, seed=2, val=0.15, test=0.3)
    assert fit_split_settings(recorded) == {"seed": 2, "val_fraction": 0.15, "test_fraction": 0.3, "recorded": True}


def test_other_data_is_a_clear_error_and_stays_unsplit(grouped: Path, tmp_path: Path) -> None:
    manifest = _manifest(grouped)
    texts, labels = make_texts(20, seed=9)
    other_path = tmp_path / "other.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(other_path, index=False)
    other = _load(other_path)
    with pytest.raises(DataError) as raised:
        recreate_fit_split(other, manifest, fix="Do this instead.")
    message = str(raised.value)
    assert f"cannot be re-created on {other_path}" in message
    assert f"not the data the bundle was fitted on ({grouped})" in message and "fingerprint differs" in message
    assert message.endswith("Do this instead.")
    assert other.splits is None  # not left half-split


def test_data_that_cannot_be_split_like_the_fit_data_says_so_not_why_splitting_failed(grouped: Path,
                                                                                     tmp_path: Path) -> None:
    manifest = _manifest(grouped)
    small = tmp_path / "small.csv"
    pd.DataFrame({"text": ["good day", "bad day", "fine"], "label": ["pos", "neg", "pos"]}).to_csv(small, index=False)
    data = _load(small)
    with pytest.raises(DataError, match="cannot be split the way that data was") as raised:
        recreate_fit_split(data, manifest)
    assert "too few examples" not in str(raised.value) and data.splits is None


def test_data_with_its_own_split_is_only_checked(grouped: Path, tmp_path: Path) -> None:
    manifest = _manifest(grouped)
    own = tmp_path / "own.csv"
    frame = pd.read_csv(grouped)
    frame["split"] = manifest["_splits"]
    frame.to_csv(own, index=False)
    assert recreate_fit_split(_load(own, split_col="split"), manifest).splits == manifest["_splits"]
    frame["split"] = ["train"] * (len(frame) - 4) + ["test"] * 4
    frame.to_csv(own, index=False)
    data = _load(own, split_col="split")
    with pytest.raises(DataError, match="fingerprint differs"):
        recreate_fit_split(data, manifest)
    assert data.splits == list(frame["split"])  # its own split is kept


def test_a_bundle_without_a_fingerprint_or_with_a_damaged_seed(grouped: Path) -> None:
    manifest = _manifest(grouped)
    with pytest.raises(DataError, match="records no fingerprint"):
        recreate_fit_split(_load(grouped), {**manifest, "data": {}})
    with pytest.raises(BundleError, match=r"'seed' is 'four', not a number.*restore it or refit"):
        recreate_fit_split(_load(grouped), {**manifest, "seed": "four"})
    with pytest.raises(BundleError, match=r"'loader.test_fraction' is True"):
        fit_split_settings({**manifest, "loader": {"test_fraction": True}})


def test_exports_held_out_split_is_the_same_re_created_split(grouped: Path, tmp_path: Path) -> None:
    manifest = _manifest(grouped, seed=4, val=0.1, test=0.2, record=False)  # an older bundle
    test, where = _held_out(manifest, _load(grouped), "notes.csv")
    expected = recreate_fit_split(_load(grouped), manifest).split("test")
    assert test is not None and test.items == expected.items
    assert where == (f"the fit's held-out test split of notes.csv, re-created ({len(expected)} items; seed 4, val 0.1, "
                     "test 0.2 (fit's defaults: bundle predates recording them); fingerprint matches)")
    other, where = _held_out(manifest, _load(grouped, group_col="patient"), "notes.csv")
    assert other is not None and len(other) == 40 and other.splits is None
    assert where.startswith("all 40 items of notes.csv (not the data the bundle was fitted on")


def test_fit_then_evaluate_split_re_creates_the_fit_split(grouped: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    headstart.fit(grouped, text_col="text", group_col="patient", backbone="tiny-bert", out=out, seed=4,
                  val_fraction=0.15, test_fraction=0.3, compare=False, learning_curve=False)
    manifest = read_manifest(out)
    data = recreate_fit_split(_load(grouped, group_col="patient"), manifest)
    assert {s: data.splits.count(s) for s in ("train", "val", "test")} == manifest["data"]["split_counts"]
    code = run(["evaluate", str(out), str(grouped), "--split", "test", "--json", "-q"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["metrics"]["n"] == manifest["data"]["split_counts"]["test"]
    other = tmp_path / "other.csv"
    pd.read_csv(grouped).iloc[:30].to_csv(other, index=False)
    code = run(["evaluate", str(out), str(other), "--split", "test", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    for part in (f"cannot be re-created on {other}", "not the data the bundle was fitted on",
                 "has no split of its own for --split", "--split-col COLUMN", "drop --split"):
        assert part in " ".join(err.split()), part
