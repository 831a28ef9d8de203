"""headstart audit: each check on constructed problems, the neighbour search, the lenient
loader, the CLI (table, JSON, HTML, exit codes) and the checks `fit` runs first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_image, make_texts
from headstart.audit import FAST_CHECKS, audit, audit_dataset, preflight
from headstart.audit.base import CHECKS, AuditContext, run_check
from headstart.audit.neighbors import components, nearest, normalise, similar_pairs
from headstart.cli.app import run
from headstart.data import assign_splits, from_memory, load_data
from headstart.errors import ConfigError, DataError


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _blobs(n_per_class: int = 60, n_classes: int = 3, dim: int = 16, seed: int = 0,
           spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x.astype(np.float32), y


def _context(features: np.ndarray, labels: list, splits: list | None = None, items: list | None = None,
             threshold: float = 0.97) -> AuditContext:
    data = from_memory(items or [f"item {i}" for i in range(len(labels))], labels, modality="text")
    data.splits = splits
    return AuditContext(data=data, features=normalise(features), readable=np.arange(len(labels)),
                        near_threshold=threshold)


# ------------------------------------------------------------------ neighbours
def test_exact_and_ivf_search_agree_and_exclude_self() -> None:
    x, _ = _blobs(n_per_class=700, n_classes=8, dim=24, seed=1)
    rng = np.random.default_rng(1)
    originals = rng.choice(len(x), 60, replace=False)
    copies = x[originals] + 0.01 * rng.normal(size=(60, x.shape[1])).astype(np.float32)
    x = np.concatenate([x, copies])
    planted = {(int(o), len(x) - 60 + k) for k, o in enumerate(originals)}
    exact = nearest(x, k=5, method="exact")
    ivf = nearest(x, k=5, method="ivf", nprobe=8)
    assert exact.method == "exact" and ivf.method.startswith("ivf")
    assert not (exact.index == np.arange(len(x))[:, None]).any()  # an item is not its own neighbour
    assert not (ivf.index == np.arange(len(x))[:, None]).any()
    assert np.all(np.diff(exact.similarity, axis=1) <= 1e-6)  # cosine similarities, best first
    # Near duplicates share an IVF cell: the approximate search finds every planted copy.
    for nb in (exact, ivf):
        found = {(i, j) for i, j, _ in similar_pairs(nb, 0.99)}
        assert planted <= found
    # Ordinary neighbours are approximate: most of the true 5 nearest.
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact.index, ivf.index)])
    assert recall >= 0.8, recall


def test_similar_pairs_and_components() -> None:
    x = np.eye(6, dtype=np.float32)
    x[1] = x[0] + 0.01   # 0 ≈ 1
    x[3] = x[2] + 0.01   # 2 ≈ 3 ≈ 4
    x[4] = x[2] + 0.02
    pairs = similar_pairs(nearest(normalise(x), k=3, method="exact"), 0.99)
    assert {(a, b) for a, b, _ in pairs} == {(0, 1), (2, 3), (2, 4), (3, 4)}
    groups = components(6, pairs)
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 3, 4]]


# ------------------------------------------------------------- checks, model-free
def test_missing_labels_and_empty_texts_are_reported_not_raised(tmp_path: Path) -> None:
    texts, labels = make_texts(10)
    texts[3], texts[5] = "   ", "ok"
    labels[7] = None
    path = tmp_path / "t.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    with pytest.raises(DataError):  # training still refuses the same file
        load_data(path, text_col="text")
    report = audit(path, text_col="text", backbone=None)
    assert report.severe
    missing = report.check("missing-labels")
    assert missing.severity == "severe" and missing.count == 1
    assert "row 8" in missing.findings[0].locators[0]
    empty = report.check("empty-texts")
    assert empty.severity == "severe" and empty.count == 2  # one blank (dropped), one near-empty
    assert report.data["n_rows_dropped"] == 2 and report.data["n_items"] == 18


def test_exact_and_case_whitespace_copies_across_splits_are_leakage(tmp_path: Path) -> None:
    texts, labels = make_texts(15)
    splits = ["train"] * 20 + ["test"] * 10
    splits = (splits * 2)[: len(texts)]
    # test row 0 copies train row 1 exactly; test row 2 is train row 3 in other case and spacing.
    rows = pd.DataFrame({"text": texts, "label": labels, "split": ["train"] * len(texts)})
    extra = pd.DataFrame({"text": [texts[1], "  " + texts[3].upper().replace(" ", "   ")],
                          "label": [labels[1], labels[3]], "split": ["test", "test"]})
    pd.concat([rows, extra]).to_csv(tmp_path / "d.csv", index=False)
    report = audit(tmp_path / "d.csv", text_col="text", split_col="split", backbone=None)
    leak = report.check("leakage")
    assert leak.severity == "severe"
    found = {frozenset(f.items) for f in leak.findings}
    n = len(texts)
    assert found == {frozenset({1, n}), frozenset({3, n + 1})}
    assert report.check("exact-duplicates").count == 2
    assert report.check("near-duplicates").count == 2  # the case/whitespace copy, found without a model
    assert leak.stats["n_eval_items_leaked"] == 2


def test_duplicates_with_different_labels_conflict() -> None:
    data = from_memory(["buy now", "buy now", "hello there", "see you", "bye"], ["spam", "ham", "ham", "ham", "spam"])
    report = audit_dataset(data, backbone=None)
    conflict = report.check("conflicting-labels")
    assert conflict.severity == "warning" and conflict.findings[0].items == [0, 1]


def test_group_and_time_leakage(tmp_path: Path) -> None:
    texts, labels = make_texts(6)
    df = pd.DataFrame({"text": texts, "label": labels,
                       "split": ["train", "train", "test"] * 4,
                       "patient": ["p1", "p1", "p1", "p2", "p2", "p3", "p4", "p4", "p5", "p6", "p6", "p6"],
                       "when": pd.date_range("2024-01-01", periods=12, freq="D").astype(str)})
    df.to_csv(tmp_path / "g.csv", index=False)
    report = audit(tmp_path / "g.csv", text_col="text", split_col="split", group_col="patient", time_col="when",
                   backbone=None)
    groups = report.check("group-leakage")
    assert groups.severity == "severe"
    assert {tuple(sorted(f.items)) for f in groups.findings} == {(0, 1, 2), (9, 10, 11)}
    # Test rows 2, 5, 8 predate the newest training row (day 11).
    assert report.check("time-leakage").severity == "severe" and report.check("time-leakage").count >= 3
    # Sorted by time, train first: no overlap.
    df["split"] = ["train"] * 8 + ["test"] * 4
    df["patient"] = [f"p{i}" for i in range(12)]
    df.to_csv(tmp_path / "g.csv", index=False)
    clean = audit(tmp_path / "g.csv", text_col="text", split_col="split", group_col="patient", time_col="when",
                  backbone=None)
    assert clean.check("group-leakage").severity == "ok" and clean.check("time-leakage").severity == "ok"
    with pytest.raises(DataError, match="--group-col"):
        audit(tmp_path / "g.csv", text_col="text", group_col="nope", backbone=None)


def test_class_balance_flags_ratio_small_and_untrainable_classes() -> None:
    labels = ["a"] * 60 + ["b"] * 12 + ["c"] * 4
    data = from_memory([f"t{i}" for i in range(len(labels))], labels)
    result = audit_dataset(data, backbone=None, checks=["class-balance"]).check("class-balance")
    assert result.severity == "warning" and result.stats["ratio"] == 15.0
    assert "class weights" in result.remedy or "focal" in result.remedy
    data.splits = ["train"] * 60 + ["test"] * 12 + ["train"] * 4  # 'b' never trained on
    result = audit_dataset(data, backbone=None, checks=["class-balance"]).check("class-balance")
    assert result.severity == "severe" and "b" in result.summary
    balanced = from_memory([f"t{i}" for i in range(40)], ["a", "b"] * 20)
    assert audit_dataset(balanced, backbone=None, checks=["class-balance"]).check("class-balance").severity == "ok"


def test_unreadable_and_odd_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for kind in ("disc", "square"):
        (tmp_path / kind).mkdir()
        for i in range(12):
            make_image(kind, rng).save(tmp_path / kind / f"{i}.png")
    (tmp_path / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    make_image("disc", rng).convert("RGBA").save(tmp_path / "disc" / "alpha.png")
    make_image("square", rng).resize((400, 40)).save(tmp_path / "square" / "strip.png")
    report = audit(tmp_path, backbone="tiny-cnn", checks=["unreadable-files", "image-properties", "outliers"])
    bad = report.check("unreadable-files")
    assert bad.severity == "severe" and bad.count == 1
    assert report.items[bad.findings[0].items[0]]["locator"].endswith("broken.png")
    props = report.check("image-properties")
    flagged = {Path(report.items[f.items[0]]["locator"]).name for f in props.findings}
    assert flagged == {"alpha.png", "strip.png"}
    assert report.check("outliers").severity in ("ok", "info")  # the embedding checks ran on 26 readable images


# ---------------------------------------------------------- checks, embeddings
def test_label_errors_rank_flipped_labels_first() -> None:
    x, y = _blobs(n_per_class=60, n_classes=3, seed=0)
    flipped = [3, 70, 130, 150, 20, 95]
    noisy = y.copy()
    for i in flipped:
        noisy[i] = (y[i] + 1) % 3
    ctx = _context(x, [f"c{v}" for v in noisy])
    result = run_check(CHECKS["label-errors"], ctx)
    assert result.severity == "warning"
    top = [f.items[0] for f in result.findings[: len(flipped)]]
    assert len(set(top) & set(flipped)) >= 5, (top, flipped)
    assert result.stats["out_of_fold_accuracy"] > 0.9


def test_label_errors_quiet_on_clean_separable_data() -> None:
    x, y = _blobs(n_per_class=60, n_classes=3, seed=2, spread=0.2)
    result = run_check(CHECKS["label-errors"], _context(x, [f"c{v}" for v in y]))
    assert result.count <= 1


def test_outliers_found_by_neighbour_distance() -> None:
    x, y = _blobs(n_per_class=50, n_classes=2, seed=3, dim=8)
    rng = np.random.default_rng(9)
    far = rng.normal(size=(2, 8)).astype(np.float32) * 10
    x = np.concatenate([x, far])
    labels = [f"c{v}" for v in y] + ["c0", "c1"]
    result = run_check(CHECKS["outliers"], _context(x, labels))
    assert {f.items[0] for f in result.findings} >= {100, 101}
    assert result.count <= 5


def test_split_shift_measured_by_a_domain_classifier() -> None:
    x, y = _blobs(n_per_class=80, n_classes=2, seed=4, dim=12)
    splits = ["train", "test"] * 80
    same = run_check(CHECKS["split-shift"], _context(x, [f"c{v}" for v in y], splits))
    assert same.severity == "ok" and same.stats["auc"]["test"] < 0.65
    shifted = x.copy()
    shifted[1::2] += 1.5  # every test item moved along all axes
    moved = run_check(CHECKS["split-shift"], _context(shifted, [f"c{v}" for v in y], splits))
    assert moved.severity == "warning" and moved.stats["auc"]["test"] > 0.9


def test_near_duplicate_texts_must_also_share_their_words() -> None:
    x, y = _blobs(n_per_class=10, n_classes=2, dim=8, seed=5)
    x[1] = x[0] + 1e-4   # two pairs that embed alike
    x[3] = x[2] + 1e-4
    items = [f"unrelated text number {i} about topic {i * 7}" for i in range(20)]
    items[0] = "Received: from mail.example.org by relay; the quarterly report is attached, please review it"
    items[1] = "Received: from mail.example.org by relay; the quarterly report is attached, please review it!"
    items[2] = "Received: from mail.example.org by relay; lunch on friday at noon?"
    items[3] = "Received: from mail.example.org by relay; your invoice number 4411 is overdue"
    result = run_check(CHECKS["near-duplicates"], _context(x, [f"c{v}" for v in y], items=items))
    assert [f.items for f in result.findings] == [[0, 1]]  # 2 ≈ 3 in embedding space, not in content


# ------------------------------------------------------------------- reporting
def test_report_dict_sorts_by_severity_and_lists_rows(tmp_path: Path) -> None:
    data = from_memory(["a b c", "a b c", "d e f", "g h i", "x y z", "q r s"], ["p", "p", "n", "n", "p", "n"])
    data.splits = ["train", "test", "train", "test", "train", "test"]
    d = audit_dataset(data, backbone=None).to_dict()
    assert d["format"] == "headstart-audit-v1" and d["severe"] is True
    ranks = [s["severity"] for s in d["summary"]]
    assert ranks[0] == "severe" and ranks.index("ok") > ranks.index("warning")
    assert {r["index"] for r in d["rows"] if r["check"] == "leakage"} == {0, 1}
    json.dumps(d)  # plain JSON all the way down


def test_bad_arguments_are_clear() -> None:
    data = from_memory(["a", "b"], ["x", "y"])
    with pytest.raises(ConfigError, match="unknown check"):
        audit_dataset(data, backbone=None, checks=["spelling"])
    with pytest.raises(ConfigError, match="near_threshold"):
        audit_dataset(data, backbone=None, near_threshold=1.5)


# ------------------------------------------------------------------------- CLI
def _leaky_table(tmp_path: Path) -> Path:
    texts, labels = make_texts(12)
    texts[0] = "<script>alert('x')</script> " + texts[0]
    df = pd.DataFrame({"text": [*texts, texts[0]], "label": [*labels, labels[0]],
                       "split": ["train"] * len(texts) + ["test"]})
    df.loc[[5, 17], "split"] = "test"
    path = tmp_path / "leaky.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_audit_exit_codes_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _leaky_table(tmp_path)
    page = tmp_path / "out" / "audit.html"
    code, out, _ = _cli(capsys, "audit", path, "--text-col", "text", "--split-col", "split", "--backbone",
                        "tiny-bert", "--json", "--html", page, "--quiet")
    assert code == 1
    result = json.loads(out)
    assert result["severe"] and result["summary"][0]["check"] == "leakage"
    assert result["backbone"]["name"] == "tiny-bert" and result["html"] == str(page)
    assert {r["check"] for r in result["rows"]} >= {"leakage", "exact-duplicates"}
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="check-leakage"' in html and "severe problems" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # data is escaped
    assert not list(page.parent.glob(".*.tmp"))

    code, out, _ = _cli(capsys, "audit", path, "--text-col", "text", "--split-col", "split", "--backbone", "none")
    assert code == 1 and "leakage" in out and "exit code 1" in out

    clean = tmp_path / "clean.csv"
    texts, labels = make_texts(12)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(clean, index=False)
    code, out, _ = _cli(capsys, "audit", clean, "--text-col", "text", "--backbone", "none", "--check",
                        "class-balance", "--check", "exact-duplicates")
    assert code == 0 and "nothing severe" in out
    code, _, err = _cli(capsys, "audit", clean, "--text-col", "text", "--check", "nope", "--backbone", "none")
    assert code == 1 and "unknown check" in err


def test_fit_stops_on_leakage_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _leaky_table(tmp_path)
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "fit", path, "--text-col", "text", "--split-col", "split", "--backbone",
                        "tiny-bert", "--out", out, "--no-compare", "--no-learning-curve")
    assert code == 1 and "leakage" in err and "--allow-leakage" in err
    assert not out.exists()
    code, _, err = _cli(capsys, "fit", path, "--text-col", "text", "--split-col", "split", "--backbone",
                        "tiny-bert", "--out", out, "--no-compare", "--no-learning-curve", "--allow-leakage")
    assert code == 0, err
    assert "audit: leakage" in err
    manifest = json.loads((out / "headstart.json").read_text())
    assert {row["check"]: row["severity"] for row in manifest["audit"]}["leakage"] == "severe"


def test_assign_splits_keeps_identical_items_together() -> None:
    texts, labels = make_texts(20)
    texts += texts[:10]
    labels += labels[:10]
    data = assign_splits(from_memory(texts, labels), val_fraction=0.2, test_fraction=0.3, seed=0)
    assert all(data.splits[i] == data.splits[40 + i] for i in range(10))  # never split apart
    report = preflight(data)
    assert report.check("leakage").severity == "ok" and set(FAST_CHECKS) == {c.name for c in report.checks}
