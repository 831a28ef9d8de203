"""The HTML report: well-formed, self-contained, escaped, complete even when parts are missing."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.errors import ConfigError
from headstart.report import REPORT_SECTIONS, render_html, write_report

EVIL = "<script>alert(1)</script>"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
SVG_LEAVES = {"rect", "line", "circle", "path", "polyline"}


def png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture
def full_report() -> dict:
    classes = ["cat", "dog", EVIL]
    bins = [{"lo": i / 10, "hi": (i + 1) / 10, "confidence": None, "accuracy": None, "count": 0}
            for i in range(10)]
    bins[6].update(confidence=0.65, accuracy=0.5, count=4)
    bins[9].update(confidence=0.97, accuracy=0.96, count=110)
    return {
        "title": "headstart: runs/animals",
        "created": "2026-11-22T04:30:00+00:00",
        "task": {"modality": "image", "classes": classes, "n_train": 480, "n_val": 60,
                 "n_test": 120, "backbone": "efficientnet_lite0", "strategy": "linear-probe"},
        "verdict": {"label": "transfer helps", "metric": "accuracy", "transfer": 0.947,
                    "baseline": {"name": "scratch (tf_efficientnet_lite0, random init)", "value": 0.71},
                    "difference": 0.237, "ci": [0.20, 0.27], "ci_level": 0.95,
                    "seeds": {"n": 3, "transfer_sd": 0.004, "baseline_sd": 0.02},
                    "explanation": "Transfer beats every baseline by a wide margin."},
        "comparison": [
            {"name": "transfer: linear-probe on efficientnet_lite0", "kind": "transfer",
             "accuracy": 0.947, "balanced_accuracy": 0.946, "macro_f1": 0.945, "roc_auc": 0.99,
             "log_loss": 0.2, "ece": 0.03, "fit_seconds": 12.3, "note": ""},
            {"name": "majority class", "kind": "trivial", "accuracy": 0.334,
             "balanced_accuracy": 0.333, "macro_f1": 0.167, "roc_auc": None, "log_loss": 1.1,
             "ece": 0.0, "fit_seconds": 0.01, "note": "always predicts cat"},
        ],
        "metrics": {"n": 120, "accuracy": 0.947, "balanced_accuracy": 0.946, "macro_f1": 0.945,
                    "roc_auc": 0.99, "log_loss": 0.2, "ece": 0.031,
                    "per_class": [{"label": c, "precision": 0.95, "recall": 0.94, "f1": 0.945,
                                   "support": 40} for c in classes],
                    "confusion_matrix": {"labels": classes, "matrix": [[37, 2, 1], [3, 36, 1], [0, 0, 40]],
                                         "rows": "true label", "columns": "predicted label"},
                    "calibration": {"bins": bins}},
        "learning_curve": {"metric": "accuracy", "fractions": [0.1, 0.25, 0.5, 1.0],
                           "n_labels": [48, 120, 240, 480],
                           "series": [{"name": "transfer", "values": [0.81, 0.9, 0.93, 0.947],
                                       "sd": [0.03, 0.02, 0.01, 0.004]},
                                      {"name": "scratch", "values": [0.4, 0.5, 0.62, 0.71], "sd": None}],
                           "labels_saved": "scratch needs ~480 labels to match transfer at 48"},
        "slices": {"source": [{"value": "studio", "n": 80, "accuracy": 0.98, "macro_f1": 0.97, "flagged": False},
                              {"value": "ham-hard", "n": 40, "accuracy": 0.8, "macro_f1": 0.7, "flagged": True}]},
        "mistakes": [
            {"preview": {"kind": "image", "data_uri": png_data_uri()}, "true": "cat",
             "predicted": EVIL, "confidence": 0.97, "locator": "test/cat/img_12.jpg"},
            {"preview": {"kind": "text", "text": "a <b>bold</b> claim & more"}, "true": "dog",
             "predicted": "cat", "confidence": 0.91, "locator": "row 17"},
        ],
        "latency": {"device": "cpu", "batch_size": 32, "p50_ms": 4.1, "p95_ms": 6.0,
                    "throughput_per_s": 240.0, "model_size_mb": 18.5, "n_params": 4700000},
        "reproduce": {"command": "headstart fit examples/animal-silhouettes --out runs/animals",
                      "seed": 0, "data_fingerprint": "sha256:abc123",
                      "versions": {"headstart": "0.1.0", "torch": "2.14.1"}},
    }


@pytest.fixture
def minimal_report() -> dict:
    return {"title": "minimal", "task": {"modality": "text", "classes": ["pos", "neg"]},
            "metrics": {"n": 40, "accuracy": 0.9, "macro_f1": 0.89, "roc_auc": None},
            "reproduce": {"command": "headstart fit texts.csv", "seed": 0,
                          "data_fingerprint": "sha256:00", "versions": {"headstart": "0.1.0"}},
            "verdict": None, "learning_curve": None, "latency": None}


class StrictChecker(HTMLParser):
    """Every non-void element closed, in nesting order; collects section ids and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.sections.append(dict(attrs).get("id", ""))
            self.text[self.sections[-1]] = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag not in VOID and tag not in SVG_LEAVES:
            self.errors.append(f"<{tag}/> self-closed outside SVG at {self.getpos()}")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void <{tag}> at {self.getpos()}")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'} at {self.getpos()}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "section" in self.stack and self.sections:
            self.text[self.sections[-1]].append(data)


