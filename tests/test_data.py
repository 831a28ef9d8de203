"""Data loading: image folders, tables, in-memory lists, items, splits, Dataset and CLI inputs.

Every fixture is tiny and built in ``tmp_path``; nothing here touches a backbone.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from headstart.cli.inputs import read_inputs
from headstart.data import (
    Dataset,
    assign_splits,
    check_classes,
    collect_files,
    from_memory,
    infer_modality,
    load_data,
    load_image_folder,
    load_table,
)
from headstart.data.dataset import concat
from headstart.data.items import IMAGE_EXTENSIONS, item_sha256, open_image
from headstart.errors import DataError, HeadstartError

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _png(path: Path, value: int = 0, size: tuple[int, int] = (8, 6)) -> Path:
    """A small RGB PNG whose pixels all equal ``value`` (so different values = different bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value % 256, (value * 7) % 256, (value * 13) % 256)).save(path)
    return path


def _folder(root: Path, spec: dict[str, list[str]], start: int = 0) -> Path:
    """``root/<class>/<name>`` PNGs, each with distinct content."""
    value = start
    for cls, names in spec.items():
        for name in names:
            _png(root / cls / name, value)
            value += 1
    return root


def _write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:  # pragma: no cover - test helper misuse
        raise AssertionError(suffix)
    return path


TABLE_FORMATS = [".csv", ".tsv", ".jsonl", ".parquet"]


def _text_dataset(n: int = 10, *, with_splits: bool = True) -> Dataset:
    items = [f"text number {i}" for i in range(n)]
    labels = ["a" if i % 2 else "b" for i in range(n)]
    splits = [("train", "val", "test")[i % 3] for i in range(n)] if with_splits else None
    return Dataset(
        items=items,
        labels=labels,
        modality="text",
        splits=splits,
        slices={"grp": [f"g{i % 4}" for i in range(n)], "idx": list(range(n))},
        locators=[f"loc-{i}" for i in range(n)],
        source="toy",
    )


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


def test_image_folder_class_subfolders_sorted_and_non_images_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "animals", {"dog": ["b.png", "a.jpg"], "cat": ["z.png", "c.PNG", "m.png"]})
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "labels.csv").write_text("a,b\n1,2\n")
    (root / "dog" / ".hidden.png").write_bytes(b"junk")
    (root / "dog" / "Thumbs.db").write_bytes(b"\0\1\2")
    (root / ".git").mkdir()  # hidden folders are not classes
    _png(root / ".git" / "x.png")

    ds = load_image_folder(root)
    expected = [
        root / "cat" / "c.PNG",
        root / "cat" / "m.png",
        root / "cat" / "z.png",
        root / "dog" / "a.jpg",
        root / "dog" / "b.png",
    ]
    assert ds.items == expected
    assert ds.labels == ["cat", "cat", "cat", "dog", "dog"]
    assert ds.modality == "image"
    assert ds.splits is None
    assert ds.locators == [str(p) for p in expected]
    assert ds.source == str(root)
    assert ds.classes == ["cat", "dog"]
    assert ds.class_counts() == {"cat": 3, "dog": 2}
    # deterministic: loading again (and through load_data) gives exactly the same dataset
    again = load_data(root)
    assert again.items == ds.items and again.labels == ds.labels
    assert again.fingerprint() == ds.fingerprint()


def test_image_folder_nested_images_belong_to_their_class(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"cat": ["top.png"], "dog": ["d.png"]})
    _png(root / "cat" / "indoor" / "deep" / "nested.png", 99)
    _png(root / "dog" / "outdoor" / "n2.png", 98)
    ds = load_image_folder(root)
    by_name = dict(zip((p.name for p in ds.items), ds.labels))
    assert by_name == {"top.png": "cat", "nested.png": "cat", "d.png": "dog", "n2.png": "dog"}
    assert len(ds) == 4


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val"])
def test_image_folder_split_layout(tmp_path: Path, val_name: str) -> None:
    root = tmp_path / "splits"
    _folder(root / "train", {"cat": ["1.png", "2.png", "3.png"], "dog": ["1.png", "2.png"]}, start=0)
    _folder(root / val_name, {"cat": ["1.png"], "dog": ["1.png"]}, start=50)
    _folder(root / "test", {"cat": ["1.png"], "dog": ["1.png", "2.png"]}, start=100)
    ds = load_data(root)
    assert ds.splits is not None
    assert set(ds.splits) == {"train", "val", "test"}
    assert ds.split_counts() == {"train": 5, "val": 2, "test": 3}
    for item, label, split in zip(ds.items, ds.labels, ds.splits):
        # the class is the folder right under the split folder, the split the one above it
        assert item.parent.name == label
        split_dir = item.parent.parent.name.lower()
        assert {"train": "train", "test": "test"}.get(split_dir, "val") == split
    val = ds.split("val")
    assert sorted(val.labels) == ["cat", "dog"]
    assert all(p.parent.parent.name == val_name for p in val.items)
    assert ds.classes == ["cat", "dog"]
    # same order every time
    assert load_image_folder(root).items == ds.items


