"""Issue 13, data and evaluation: each probe that broke, plus property tests for the loaders.

The property tests feed arbitrary bytes, encodings and shapes to every loader (tables, text
files, image files, in-memory data): the answer is a result or a headstart error, never another
exception.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import make_image, make_texts
from headstart.audit import audit, preflight
from headstart.backbones import create_backbone
from headstart.classifier import TransferClassifier
from headstart.cli import render
from headstart.cli.app import run
from headstart.data import (
    Dataset,
    assign_splits,
    from_memory,
    load_data,
    load_image_folder,
    load_table,
)
from headstart.data.items import open_image
from headstart.data.labels import label_indices
from headstart.data.text_files import decode_lines
from headstart.errors import BackboneError, DataError, HeadstartError
from headstart.evaluation import check_known_labels, classification_metrics

QUICK = ("--no-compare", "--no-learning-curve", "--no-track", "--no-cache")


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bool_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(15)
    path = tmp_path_factory.mktemp("bool") / "flags.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab == "pos"}) + "\n" for t, lab in zip(texts, labels)))
    return path


@pytest.fixture(scope="module")
def bool_bundle(bool_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text bundle fitted on JSON true/false labels (module-wide: one fit for several probes)."""
    out = tmp_path_factory.mktemp("bundles") / "flags"
    code = run(["fit", str(bool_data), "--backbone", "tiny-bert", "--out", str(out), "--quiet", *QUICK])
    assert code == 0
    return out