def check(page: str) -> StrictChecker:
    checker = StrictChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == [], f"unclosed elements: {checker.stack}"
    return checker


def section_html(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start: page.index("</section>", start)]


@pytest.mark.parametrize("which", ["full_report", "minimal_report"])
def test_page_is_well_formed_self_contained_and_has_every_section_once(which, request):
    page = render_html(request.getfixturevalue(which))
    assert page.startswith("<!DOCTYPE html>")
    checker = check(page)
    assert tuple(checker.sections) == REPORT_SECTIONS
    for sid in REPORT_SECTIONS:
        assert page.count(f'id="{sid}"') == 1
        assert "".join(checker.text[sid]).strip(), f"section {sid} is empty"
    lowered = page.lower()
    for reference in ("http://", "https://", 'src="//', "<script", "<link", "@import", "url("):
        assert reference not in lowered
    assert '<meta name="generator" content="headstart">' in page
    assert "<title>" in page and "<style>" in page


def test_user_strings_are_escaped(full_report):
    page = render_html(full_report)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt;b&gt;bold&lt;/b&gt; claim &amp; more" in page


def test_numbers_are_formatted(full_report):
    page = render_html(full_report)
    assert "0.947" in page and "+0.237" in page and "+0.200" in page and "+0.270" in page
    assert "95%" in page
    comparison = section_html(page, "comparison")
    assert "—" in comparison  # the trivial baseline's missing ROC-AUC
    assert "12.3" in comparison
    latency = section_html(page, "latency")
    assert "4.10" in latency and "6.00" in latency and "4.70 M" in latency


def test_verdict_badge_colour_follows_the_label(full_report):
    for label, colour in [("transfer helps", "good"), ("no significant difference", "neutral"),
                          ("negative transfer", "bad")]:
        full_report["verdict"]["label"] = label
        assert f'class="verdict verdict-{colour}"' in section_html(render_html(full_report), "verdict")


def test_confusion_matrix_shows_every_count(full_report):
    checker = check(render_html(full_report))
    cells = "".join(checker.text["confusion"]).split()
    for row in full_report["metrics"]["confusion_matrix"]["matrix"]:
        for count in row:
            assert str(count) in cells
    assert "true label" in "".join(checker.text["confusion"])


def test_confusion_matrix_with_30_long_labels_abbreviates_and_keeps_full_label():
    labels = [f"a rather long class name, number {i}" for i in range(30)]
    matrix = [[5 if i == j else 1 for j in range(30)] for i in range(30)]
    report = {"title": "many", "metrics": {"confusion_matrix": {"labels": labels, "matrix": matrix}}}
    confusion = section_html(render_html(report), "confusion")
    assert "<title>a rather long class name, number 29</title>" in confusion
    assert "a rather lon…, number 29" in confusion  # cut in the middle: labels stay distinct
    assert 'rotate(-45' in confusion