def test_image_folder_loose_images_without_classes_is_an_error_with_a_hint(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    _png(root / "img1.png")
    _png(root / "img2.png", 5)
    with pytest.raises(DataError, match="no class sub-folders") as info:
        load_image_folder(root)
    msg = str(info.value)
    assert "folder named after its class" in msg
    assert "img1.png" in msg or "img2.png" in msg


def test_image_folder_loose_images_inside_a_split_folder_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _folder(root / "train", {"cat": ["1.png"], "dog": ["1.png"]})
    _png(root / "test" / "loose.png", 3)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(root)


@pytest.mark.parametrize("content", ["nothing", "non_image"])
def test_image_folder_empty_class_folder_is_an_error(tmp_path: Path, content: str) -> None:
    root = _folder(tmp_path / "d", {"cat": ["1.png"], "dog": ["1.png"]})
    (root / "bird").mkdir()
    if content == "non_image":
        (root / "bird" / "readme.txt").write_text("no pictures")
    with pytest.raises(DataError, match=r"class folder .*bird.* has no image files"):
        load_image_folder(root)


def test_image_folder_mixing_split_and_other_folders_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _folder(root / "train", {"cat": ["1.png"], "dog": ["1.png"]})
    _folder(root, {"extra_class": ["1.png"]}, start=20)
    with pytest.raises(DataError, match="mixes split folders") as info:
        load_image_folder(root)
    assert "extra_class" in str(info.value)
    assert "train" in str(info.value)


def test_image_folder_without_images_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_image_folder(empty)
    only_text = tmp_path / "text_only"
    only_text.mkdir()
    (only_text / "a.txt").write_text("hello")
    (only_text / "b.md").write_text("# hi")
    with pytest.raises(DataError, match="no images found"):
        load_data(only_text)


def test_load_data_rejects_table_options_for_folders_and_missing_paths(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"cat": ["1.png"], "dog": ["1.png"]})
    with pytest.raises(DataError, match="tables only"):
        load_data(root, text_col="text")
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope")
    with pytest.raises(DataError, match="not a folder"):
        load_image_folder(tmp_path / "nope")


def test_collect_image_paths_expands_folders_sorted(tmp_path: Path) -> None:
    a = _png(tmp_path / "in" / "b.png", 1)
    b = _png(tmp_path / "in" / "sub" / "a.png", 2)
    (tmp_path / "in" / "x.txt").write_text("skip")
    single = _png(tmp_path / "one.png", 3)
    assert collect_files([tmp_path / "in", str(single)], IMAGE_EXTENSIONS) == [a, b, single]
    with pytest.raises(DataError, match="does not exist"):
        collect_files([tmp_path / "missing.png"], IMAGE_EXTENSIONS)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no image files"):
        collect_files([tmp_path / "none"], IMAGE_EXTENSIONS, "image")


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", TABLE_FORMATS)
def test_table_formats_load_text_and_labels(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"text": ["hello there", "good bye", "NA", "null"], "label": ["pos", "neg", "pos", "neg"]})
    path = _write(df, tmp_path / f"data{suffix}")
    ds = load_data(path)
    assert ds.modality == "text"
    assert ds.items == ["hello there", "good bye", "NA", "null"]  # "NA"/"null" are texts, not missing
    assert all(type(t) is str for t in ds.items)
    assert ds.labels == ["pos", "neg", "pos", "neg"]
    assert ds.splits is None
    assert ds.locators == [f"{path} row {i}" for i in range(1, 5)]
    assert ds.source == str(path)


@pytest.mark.parametrize("column", ["text", "sentence", "content", "body", "document"])
def test_table_text_column_is_auto_detected(tmp_path: Path, column: str) -> None:
    df = pd.DataFrame({"id": [1, 2], column: ["first text", "second text"], "label": ["x", "y"]})
    ds = load_table(_write(df, tmp_path / "t.csv"))
    assert ds.items == ["first text", "second text"]
    assert ds.modality == "text"


def test_table_without_a_recognisable_input_column_names_the_options(tmp_path: Path) -> None:
    df = pd.DataFrame({"review": ["a", "b"], "label": ["x", "y"]})
    with pytest.raises(DataError) as info:
        load_table(_write(df, tmp_path / "t.csv"))
    msg = str(info.value)
    assert "--text-col" in msg and "--image-col" in msg
    assert "review" in msg and "label" in msg
    # naming the column explicitly works
    assert load_table(tmp_path / "t.csv", text_col="review").items == ["a", "b"]


@pytest.mark.parametrize("column", ["image", "path", "filepath"])
def test_table_image_path_column_relative_to_the_table(tmp_path: Path, column: str) -> None:
    folder = tmp_path / "project"
    a = _png(folder / "imgs" / "a.png", 1)
    b = _png(folder / "imgs" / "sub" / "b.png", 2)
    c = _png(tmp_path / "elsewhere" / "c.png", 3)  # absolute paths are kept as they are
    df = pd.DataFrame({column: ["imgs/a.png", "imgs/sub/b.png", str(c)], "label": ["cat", "dog", "cat"]})
    path = _write(df, folder / "meta" / ".." / "table.csv")
    ds = load_table(path)
    assert ds.modality == "image"
    assert [p.resolve() for p in ds.items] == [a.resolve(), b.resolve(), c.resolve()]
    assert all(isinstance(p, Path) and p.is_file() for p in ds.items)
    assert ds.labels == ["cat", "dog", "cat"]
    # an explicit image column with another name
    df2 = df.rename(columns={column: "picture"})
    ds2 = load_table(_write(df2, folder / "t2.csv"), image_col="picture")
    assert [p.resolve() for p in ds2.items] == [a.resolve(), b.resolve(), c.resolve()]