# ------------------------------------------------------------------ 13. labels
def test_boolean_labels_fit_then_evaluate_and_predict(bool_bundle: Path, bool_data: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((bool_bundle / "headstart.json").read_text())
    assert manifest["labels"] == [False, True]  # JSON booleans, not the strings "False"/"True"
    code, out, err = _run(capsys, "evaluate", bool_bundle, bool_data, "--quiet", "--json")
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["n"] == 30 and [r["label"] for r in metrics["per_class"]] == [False, True]
    code, out, err = _run(capsys, "predict", bool_bundle, bool_data, "--quiet", "--json")
    assert code == 0, err
    assert {type(p["label"]) for p in json.loads(out)["predictions"]} == {bool}


def test_labels_match_by_their_text_across_types() -> None:
    # A bundle written before the fix stored "False"/"True"; CSV gives 1 where an array gave 1.0.
    assert label_indices([True, False, True], ["False", "True"], "data").tolist() == [1, 0, 1]
    assert label_indices([1, 2, np.int64(2)], [1.0, 2.0], "data").tolist() == [0, 1, 1]
    check_known_labels([np.bool_(True)], [False, True], "data")
    with pytest.raises(DataError, match=r"does not know: maybe\. The model was trained on: False, True"):
        check_known_labels([True, "maybe"], [False, True], "data")
    with pytest.raises(DataError, match="read the same"):
        from_memory(["a b", "c d"], [1, "1"])


# ----------------------------------------------- 14. class only in evaluation
def test_class_only_in_evaluation_is_refused_before_any_training(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    texts, labels = make_texts(6)
    texts += ["so so meh a", "so so meh b"]
    labels += ["meh", "meh"]
    splits = ["train"] * 5 + ["test"] + ["train"] * 5 + ["test"] + ["test", "val"]
    path = tmp_path / "orphan.csv"
    pd.DataFrame({"text": texts, "label": labels, "split": splits}).to_csv(path, index=False)
    code, _, err = _run(capsys, "fit", path, "--split-col", "split", "--backbone", "tiny-bert",
                        "--out", tmp_path / "b", *QUICK)
    assert code == 1 and "'meh'" in err and "no training example" in err and "Traceback" not in err
    dataset = load_data(path, split_col="split")
    with pytest.raises(DataError, match="no training example"):
        preflight(dataset)
    # The Python API refuses it before building a backbone (an unknown name would fail there).
    with pytest.raises(DataError, match="no training example"):
        TransferClassifier(backbone="no-such-backbone").fit(dataset)


# --------------------------------------------------------- 15. absent classes
def test_metrics_name_absent_classes_and_score_the_present_ones(capsys: pytest.CaptureFixture[str]) -> None:
    classes = ["a", "b", "c"]
    y = ["a"] * 12 + ["b"] * 12
    proba = np.tile([0.8, 0.1, 0.1], (24, 1))
    proba[12:] = [0.1, 0.8, 0.1]
    proba[0] = [0.1, 0.1, 0.8]  # one mistake, predicted as the absent class
    m = classification_metrics(y, proba, classes)
    assert m["absent_classes"] == ["c"]
    assert m["macro_f1"] < 0.7 < 0.95 < m["macro_f1_present"] and m["accuracy"] > 0.95
    render.metrics_tables(m, "probe")
    out = capsys.readouterr().out
    assert "absent from this data: c" in out and f"{m['macro_f1_present']:.4f}" in out
    full = classification_metrics([*y, "c"], np.vstack([proba, [0.1, 0.1, 0.8]]), classes)
    assert full["absent_classes"] == [] and full["macro_f1_present"] == full["macro_f1"]


# ----------------------------------------------------------- 16. stdin bytes
def test_predict_reads_non_utf8_stdin_like_a_file(bool_bundle: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    raw = b"caf\xe9 good great\nbad awful poor\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    code, out, err = _run(capsys, "predict", bool_bundle, "-", "--json")
    assert code == 0, err
    from_stdin = json.loads(out)["predictions"]
    assert len(from_stdin) == 2 and "line 1 is not valid UTF-8" in err and "iconv" in err
    (tmp_path / "lines.txt").write_bytes(raw)
    code, out, err = _run(capsys, "predict", bool_bundle, tmp_path / "lines.txt", "--json", "--quiet")
    assert code == 0, err
    assert [p["probabilities"] for p in json.loads(out)["predictions"]] == [p["probabilities"] for p in from_stdin]


# ------------------------------------------------------------- 17. messages
def test_decode_error_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\nfine,a\nalso fine,b\ncaf\xe9 au lait,a\n")
    with pytest.raises(DataError, match=r"line 4 has byte 0xe9.*iconv -f WINDOWS-1252 -t UTF-8"):
        load_table(path)


def test_repeated_csv_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("text,label,label\nhello there,a,b\nbye now,b,a\n")
    with pytest.raises(DataError, match=r"'label' in columns 2, 3"):
        load_table(path)
    (tmp_path / "dup.tsv").write_text("text\tsource\tlabel\tsource\nhello there\tx\ta\ty\n")
    with pytest.raises(DataError, match=r"'source' in columns 2, 4"):
        load_table(tmp_path / "dup.tsv")


def test_placeholder_labels_are_flagged_by_loader_and_audit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts, labels = make_texts(6)
    labels[:2] = ["NaN", "None"]
    path = tmp_path / "nan.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="headstart.data.labels"):
        ds = load_table(path)
    assert "NaN" in ds.classes and "usually means a missing label" in caplog.text
    check = audit(path, backbone=None).check("missing-labels")
    assert check.severity == "warning" and check.count == 2


def test_evaluate_split_advises_the_cli_and_recreates_the_fit_split(bool_bundle: Path, bool_data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "evaluate", bool_bundle, bool_data, "--split", "test", "--json", "--quiet")
    assert code == 0, err
    manifest = json.loads((bool_bundle / "headstart.json").read_text())
    assert json.loads(out)["metrics"]["n"] == manifest["data"]["split_counts"]["test"]
    other = tmp_path / "other.jsonl"
    other.write_text("".join(bool_data.read_text().splitlines(keepends=True)[:20]))
    code, _, err = _run(capsys, "evaluate", bool_bundle, other, "--split", "test", "--quiet")
    assert code == 1 and "--split-col COLUMN" in err and "assign_splits" not in err


def test_decompression_bomb_message_states_the_real_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (50, 50)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses above 2x: 2,000 pixels
    with pytest.raises(DataError, match=r"over 2,000 pixels.*PIL\.Image\.MAX_IMAGE_PIXELS = "):
        open_image(path)


# -------------------------------------------------------- 18a. pickled weights
def test_local_hf_folder_with_only_a_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    original = create_backbone("tiny-bert", seed=1)
    folder = tmp_path / "pickled"
    original.model.config.save_pretrained(folder)
    original.tokenizer.save_pretrained(folder)
    torch.save(original.model.state_dict(), folder / "pytorch_model.bin")  # the pre-safetensors layout

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called on a user file")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(BackboneError, match=r"pytorch_model\.bin.*save_pretrained\(.*safe_serialization=True\)"):
        create_backbone(str(folder))


def test_timm_folder_with_only_a_pickle_is_refused(tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "timm-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "test_efficientnet"}))
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(BackboneError, match=r"pytorch_model\.bin.*safetensors"):
        create_backbone(str(folder))


# ------------------------------------------------------ 18b. groups and time
def _grouped_table(path: Path) -> Path:
    texts, labels = make_texts(20)
    n = len(texts)
    pd.DataFrame({"text": texts, "label": labels, "patient": [f"p{i % 10}" for i in range(n)],
                  "when": [f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00" for i in range(n)]}).to_csv(path, index=False)
    return path


def test_splits_keep_groups_whole_and_evaluate_on_later_items(tmp_path: Path) -> None:
    path = _grouped_table(tmp_path / "g.csv")
    ds = assign_splits(load_data(path, group_col="patient"), seed=3)
    spans = {g: {s for gg, s in zip(ds.groups, ds.splits) if gg == g} for g in set(ds.groups)}
    assert all(len(s) == 1 for s in spans.values()) and set(ds.splits) == {"train", "val", "test"}
    assert preflight(ds).check("group-leakage").severity == "ok"
    ds = assign_splits(load_data(path, time_col="when"), seed=3)
    when = pd.to_datetime(pd.Series(ds.times))
    split = pd.Series(ds.splits)
    assert when[split == "train"].max() < when[split == "val"].min() <= when[split == "val"].max() < when[split == "test"].min()
    assert preflight(ds).check("time-leakage").severity == "ok"


def test_fit_takes_group_and_time_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _grouped_table(tmp_path / "g.csv")
    frame = pd.read_csv(path)
    frame["split"] = ["test" if i == 0 else "train" if i % 3 else "val" for i in range(len(frame))]
    frame.to_csv(tmp_path / "leaky.csv", index=False)  # patient p0 is in train and test
    code, _, err = _run(capsys, "fit", tmp_path / "leaky.csv", "--split-col", "split", "--group-col", "patient",
                        "--backbone", "tiny-bert", "--out", tmp_path / "leaky", *QUICK)
    assert code == 1 and "group 'p0'" in err and "--allow-leakage" in err
    out = tmp_path / "grouped"
    code, _, err = _run(capsys, "fit", path, "--group-col", "patient", "--backbone", "tiny-bert", "--out", out,
                        "--quiet", *QUICK)
    assert code == 0, err
    manifest = json.loads((out / "headstart.json").read_text())
    assert manifest["loader"]["group_col"] == "patient" and manifest["loader"]["time_col"] is None
    # evaluate re-creates the fit's grouped split from the recorded columns.
    code, out_json, err = _run(capsys, "evaluate", out, path, "--split", "test", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out_json)["metrics"]["n"] == manifest["data"]["split_counts"]["test"]


# ------------------------------------------------------- property tests
# A few seconds in the fast suite; HEADSTART_HYPOTHESIS_EXAMPLES=2000 for a deeper search.
LOADER = settings(max_examples=int(os.environ.get("HEADSTART_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def _loads_or_refuses(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except HeadstartError:
        return None


@LOADER
@given(raw=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES), labeled=st.booleans())
def test_tables_of_arbitrary_bytes_load_or_raise_a_headstart_error(raw: bytes, suffix: str, labeled: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        path.write_bytes(raw)
        _loads_or_refuses(load_table, path, label_col="label" if labeled else None, require_labels=labeled)
        _loads_or_refuses(load_table, path, problems=[])


CELLS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                  st.text(max_size=12), st.sampled_from(["NaN", "None", "", " ", "train", "test", "x.png"]),
                  st.lists(st.integers(), max_size=2))
COLUMNS = st.sampled_from(["text", "label", "split", "image", "1", "label.1", ""])


@LOADER
@given(rows=st.lists(st.dictionaries(COLUMNS, CELLS, max_size=4), min_size=1, max_size=6),
       suffix=st.sampled_from((".jsonl", ".json", ".csv", ".parquet")),
       split=st.booleans(), image=st.booleans())
def test_tables_of_arbitrary_cells_load_or_raise_a_headstart_error(rows: list[dict], suffix: str, split: bool,
                                                                   image: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        if suffix == ".jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif suffix == ".json":
            path.write_text(json.dumps(rows))
        else:
            frame = pd.DataFrame(rows)
            try:
                if suffix == ".csv":
                    frame.to_csv(path, index=False)
                else:
                    frame.to_parquet(path)
            except Exception:  # pandas/pyarrow cannot write every mix: not the loader's business
                return
        kwargs = {"image_col": "image"} if image else {}
        ds = _loads_or_refuses(load_table, path, split_col="split" if split else None, group_col=None, **kwargs)
        if ds is not None:
            assert len(ds) and ds.labels is not None and len(ds.classes) >= 1
            ds.fingerprint()
            _loads_or_refuses(assign_splits, ds)


ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-32", "shift_jis")


@LOADER
@given(texts=st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=6),
       encoding=st.sampled_from(ENCODINGS), suffix=st.sampled_from((".csv", ".tsv", ".jsonl")))
def test_tables_in_any_encoding_load_or_raise_a_headstart_error(texts: list[str], encoding: str, suffix: str) -> None:
    frame = pd.DataFrame({"text": texts, "label": ["a", "b"] * (len(texts) // 2) + ["a"] * (len(texts) % 2)})
    body = (frame.to_json(orient="records", lines=True, force_ascii=False) if suffix == ".jsonl"
            else frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ","))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        try:
            path.write_bytes(body.encode(encoding))
        except UnicodeEncodeError:
            return
        _loads_or_refuses(load_table, path)


@LOADER
@given(raw=st.binary(max_size=300))
def test_text_lines_of_arbitrary_bytes_decode_or_raise_a_headstart_error(raw: bytes) -> None:
    lines = _loads_or_refuses(decode_lines, raw, "<stdin>")
    if lines is not None:
        assert all(text.strip() and isinstance(n, int) for n, text in lines)


def _png(side: int, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, format="PNG")
    return buf.getvalue()


@LOADER
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda png, cut, flip: png[:cut] + bytes([flip]) + png[cut + 1:],
                                st.builds(_png, st.integers(1, 8), st.sampled_from(["RGB", "L", "P", "RGBA", "I;16", "1"])),
                                st.integers(0, 80), st.integers(0, 255))),
       suffix=st.sampled_from((".png", ".jpg", ".gif", ".bmp", ".tif", ".webp")))
def test_image_files_of_arbitrary_bytes_decode_or_raise_a_headstart_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "a").mkdir()
        (root / "b").mkdir()
        (root / "a" / f"x{suffix}").write_bytes(data)
        make_image("disc", np.random.default_rng(0)).save(root / "b" / "y.png")
        ds = load_image_folder(root)
        for item, loc in zip(ds.items, ds.locators):
            img = _loads_or_refuses(open_image, item, loc)
            assert img is None or img.mode == "RGB"


ARRAYS = st.builds(
    lambda shape, dtype, fill: np.full(shape, fill).astype(dtype),
    st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
    st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool", "complex64", "object"]),
    st.one_of(st.integers(-5, 70000), st.floats(allow_nan=True, allow_infinity=True, width=32)),
)
ITEMS = st.one_of(st.text(max_size=10), st.none(), st.integers(), ARRAYS,
                  st.sampled_from(["cat.png", "", "  ", "\ud800x"]))


@LOADER
@given(items=st.lists(ITEMS, max_size=4), labels=st.one_of(st.none(), st.lists(CELLS, max_size=4)),
       modality=st.sampled_from([None, "text", "image"]))
def test_in_memory_data_loads_or_raises_a_headstart_error(items: list, labels: list | None, modality: str | None) -> None:
    ds = _loads_or_refuses(from_memory, items, labels, modality=modality)
    if ds is None:
        return
    assert isinstance(ds, Dataset) and len(ds) == len(items)
    _loads_or_refuses(ds.fingerprint)
    if ds.modality == "image":
        for item, loc in zip(ds.items, ds.locators):
            _loads_or_refuses(open_image, item, loc)


@LOADER
@given(rows=st.lists(st.tuples(st.sampled_from("abc"), st.one_of(st.none(), st.sampled_from("pqrstuvw")),
                               st.integers(0, 40)), min_size=3, max_size=40),
       by=st.sampled_from(["group", "time", "both"]), val=st.sampled_from([0.0, 0.1, 0.2]),
       test=st.sampled_from([0.0, 0.2, 0.3]), seed=st.integers(0, 3))
def test_group_and_time_splits_hold_their_promise_or_refuse(rows: list[tuple], by: str, val: float, test: float,
                                                            seed: int) -> None:
    ds = Dataset(items=[f"text {i}" for i in range(len(rows))], labels=[r[0] for r in rows], modality="text",
                 groups=[r[1] for r in rows] if by != "time" else None,
                 times=[r[2] for r in rows] if by != "group" else None)
    try:
        assign_splits(ds, val_fraction=val, test_fraction=test, seed=seed)
    except DataError:
        return
    splits = np.array(ds.splits)
    assert set(splits) <= {"train", "val", "test"} and "train" in splits
    assert {lab for lab, s in zip(ds.labels, splits) if s != "train"} <= {lab for lab, s in zip(ds.labels, splits) if s == "train"}
    if ds.groups is not None:
        assert all(len({s for g, s in zip(ds.groups, splits) if g == group}) == 1 for group in set(ds.groups) - {None})
    if ds.times is not None:
        times = np.array(ds.times)
        for later, earlier in (("val", "train"), ("test", "train"), ("test", "val")):
            if (splits == later).any() and (splits == earlier).any():
                assert times[splits == later].min() >= times[splits == earlier].max()
