"""A plugin modality's table column from the command line: ``--col MODALITY=COLUMN`` on every command
that reads a table of items, recorded in the bundle and re-read from there, and messages that name
options that exist (the toy ``vectors`` plugin guesses only a column called ``vector``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import headstart
from headstart.bundle import read_manifest, recreate_fit_split
from headstart.cli.app import run
from headstart.data import load_table
from headstart.errors import ConfigError, DataError
from headstart.modalities import get_modality
from headstart.serving.export import _real_data
from toy_modality import DIM, NAME

QUICK = ("--no-compare", "--no-learning-curve", "-q")
COL = ("--col", f"{NAME}=readings")


@pytest.fixture(scope="module")
def table(plugin: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 vectors in three separable clusters, in a column no modality guesses ("readings")."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.5, (3, DIM))
    rows = [(" ".join(f"{v:.5f}" for v in centers[c] + rng.normal(0, 1, DIM)), f"c{c}") for c in range(3)
            for _ in range(24)]
    path = tmp_path_factory.mktemp("plugin-columns") / "sensors.csv"
    pd.DataFrame({"readings": [r[0] for r in rows], "label": [r[1] for r in rows]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def bundle(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "sensors"
    assert run(["fit", str(table), *COL, "--out", str(out), "--C", "1", "--no-track", "--no-cache", *QUICK]) == 0
    return out


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # the terminal wraps long messages


def test_fit_records_the_named_column_and_every_command_reads_it(bundle: Path, table: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    manifest = read_manifest(bundle)
    assert manifest["modality"] == NAME and manifest["loader"]["columns"] == {NAME: "readings"}
    assert manifest["loader"]["text_col"] is None and manifest["loader"]["image_col"] is None

    code, out, err = _run(capsys, "predict", bundle, table, *COL, "--json", "-q")
    assert code == 0, err
    rows = json.loads(out)["predictions"]
    assert len(rows) == 72 and rows[0]["item"].startswith(f"{table} row 1: [")

    code, out, err = _run(capsys, "evaluate", bundle, table, *COL, "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["metrics"]["accuracy"] > 0.5  # separable clusters; chance is 1/3
    # without --col: the column the fit recorded; --split test re-creates fit's split with it
    code, out, err = _run(capsys, "evaluate", bundle, table, "--split", "test", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["metrics"]["n"] == manifest["metrics"]["test"]["n"] < 72

    code, out, err = _run(capsys, "audit", table, *COL, "--backbone", "none", "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["data"]["modality"] == NAME

    code, out, err = _run(capsys, "rank", table, *COL, "--candidates", "toy-mlp", "--no-cache", "--json", "-q")
    assert code == 0, err
    assert [c["name"] for c in json.loads(out)["candidates"]] == ["toy-mlp"]

    # export re-reads the fit's data (no --data) by the recorded column, for parity and the int8
    # accuracy (the ONNX export itself is test_toy_modality's: seconds more, nothing new here)
    dataset, source = _real_data(bundle, manifest, None)
    assert source == str(table) and dataset.modality == NAME and len(dataset) == 72
    assert recreate_fit_split(dataset, manifest).split("test").labels is not None


@pytest.mark.parametrize(
    "value,message",
    [
        ("readings", "--col 'readings' is not MODALITY=COLUMN"),
        ("vectors=", "--col 'vectors=' is not MODALITY=COLUMN"),
        ("sonar=readings", "--col sonar=readings: unknown modality 'sonar' (known: image, text, vectors)"),
        ("vectors=nothere", "no column 'nothere' (columns present: readings, label). Pass --col vectors=COLUMN."),
    ],
)
def test_bad_col_values_are_clear_errors(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         value: str, message: str) -> None:
    for command in (["fit", table, "--out", tmp_path / "x", *QUICK], ["audit", table, "--backbone", "none", "-q"]):
        code, out, err = _run(capsys, *command, "--col", value)
        assert code == 1 and message in err, err
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "x").exists()


def test_col_and_text_col_together_are_refused(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "fit", table, "--out", tmp_path / "x", "--col", "text=readings",
                        "--text-col", "readings", *QUICK)
    assert code == 1 and "--col text=readings and --text-col readings both name the items' column" in err


def test_messages_name_the_generic_option_for_a_plugin(plugin: object, bundle: Path, table: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # no column named and none guessed: every modality's option, as it is spelled
    code, _, err = _run(capsys, "fit", table, "--out", tmp_path / "x", *QUICK)
    assert code == 1 and "cannot tell which column holds the inputs" in err
    for option in ("--text-col NAME for texts", "--image-col NAME for images", "--col vectors=COLUMN for vectors"):
        assert option in err, err
    # a table read as another modality than the model's
    code, _, err = _run(capsys, "predict", bundle, table, "--col", "text=readings", "-q")
    assert code == 1 and "holds text but the model takes vectors; pass --col vectors=COLUMN." in err
    # a file that is not a table
    lines = tmp_path / "items.txt"
    lines.write_text("1 2 3 4 5 6\n")
    code, _, err = _run(capsys, "predict", bundle, lines, "-q")
    assert code == 1 and "reads its items from a table (pass --col vectors=COLUMN)" in err
    assert get_modality("text").table_option == "--text-col NAME"
    assert get_modality("image").table_option == "--image-col NAME"


def test_builtin_modalities_take_the_generic_form_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"body": ["good day", "bad day"], "label": ["pos", "neg"]}).to_csv(path, index=False)
    assert load_table(path, columns={"text": "body"}).items == load_table(path, text_col="body").items
    with pytest.raises(DataError, match=r"no column 'texte'.*Pass --text-col NAME\.$"):
        load_table(path, columns={"text": "texte"})
    _, out, err = _run(capsys, "audit", path, "--col", "text=body", "--backbone", "none", "--json", "-q")
    assert json.loads(out)["data"]["modality"] == "text", err


def test_the_library_refuses_two_names_for_the_items_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"body": ["good day", "bad day"], "text": ["a", "b"], "label": ["pos", "neg"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="items come from one column; got text column 'body', text column 'text'"):
        load_table(path, columns={"text": "body"}, text_col="text")
    with pytest.raises(DataError, match=r"columns='body': give the items' column as \{modality: column name\}"):
        load_table(path, columns="body")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="columns= name table columns, but the data is in memory"):
        headstart.fit(["good day", "bad day"], ["pos", "neg"], columns={"text": "body"})