def test_table_missing_image_file_is_an_error(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    df = pd.DataFrame({"image": ["a.png", "missing.png"], "label": ["x", "y"]})
    with pytest.raises(DataError, match=r"row 2: image file not found") as info:
        load_table(_write(df, tmp_path / "t.csv"))
    assert "missing.png" in str(info.value)


@pytest.mark.parametrize("suffix", TABLE_FORMATS)
def test_table_split_column_with_aliases(tmp_path: Path, suffix: str) -> None:
    values = ["training", "valid", "dev", "testing", " Train ", "TEST", "validation", "val"]
    df = pd.DataFrame({
        "text": [f"t{i}" for i in range(len(values))],
        "label": ["a", "b"] * 4,
        "split": values,
    })
    ds = load_table(_write(df, tmp_path / f"t{suffix}"), split_col="split")
    assert ds.splits == ["train", "val", "val", "test", "train", "test", "val", "val"]
    assert ds.split("test").items == ["t3", "t5"]
    # data with a split column is not re-split
    assert assign_splits(ds, seed=123).splits == ["train", "val", "val", "test", "train", "test", "val", "val"]


def test_table_invalid_split_value_names_the_row(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "x"], "split": ["train", "test", "bogus"]})
    path = _write(df, tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"row 3: split value 'bogus'") as info:
        load_table(path, split_col="split")
    assert "train/val/test" in str(info.value)
    with pytest.raises(DataError, match="--split-col"):
        load_table(path, split_col="fold")


def test_table_slice_columns(tmp_path: Path) -> None:
    df = pd.DataFrame({
        "text": ["a", "b", "c", "d"],
        "label": ["x", "y", "x", "y"],
        "lang": ["en", "fr", None, "en"],
        "year": [2020, 2021, 2020, 2022],
    })
    path = _write(df, tmp_path / "t.csv")
    ds = load_table(path, slice_cols=["lang", "year"])
    assert ds.slices == {"lang": ["en", "fr", "(missing)", "en"], "year": [2020, 2021, 2020, 2022]}
    assert all(type(v) is int for v in ds.slices["year"])
    assert ds.describe()["slice_columns"] == ["lang", "year"]
    with pytest.raises(DataError, match="--slice-col"):
        load_table(path, slice_cols=["country"])


@pytest.mark.parametrize("suffix", TABLE_FORMATS)
def test_table_integer_labels_stay_ints(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, 1, 1, 0]})
    ds = load_table(_write(df, tmp_path / f"t{suffix}"))
    assert ds.labels == [0, 1, 1, 0]
    assert all(type(v) is int for v in ds.labels)  # plain ints, not numpy ints or floats
    assert ds.classes == [0, 1]
    json.dumps(ds.describe())


def test_table_whole_float_labels_become_ints(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 2.0}\n')
    ds = load_table(path)
    assert ds.labels == [1, 2]
    assert all(type(v) is int for v in ds.labels)


def test_table_mixed_label_types_become_text(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "two"}\n')
    assert load_table(path).labels == ["1", "two"]


def test_table_missing_column_lists_columns_and_option(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": ["a", "b"], "category": ["x", "y"]})
    path = _write(df, tmp_path / "t.csv")
    with pytest.raises(DataError) as info:
        load_table(path)  # default label column "label" is absent
    msg = str(info.value)
    assert "'label'" in msg
    assert "columns present: text, category" in msg
    assert "--label-col" in msg
    with pytest.raises(DataError) as info:
        load_table(path, text_col="body", label_col="category")
    msg = str(info.value)
    assert "'body'" in msg and "columns present: text, category" in msg and "--text-col" in msg
    with pytest.raises(DataError, match="--image-col"):
        load_table(path, image_col="img", label_col="category")
    # unlabeled loading is allowed when asked for
    ds = load_table(path, require_labels=False)
    assert ds.labels is None
    assert load_table(path, label_col="category").labels == ["x", "y"]


@pytest.mark.parametrize("suffix", TABLE_FORMATS)
def test_table_missing_labels_name_rows_one_based(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"text": ["a", "b", "c", "d", "e"], "label": ["x", None, "y", None, "x"]})
    with pytest.raises(DataError, match=r"rows 2, 4 have no label in column 'label'"):
        load_table(_write(df, tmp_path / f"t{suffix}"))


def test_table_missing_labels_whitespace_and_one_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label\na,x\nb,"   "\nc,y\n')
    with pytest.raises(DataError, match=r"row 2 has no label"):
        load_table(path)


def test_table_many_missing_labels_are_summarised(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["x", "y"] + [None] * 7})
    with pytest.raises(DataError, match=r"rows 3, 4, 5, 6, 7 and 2 more"):
        load_table(_write(df, tmp_path / "t.csv"))


def test_table_missing_nullable_integer_labels_are_detected(tmp_path: Path) -> None:
    """Parquet keeps pandas' nullable Int64 dtype; its missing value is pd.NA, not NaN."""
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": pd.array([1, None, 0], dtype="Int64")})
    path = _write(df, tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"row 2 has no label"):
        load_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_table_empty_or_blank_text_names_rows(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"text": ["fine", None, "   ", "ok"], "label": ["x", "y", "x", "y"]})
    with pytest.raises(DataError, match=r"rows 2, 3 of column 'text' are empty or not text"):
        load_table(_write(df, tmp_path / f"t{suffix}"))