def test_learning_curve_slices_and_mistakes(full_report):
    page = render_html(full_report)
    curve = section_html(page, "learning-curve")
    assert "scratch needs ~480 labels to match transfer at 48" in curve
    assert "transfer" in curve and "scratch" in curve and "log scale" in curve
    assert "0.947 ± 0.004" in curve  # the data table under the chart
    slices = section_html(page, "slices")
    assert slices.index("ham-hard") < slices.index("studio")  # worst first
    assert '<tr class="flagged">' in slices and "pretraining data" in slices
    mistakes = section_html(page, "mistakes")
    assert f'<img src="{png_data_uri()}"' in mistakes
    assert "test/cat/img_12.jpg" in mistakes and "0.970" in mistakes
    calibration = section_html(page, "calibration")
    assert "0.031" in calibration and "110" in calibration


def test_minimal_report_explains_every_missing_part(minimal_report):
    page = render_html(minimal_report)
    for sid in REPORT_SECTIONS:
        body = section_html(page, sid)
        if sid in ("metrics", "reproduce"):
            assert 'class="missing"' not in body
        else:
            assert 'class="missing"' in body, f"section {sid} does not explain what is missing"
    assert "--learning-curve" in section_html(page, "learning-curve")
    assert "0.900" in section_html(page, "metrics")


@pytest.mark.parametrize("uri", [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
    'data:image/png;base64,AAAA" onerror="alert(1)',
    "https://example.com/cat.png",
])
def test_bad_data_uri_is_dropped_and_the_locator_shown(full_report, uri):
    full_report["mistakes"][0]["preview"]["data_uri"] = uri
    page = render_html(full_report)
    mistakes = section_html(page, "mistakes")
    assert "<img" not in mistakes
    assert "javascript:" not in page and "onerror" not in page and "example.com" not in page
    assert "test/cat/img_12.jpg" in mistakes
    check(page)


@pytest.mark.parametrize("report", [
    {},
    {"metrics": None, "task": None, "reproduce": None, "mistakes": [], "slices": {}},
    {"learning_curve": {"fractions": [0.5, 1.0], "n_labels": None,
                        "series": [{"name": "t", "values": [None, 0.8], "sd": [None, 0.1]}, {"values": [0.5]}]}},
    {"learning_curve": {"n_labels": [100], "series": [{"name": "t", "values": [0.9], "sd": [0.0]}]}},
    {"metrics": {"accuracy": float("nan"),
                 "confusion_matrix": {"labels": ["a", "b"], "matrix": [[1], [2, 3, 4]]},
                 "calibration": {"bins": [{"lo": 0, "hi": 1, "count": "x", "accuracy": 0.5}]}}},
    {"slices": {"g": [{"value": None, "n": None}], "h": None}, "mistakes": ["x", {"preview": None}]},
    {"verdict": {"label": "unheard of", "ci": "ab", "seeds": {}}},
], ids=["empty", "nones", "gaps", "one-point", "ragged", "junk-rows", "odd-verdict"])
def test_odd_reports_still_render_every_section(report):
    checker = check(render_html(report))
    assert tuple(checker.sections) == REPORT_SECTIONS


def test_non_dict_report_is_a_clear_error():
    with pytest.raises(ConfigError, match="report must be a dict"):
        render_html(["not", "a", "report"])


def test_write_report_is_atomic_and_overwrites(tmp_path, full_report, minimal_report):
    target = tmp_path / "out" / "report.html"
    assert write_report(full_report, target) == target
    assert target.read_text(encoding="utf-8") == render_html(full_report)
    write_report(minimal_report, str(target))
    assert target.read_text(encoding="utf-8") == render_html(minimal_report)
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_failed_render_leaves_existing_file_untouched(tmp_path, full_report):
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(ConfigError):
        write_report("not a report", target)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("No Chromium found (looked for chromium, chromium-browser, google-chrome on PATH). "
                "Install it, e.g. `apt-get install chromium`; .ci/run does this in CI.")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path, full_report):
    binary = find_chromium()
    page = write_report(full_report, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    result = run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}",
                          "--window-size=1280,2400", page.resolve().as_uri())
    assert shot.exists(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        rgb = image.convert("RGB")
        assert np.asarray(rgb).std() > 20, "the screenshot is (nearly) blank"
        colours = rgb.getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50, "too few colours: nothing rendered?"

    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", page.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for marker in ("ERR_FILE_NOT_FOUND", "ERR_ACCESS_DENIED", "This page isn't working",
                   "This site can't be reached", "neterror"):
        assert marker not in dom.stdout
    for sid in REPORT_SECTIONS:
        assert f'id="{sid}"' in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