def test_table_unsupported_suffix(tmp_path: Path) -> None:
    txt = tmp_path / "data.txt"
    txt.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match=r"cannot load a \.txt file"):
        load_data(txt)
    xlsx = tmp_path / "data.xlsx"
    xlsx.write_bytes(b"PK\3\4")
    with pytest.raises(DataError, match=r"unsupported table type '\.xlsx'"):
        load_table(xlsx)
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "absent.csv")


def test_table_empty(tmp_path: Path) -> None:
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(DataError, match="has no rows"):
        load_table(header_only)
    zero_bytes = tmp_path / "zero.csv"
    zero_bytes.write_text("")
    with pytest.raises(DataError, match=re.escape(str(zero_bytes))):
        load_table(zero_bytes)
    empty_jsonl = tmp_path / "zero.jsonl"
    empty_jsonl.write_text("")
    with pytest.raises(DataError, match=re.escape(str(empty_jsonl))):
        load_table(empty_jsonl)
    empty_parquet = _write(pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}),
                           tmp_path / "zero.parquet")
    with pytest.raises(DataError, match="has no rows"):
        load_table(empty_parquet)


def test_table_corrupt_file_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="cannot read"):
        load_table(bad)


# --------------------------------------------------------------------------------------------
# in-memory data
# --------------------------------------------------------------------------------------------


def test_from_memory_texts() -> None:
    ds = from_memory(["spam offer", "meeting at 3"], ["spam", "ham"])
    assert ds.modality == "text"
    assert ds.items == ["spam offer", "meeting at 3"]
    assert ds.labels == ["spam", "ham"]
    assert ds.locators == ["<memory>[0]", "<memory>[1]"]
    unlabeled = from_memory(("a", "b"), source="mine")
    assert unlabeled.labels is None and unlabeled.items == ["a", "b"]
    assert unlabeled.locators == ["mine[0]", "mine[1]"]
    # numpy labels become plain Python values
    ds2 = from_memory(np.array(["x", "y", "z"]), np.array([3, 1, 3]))
    assert ds2.items == ["x", "y", "z"] and all(type(t) is str for t in ds2.items)
    assert ds2.labels == [3, 1, 3] and all(type(v) is int for v in ds2.labels)
    ds3 = from_memory(["x", "y"], [np.int64(1), np.int64(2)])
    assert all(type(v) is int for v in ds3.labels)
    json.dumps(ds2.describe())


@pytest.mark.parametrize("shape", [(4, 6, 5), (4, 6, 5, 3)])
def test_from_memory_numpy_image_batches(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=shape, dtype=np.uint8)
    ds = from_memory(X, ["a", "b", "a", "b"])
    assert ds.modality == "image"
    assert len(ds) == 4
    for i, item in enumerate(ds.items):
        assert isinstance(item, np.ndarray)
        assert item.shape == shape[1:]
        np.testing.assert_array_equal(item, X[i])
        img = open_image(item)
        assert img.mode == "RGB" and img.size == (5, 6)
    assert len(set(ds.item_hashes())) == 4


def test_from_memory_pil_images_and_paths(tmp_path: Path) -> None:
    imgs = [Image.new("L", (4, 4), v) for v in (10, 200)]
    ds = from_memory(imgs, [0, 1])
    assert ds.modality == "image" and ds.items == imgs
    assert ds.item_hashes()[0] != ds.item_hashes()[1]

    paths = [_png(tmp_path / "a.png", 1), _png(tmp_path / "b.png", 2)]
    ds = from_memory(paths, ["x", "y"])
    assert ds.modality == "image" and ds.items == paths
    assert ds.locators == [str(p) for p in paths]

    # strings that are existing image files are image paths too
    ds = from_memory([str(p) for p in paths], ["x", "y"])
    assert ds.modality == "image"
    assert ds.items == paths and all(isinstance(p, Path) for p in ds.items)


def test_from_memory_rejects_bad_inputs() -> None:
    with pytest.raises(DataError, match="empty"):
        from_memory([])
    with pytest.raises(DataError, match="empty"):
        from_memory(np.zeros((0, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="3 items but y has 2 labels"):
        from_memory(["a", "b", "c"], ["x", "y"])
    with pytest.raises(DataError, match="single string"):
        from_memory("just one text", None)
    with pytest.raises(DataError, match="single string"):
        from_memory(b"bytes", None)
    with pytest.raises(DataError, match="empty or not text"):
        from_memory(["ok", "  "], ["x", "y"])
    with pytest.raises(DataError, match="missing"):
        from_memory(["a", "b"], ["x", None])
    with pytest.raises(DataError, match="missing"):
        from_memory(["a", "b"], np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="cannot use items of type int"):
        from_memory([1, 2, 3])
    assert issubclass(DataError, ValueError) and issubclass(DataError, HeadstartError)


def test_infer_modality(tmp_path: Path) -> None:
    img = _png(tmp_path / "x.png")
    assert infer_modality(["hello", "world"]) == "text"
    assert infer_modality([str(img), str(img)]) == "image"
    assert infer_modality(["missing.png", "other.png"]) == "text"  # not existing files: text
    assert infer_modality([str(img), "a sentence"]) == "text"
    assert infer_modality([img]) == "image"
    assert infer_modality([Image.new("RGB", (2, 2))]) == "image"
    assert infer_modality([np.zeros((3, 3))]) == "image"
    assert infer_modality(np.zeros((2, 3, 3))) == "image"
    with pytest.raises(DataError):
        infer_modality([{"a": 1}])
    # an explicit modality wins over inference
    assert from_memory([str(img)], modality="text").modality == "text"


# --------------------------------------------------------------------------------------------
# items: hashing and decoding
# --------------------------------------------------------------------------------------------


def test_item_sha256_is_content_based_and_stable(tmp_path: Path) -> None:
    a = _png(tmp_path / "one.png", 7)
    b = tmp_path / "deep" / "another_name.jpg"
    b.parent.mkdir()
    shutil.copyfile(a, b)
    c = _png(tmp_path / "three.png", 8)
    assert item_sha256(a) == item_sha256(b)
    assert item_sha256(a) != item_sha256(c)
    assert item_sha256(a) == item_sha256(Path(str(a)))  # same again
    # the documented scheme: a type tag then the content
    assert item_sha256("hello") == hashlib.sha256(b"text\0hello").hexdigest()
    assert item_sha256(a) == hashlib.sha256(b"file\0" + a.read_bytes()).hexdigest()
    assert item_sha256("hello") != item_sha256("hello ")
    # a text equal to a path is a text, not the file
    assert item_sha256(str(a)) != item_sha256(a)


def test_item_sha256_arrays_and_pil() -> None:
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert item_sha256(x) == item_sha256(x.copy())
    assert item_sha256(x) == item_sha256(np.asfortranarray(x))  # memory layout does not matter
    assert item_sha256(x) != item_sha256(x.astype(np.int16))  # dtype does
    assert item_sha256(x) != item_sha256(x.reshape(4, 3))  # shape does
    y = x.copy()
    y[0, 0] = 200
    assert item_sha256(x) != item_sha256(y)
    p1, p2 = Image.new("RGB", (3, 3), (1, 2, 3)), Image.new("RGB", (3, 3), (1, 2, 3))
    assert item_sha256(p1) == item_sha256(p2)
    assert item_sha256(p1) != item_sha256(Image.new("RGB", (3, 3), (1, 2, 4)))
    assert item_sha256(p1) != item_sha256(p1.convert("RGBA"))


def test_item_sha256_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "gone.png"))):
        item_sha256(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"unsupported item type int \(row 5\)"):
        item_sha256(5, "row 5")


def test_open_image_corrupt_file_names_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=re.escape(str(garbage))) as info:
        open_image(garbage)
    assert "corrupt" in str(info.value)

    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    full = tmp_path / "full.png"
    Image.fromarray(noise).save(full)
    truncated = tmp_path / "truncated.png"
    data = full.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(str(truncated))):
        open_image(truncated)
    # a locator, when given, is what the message names
    with pytest.raises(DataError, match=r"table\.csv row 4"):
        open_image(truncated, "table.csv row 4")
    with pytest.raises(DataError, match="not found"):
        open_image(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="expected an image"):
        open_image(42)
    # the intact file decodes to exactly its pixels
    np.testing.assert_array_equal(np.asarray(open_image(full)), noise)


def test_open_image_modes_become_rgb(tmp_path: Path) -> None:
    gray = Image.new("L", (5, 4), 100)
    rgba = Image.new("RGBA", (5, 4), (10, 20, 30, 128))
    two_colour = Image.new("RGB", (5, 4), (255, 0, 0))
    two_colour.paste((0, 0, 255), (0, 0, 2, 4))
    palette = two_colour.quantize(colors=2)
    la = Image.new("LA", (5, 4), (60, 255))
    binary = Image.new("1", (5, 4), 1)
    sixteen = Image.fromarray(np.full((4, 5), 1000, dtype=np.uint16))
    cases = {"gray": gray, "rgba": rgba, "palette": palette, "la": la, "binary": binary, "i16": sixteen}
    assert palette.mode == "P" and sixteen.mode.startswith("I")
    for name, img in cases.items():
        path = tmp_path / f"{name}.png"
        img.save(path)
        for item in (img, path):
            out = open_image(item)
            assert out.mode == "RGB", (name, item)
            assert out.size == (5, 4), name
    assert np.asarray(open_image(gray))[0, 0].tolist() == [100, 100, 100]
    assert np.asarray(open_image(rgba))[0, 0].tolist() == [10, 20, 30]
    pal = np.asarray(open_image(tmp_path / "palette.png"))
    assert pal[0, 0].tolist() == [0, 0, 255] and pal[0, 4].tolist() == [255, 0, 0]
    assert np.asarray(open_image(la))[0, 0].tolist() == [60, 60, 60]
    assert np.asarray(open_image(binary))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("source", ["png_file", "uint16_array"])
def test_sixteen_bit_images_keep_their_intensities(tmp_path: Path, source: str) -> None:
    """A 16-bit image spans 0..65535: mid-grey must stay mid-grey, not saturate to white."""
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(2, axis=0)
    if source == "png_file":
        item: object = tmp_path / "sixteen.png"
        Image.fromarray(values).save(item)
    else:
        item = values
    out = np.asarray(open_image(item)).astype(int)
    assert out.shape == (2, 4, 3)
    expected = np.array([0, 64, 128, 255])
    assert np.all(np.abs(out[0, :, 0] - expected) <= 2), out[0, :, 0]


def test_open_image_arrays() -> None:
    half = np.full((3, 4), 0.5, dtype=np.float32)
    out = np.asarray(open_image(half))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - 127) <= 1
    ones = np.ones((3, 4, 3), dtype=np.float64)
    assert np.asarray(open_image(ones)).min() == 255
    zeros_to_one = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    g = np.asarray(open_image(zeros_to_one))[..., 0]
    assert g[0, 0] == 0 and g[-1, -1] == 255 and np.all(np.diff(g.ravel().astype(int)) >= 0)
    wide = np.full((3, 4), 200.0)  # floats above 1 are read as 0..255
    assert np.asarray(open_image(wide))[0, 0].tolist() == [200, 200, 200]
    chw = np.zeros((3, 5, 6), dtype=np.uint8)
    chw[0] = 255  # red channel first
    out = np.asarray(open_image(chw))
    assert out.shape == (5, 6, 3) and out[0, 0].tolist() == [255, 0, 0]
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    assert np.asarray(open_image(rgba)).shape == (2, 2, 3)
    with pytest.raises(DataError, match="image array has shape"):
        open_image(np.zeros((2, 2, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="image array has shape"):
        open_image(np.zeros((5,), dtype=np.uint8))


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def _labeled(counts: dict[str, int]) -> Dataset:
    items, labels = [], []
    for cls, n in counts.items():
        for i in range(n):
            items.append(f"{cls} example {i}")
            labels.append(cls)
    return from_memory(items, labels)


def test_assign_splits_is_stratified() -> None:
    counts = {"a": 20, "b": 30, "c": 50}
    ds = assign_splits(_labeled(counts), val_fraction=0.1, test_fraction=0.2, seed=0)
    assert ds.splits is not None and len(ds.splits) == 100
    assert set(ds.splits) == {"train", "val", "test"}
    for cls, n in counts.items():
        got = [s for s, lab in zip(ds.splits, ds.labels) if lab == cls]
        assert abs(got.count("test") - 0.2 * n) <= 1, (cls, got.count("test"))
        assert abs(got.count("val") - 0.1 * n) <= 1, (cls, got.count("val"))
        assert got.count("train") >= 0.7 * n - 2
    assert ds.split_counts() == {"train": 70, "val": 10, "test": 20}
    # items, labels and splits stay aligned in the split views
    test = ds.split("test")
    assert all(item.startswith(label) for item, label in zip(test.items, test.labels))


def test_assign_splits_small_classes_get_one_of_each() -> None:
    ds = assign_splits(_labeled({"a": 3, "b": 3}), seed=0)
    for cls in ("a", "b"):
        got = sorted(s for s, lab in zip(ds.splits, ds.labels) if lab == cls)
        assert got == ["test", "train", "val"]


def test_assign_splits_is_seeded() -> None:
    counts = {"a": 25, "b": 25}
    s1 = assign_splits(_labeled(counts), seed=1).splits
    s1_again = assign_splits(_labeled(counts), seed=1).splits
    s2 = assign_splits(_labeled(counts), seed=2).splits
    assert s1 == s1_again
    assert s1 != s2
    # a different seed still gives the same per-split sizes
    assert sorted(s1) == sorted(s2)


def test_assign_splits_leaves_existing_splits_alone() -> None:
    ds = _labeled({"a": 4, "b": 4})
    ds.splits = ["test"] * 8
    before = ds.fingerprint()
    out = assign_splits(ds, seed=5)
    assert out is ds
    assert out.splits == ["test"] * 8
    assert out.fingerprint() == before


def test_assign_splits_too_few_examples_names_the_class() -> None:
    ds = _labeled({"common": 10, "rare": 2})
    with pytest.raises(DataError, match=r"'rare' \(2\)") as info:
        assign_splits(ds)
    assert "common" not in str(info.value)
    # without a test split two examples are enough
    ok = assign_splits(_labeled({"common": 10, "rare": 2}), test_fraction=0.0)
    assert "test" not in ok.splits


def test_assign_splits_needs_two_classes_and_labels() -> None:
    with pytest.raises(DataError, match="at least 2 classes") as info:
        assign_splits(_labeled({"only": 10}))
    assert "'only'" in str(info.value)
    with pytest.raises(DataError, match="--label-col"):
        assign_splits(from_memory(["a", "b", "c"]))
    with pytest.raises(DataError, match="at least 2 classes"):
        check_classes(_labeled({"one": 3}))
    check_classes(_labeled({"one": 1, "two": 1}))  # no error


def test_assign_splits_without_test_fraction() -> None:
    ds = assign_splits(_labeled({"a": 20, "b": 20}), val_fraction=0.25, test_fraction=0.0, seed=0)
    assert "test" not in ds.splits
    assert ds.split_counts() == {"train": 30, "val": 10, "test": 0}
    assert len(ds.split("test")) == 0
    no_val = assign_splits(_labeled({"a": 10, "b": 10}), val_fraction=0.0, test_fraction=0.0)
    assert set(no_val.splits) == {"train"}


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5), (1.0, 0.0)])
def test_assign_splits_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(DataError, match="must each be in"):
        assign_splits(_labeled({"a": 10, "b": 10}), val_fraction=val, test_fraction=test)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def test_fingerprint_equal_for_identical_data_and_sensitive_to_changes() -> None:
    base = _text_dataset()
    same = _text_dataset()
    assert base.fingerprint() == same.fingerprint()
    assert len(base.fingerprint()) == 64

    relabeled = _text_dataset()
    relabeled.labels[3] = "c"
    assert relabeled.fingerprint() != base.fingerprint()

    edited = _text_dataset()
    edited.items[7] = edited.items[7] + "!"
    assert edited.fingerprint() != base.fingerprint()

    resplit = _text_dataset()
    resplit.splits[0] = "test" if resplit.splits[0] != "test" else "train"
    assert resplit.fingerprint() != base.fingerprint()

    reordered = base.subset(list(reversed(range(len(base)))))
    assert reordered.fingerprint() != base.fingerprint()

    # locators, source and slices are metadata, not content
    renamed = _text_dataset()
    renamed.locators = [f"elsewhere {i}" for i in range(len(renamed))]
    renamed.source = "other"
    assert renamed.fingerprint() == base.fingerprint()

    # a label 1 and a label "1" are different data
    assert from_memory(["a", "b"], [1, 2]).fingerprint() != from_memory(["a", "b"], ["1", "2"]).fingerprint()


def test_fingerprint_of_image_folders_follows_file_content(tmp_path: Path) -> None:
    root = _folder(tmp_path / "one", {"cat": ["1.png", "2.png"], "dog": ["1.png", "2.png"]})
    first = load_image_folder(root).fingerprint()
    assert load_image_folder(root).fingerprint() == first
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert load_image_folder(copy).fingerprint() == first  # location does not matter
    _png(copy / "dog" / "2.png", 200)  # one image's pixels change
    assert load_image_folder(copy).fingerprint() != first
    shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / "dog" / "2.png").rename(copy / "cat" / "3.png")  # one image changes class
    assert load_image_folder(copy).fingerprint() != first


def test_subset_keeps_everything_aligned() -> None:
    ds = _text_dataset(10)
    hashes = ds.item_hashes()
    sub = ds.subset(np.array([7, 2, 5]))
    assert sub.items == ["text number 7", "text number 2", "text number 5"]
    assert sub.labels == [ds.labels[i] for i in (7, 2, 5)]
    assert sub.splits == [ds.splits[i] for i in (7, 2, 5)]
    assert sub.locators == ["loc-7", "loc-2", "loc-5"]
    assert sub.slices == {"grp": ["g3", "g2", "g1"], "idx": [7, 2, 5]}
    assert sub.item_hashes() == [hashes[i] for i in (7, 2, 5)]
    assert sub.item_hashes() == [item_sha256(t) for t in sub.items]
    assert sub.source == ds.source and sub.modality == ds.modality
    assert len(ds) == 10  # the original is untouched


def test_split_keeps_everything_aligned() -> None:
    ds = _text_dataset(10)
    seen = 0
    for name in ("train", "val", "test"):
        part = ds.split(name)
        idx = [i for i, s in enumerate(ds.splits) if s == name]
        assert part.items == [ds.items[i] for i in idx]
        assert part.labels == [ds.labels[i] for i in idx]
        assert part.locators == [ds.locators[i] for i in idx]
        assert part.slices["idx"] == idx
        assert set(part.splits) == {name}
        seen += len(part)
    assert seen == len(ds)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        ds.split("dev")
    with pytest.raises(DataError, match="assign_splits"):
        _text_dataset(with_splits=False).split("train")


def test_concat_keeps_everything_aligned() -> None:
    a = _text_dataset(4)
    b = _text_dataset(3).subset([2, 0])
    b.items = ["other 0", "other 1"]
    b._hashes = None
    a.item_hashes()  # hashes known for one part only
    joined = concat(a, b)
    assert joined.items == [*a.items, "other 0", "other 1"]
    assert joined.labels == [*a.labels, *b.labels]
    assert joined.locators == [*a.locators, *b.locators]
    assert joined.slices == {"grp": [*a.slices["grp"], *b.slices["grp"]], "idx": [0, 1, 2, 3, 2, 0]}
    assert joined.splits is None
    assert joined.item_hashes() == [item_sha256(t) for t in joined.items]
    both_hashed = concat(a, _text_dataset(2))
    assert both_hashed.item_hashes() == [item_sha256(t) for t in both_hashed.items]
    # an unlabeled part makes the whole unlabeled; a slice missing in a part is None there
    c = from_memory(["x"])
    mixed = concat(a, c)
    assert mixed.labels is None
    assert mixed.slices["grp"] == [*a.slices["grp"], None]
    with pytest.raises(DataError, match="different modalities"):
        concat(a, from_memory([Image.new("RGB", (2, 2))]))


def test_dataset_checks_lengths() -> None:
    with pytest.raises(DataError, match="2 items but 1 labels"):
        Dataset(items=["a", "b"], labels=["x"], modality="text")
    with pytest.raises(DataError, match="split values"):
        Dataset(items=["a", "b"], labels=None, modality="text", splits=["train"])
    with pytest.raises(DataError, match="slice column 'g'"):
        Dataset(items=["a", "b"], labels=None, modality="text", slices={"g": [1]})
    ds = Dataset(items=["a"], labels=None, modality="text", source="src")
    assert ds.locators == ["src item 0"]
    with pytest.raises(DataError, match="needs them"):
        ds.require_labels("evaluation")


def test_describe_is_json_serialisable(tmp_path: Path) -> None:
    ds = assign_splits(_labeled({"a": 5, "b": 6}), seed=0)
    desc = json.loads(json.dumps(ds.describe()))
    assert desc["n_items"] == 11
    assert desc["modality"] == "text"
    assert desc["classes"] == ["a", "b"]
    assert desc["class_counts"] == {"a": 5, "b": 6}
    assert sum(desc["split_counts"].values()) == 11
    assert desc["fingerprint"] == ds.fingerprint()

    ints = from_memory(["p", "q", "r"], np.array([10, 2, 2]))
    desc = json.loads(json.dumps(ints.describe()))
    assert desc["classes"] == ["2", "10"]  # numeric order, not text order
    assert desc["class_counts"] == {"2": 2, "10": 1}

    images = load_image_folder(_folder(tmp_path / "imgs", {"cat": ["1.png"], "dog": ["1.png"]}))
    json.dumps(images.describe())
    json.dumps(from_memory(["a"]).describe())  # unlabeled


def test_describe_with_mixed_label_types() -> None:
    """Labels may be any hashable values; ``classes`` copes with mixed types, so must describe()."""
    ds = from_memory(["a", "b", "c"], [1, "x", 1])
    assert ds.classes == [1, "x"]
    desc = json.loads(json.dumps(ds.describe()))
    assert desc["class_counts"] == {"1": 2, "x": 1}


# --------------------------------------------------------------------------------------------
# cli/inputs.read_inputs
# --------------------------------------------------------------------------------------------


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool = False) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_read_inputs_text_file_one_text_per_line(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("first text\nsecond text\n  \nthird text\n", encoding="utf-8")
    ds = read_inputs([str(path)], "text")
    assert ds.modality == "text"
    assert ds.items == ["first text", "second text", "third text"]
    assert ds.labels is None
    assert ds.locators[:2] == [f"{path} line 1", f"{path} line 2"]


def test_read_inputs_text_file_locators_are_real_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("first\n\n\nsecond\n", encoding="utf-8")
    ds = read_inputs([str(path)], "text")
    assert ds.items == ["first", "second"]
    assert ds.locators == [f"{path} line 1", f"{path} line 4"]


def test_read_inputs_table_without_label_column(tmp_path: Path) -> None:
    path = _write(pd.DataFrame({"text": ["alpha", "beta"]}), tmp_path / "in.csv")
    ds = read_inputs([str(path)], "text")
    assert ds.items == ["alpha", "beta"] and ds.labels is None
    assert ds.locators == [f"{path} row 1", f"{path} row 2"]
    labeled = _write(pd.DataFrame({"body": ["gamma"], "label": ["x"]}), tmp_path / "labeled.jsonl")
    ds = read_inputs([str(labeled)], "text", text_col="body")
    assert ds.items == ["gamma"] and ds.labels is None
    _png(tmp_path / "a.png")
    images = _write(pd.DataFrame({"image": ["a.png"]}), tmp_path / "imgs.csv")
    with pytest.raises(DataError, match="holds image but the model takes text"):
        read_inputs([str(images)], "text")
    assert read_inputs([str(images)], "image").items == [tmp_path / "a.png"]


def test_read_inputs_image_folders_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    b = _png(folder / "b.png", 1)
    a = _png(folder / "nested" / "a.png", 2)
    (folder / "notes.txt").write_text("skip me")
    single = _png(tmp_path / "single.jpg", 3)
    ds = read_inputs([str(single), str(folder)], "image")
    assert ds.modality == "image"
    assert ds.items == [single, b, a]
    assert ds.locators == [str(single), str(b), str(a)]
    assert ds.labels is None
    with pytest.raises(DataError, match="does not exist"):
        read_inputs([str(tmp_path / "absent")], "image")
    with pytest.raises(DataError, match="not a file"):
        read_inputs([str(folder)], "text")


def test_read_inputs_stdin_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("win a prize\n\n   \nsee you at 5\n"))
    ds = read_inputs(["-"], "text")
    assert ds.items == ["win a prize", "see you at 5"]
    assert ds.source == "<stdin>"
    # several inputs are joined in the order given
    path = tmp_path / "t.txt"
    path.write_text("from file\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    joined = read_inputs([str(path), "-"], "text")
    assert joined.items == ["from file", "from stdin"]


def test_read_inputs_stdin_image_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", 1)
    b = _png(tmp_path / "dir" / "b.png", 2)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{a}\n{tmp_path / 'dir'}\n"))
    ds = read_inputs(["-"], "image")
    assert ds.items == [a, b]
    assert ds.modality == "image"


def test_read_inputs_stdin_tty_and_empty_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin("ignored\n", tty=True))
    with pytest.raises(DataError, match="nothing piped on stdin"):
        read_inputs(["-"], "text")
    monkeypatch.setattr("sys.stdin", _Stdin("\n\n"))
    with pytest.raises(DataError, match="no items"):
        read_inputs(["-"], "text")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n")
    with pytest.raises(DataError, match="no items"):
        read_inputs([str(blank)], "text")
