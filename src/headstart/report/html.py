"""The run report as one self-contained HTML page: inline CSS and SVG, no script, no URL.

Every string taken from the report dict (labels, texts, locators, commands) is HTML-escaped, since
labels and texts come from users' data. Images are embedded only from PNG or JPEG base64 data URIs.
The schema of the dict is described in ``report_schema.md``; any optional part may be missing or
None, and its section then says so in one line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from headstart.atomic import write_file
from headstart.errors import ConfigError
from headstart.report.style import CSS
from headstart.report.svg import confusion_svg, line_chart_svg, reliability_svg

__all__ = ["REPORT_SECTIONS", "render_html", "write_report"]

REPORT_SECTIONS = ("verdict", "comparison", "metrics", "confusion", "per-class", "learning-curve",
                   "calibration", "slices", "mistakes", "latency", "reproduce")

TITLES = {"verdict": "Verdict", "comparison": "Transfer against baselines", "metrics": "Test metrics",
          "confusion": "Confusion matrix", "per-class": "Per-class metrics",
          "learning-curve": "Learning curve", "calibration": "Calibration",
          "slices": "Slices (bias check)", "mistakes": "Most confident mistakes",
          "latency": "Latency and size", "reproduce": "Reproduce"}

BADGES = {"transfer helps": "good", "no significant difference": "neutral",
          "negative transfer": "bad"}

METRIC_NAMES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
                "macro_f1": "Macro-F1", "roc_auc": "ROC-AUC", "log_loss": "Log loss",
                "ece": "ECE", "precision": "Precision", "recall": "Recall", "f1": "F1"}

# Only these prefixes, followed by base64 alone, may reach an <img src>: no other scheme, no SVG.
_DATA_URI = re.compile(r"data:image/(?:png|jpeg);base64,[A-Za-z0-9+/]+={0,2}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value: object) -> Mapping:
    """``value`` if it is a mapping, else an empty one: missing parts read as empty."""
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    """Any value as escaped text; None as a dash."""
    return "—" if value is None else escape(str(value))


def _num(value: object, digits: int = 3, signed: bool = False) -> str:
    """A metric-like number to ``digits`` decimals; None or NaN as a dash, anything else escaped."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if not _is_number(value):
        return _text(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _count(value: object) -> str:
    """A count with thousands separators."""
    return f"{value:,.0f}" if _is_number(value) else _text(value)


def _params(value: object) -> str:
    if not _is_number(value):
        return _text(value)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.2f} {unit} ({value:,.0f})"
    return f"{value:,.0f}"


def _note(text: str) -> str:
    """The one-line explanation a section shows when its part of the report is missing."""
    return f'<p class="missing">{text}</p>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool],
           row_classes: Sequence[str] | None = None, caption: str = "") -> str:
    """A table of already-escaped cells; numeric columns are right-aligned."""
    num = ' class="num"'
    head = "".join(f'<th scope="col"{num if n else ""}>{h}</th>' for h, n in zip(headers, numeric))
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        cells = "".join(f'<td{num if n else ""}>{c}</td>' for c, n in zip(row, numeric))
        body.append(f"<tr{cls}>{cells}</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _key_values(pairs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f'<tr><th scope="row">{k}</th><td class="num">{v}</td></tr>' for k, v in pairs)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def _verdict(report: Mapping) -> str:
    v = report.get("verdict")
    if not isinstance(v, Mapping):
        return _note("No verdict in this run: it needs the baselines, which "
                     "<code>headstart fit ... --compare</code> (the default) trains.")
    label = str(v.get("label") or "no verdict")
    metric = escape(str(v.get("metric") or "metric"))
    baseline = _mapping(v.get("baseline"))
    parts = [f'<div class="verdict verdict-{BADGES.get(label, "neutral")}">',
             f'<p class="badge">{escape(label)}</p>',
             f'<p class="headline">Transfer {metric} <strong>{_num(v.get("transfer"))}</strong> '
             f'against <strong>{_num(baseline.get("value"))}</strong> for the strongest baseline, '
             f'{_text(baseline.get("name"))}.</p>']
    ci = v.get("ci")
    ci_text = ""
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        level = v.get("ci_level")
        level_text = f"{level * 100:.0f}%" if _is_number(level) else "confidence"
        ci_text = (f" ({level_text} paired-bootstrap interval {_num(ci[0], signed=True)} to "
                   f"{_num(ci[1], signed=True)})")
    parts.append(f'<p>Difference: <strong>{_num(v.get("difference"), signed=True)}</strong>{ci_text}.</p>')
    seeds = v.get("seeds")
    if isinstance(seeds, Mapping):
        parts.append(f'<p>Spread over {_count(seeds.get("n"))} seeds: standard deviation '
                     f'{_num(seeds.get("transfer_sd"))} for transfer, '
                     f'{_num(seeds.get("baseline_sd"))} for the baseline.</p>')
    if v.get("explanation"):
        parts.append(f'<p class="explanation">{_text(v.get("explanation"))}</p>')
    parts.append("</div>")
    return "".join(parts)


COMPARISON_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss", "ece")


def _comparison(report: Mapping) -> str:
    rows = [r for r in report.get("comparison") or [] if isinstance(r, Mapping)]
    if not rows:
        return _note("No baselines in this run: <code>headstart fit ... --compare</code> (the "
                     "default) trains them to weigh the transfer model against.")
    headers = ["Model", "Kind", *(METRIC_NAMES[c] for c in COMPARISON_COLUMNS), "Fit (s)", "Note"]
    numeric = [False, False, *[True] * len(COMPARISON_COLUMNS), True, False]
    cells = [[_text(r.get("name")), _text(r.get("kind")), *(_num(r.get(c)) for c in COMPARISON_COLUMNS),
              _num(r.get("fit_seconds"), 1), _text(r.get("note") or "")] for r in rows]
    classes = ["transfer" if r.get("kind") == "transfer" else "" for r in rows]
    return (_table(headers, cells, numeric, classes)
            + '<p class="hint">Log loss and ECE: lower is better. Fit time is wall-clock seconds on '
              "this run's machine.</p>")


def _metrics(report: Mapping) -> str:
    m = report.get("metrics")
    if not isinstance(m, Mapping):
        return _note("No test metrics in this run: the data had no test split to evaluate on.")
    pairs = [("Test items", _count(m.get("n")))]
    pairs += [(METRIC_NAMES[key], _num(m.get(key))) for key in COMPARISON_COLUMNS]
    return _key_values(pairs) + ('<p class="hint">Held-out test set. ROC-AUC is one-vs-rest, '
                                 "macro-averaged when there are more than two classes.</p>")


def _confusion(report: Mapping) -> str:
    cm = _mapping(report.get("metrics")).get("confusion_matrix")
    if not isinstance(cm, Mapping) or not cm.get("labels") or not cm.get("matrix"):
        return _note("No confusion matrix in this run.")
    labels = [str(label) for label in cm["labels"]]
    matrix = [list(row) if isinstance(row, Sequence) else [] for row in cm["matrix"]][: len(labels)]
    svg = confusion_svg(labels, matrix, str(cm.get("rows") or "true label"),
                        str(cm.get("columns") or "predicted label"))
    return (f'<figure class="chart-wrap">{svg}<figcaption>Rows: {_text(cm.get("rows") or "true label")}; '
            f'columns: {_text(cm.get("columns") or "predicted label")}. Blue: correct, red: '
            "mistakes, shaded by the share of the row. Hover a cell or label for its full text.</figcaption></figure>")


def _per_class(report: Mapping) -> str:
    rows = [r for r in _mapping(report.get("metrics")).get("per_class") or [] if isinstance(r, Mapping)]
    if not rows:
        return _note("No per-class metrics in this run.")
    cells = [[_text(r.get("label")), _num(r.get("precision")), _num(r.get("recall")),
              _num(r.get("f1")), _count(r.get("support"))] for r in rows]
    return _table(["Class", "Precision", "Recall", "F1", "Support"], cells,
                  [False, True, True, True, True])


def _learning_curve(report: Mapping) -> str:
    lc = report.get("learning_curve")
    if not isinstance(lc, Mapping) or not lc.get("series"):
        return _note("No learning curve in this run: <code>headstart fit ... --learning-curve</code> "
                     "computes one.")
    x, x_title = lc.get("n_labels"), "number of training labels"
    if not (isinstance(x, Sequence) and x and all(_is_number(v) for v in x)):
        x, x_title = lc.get("fractions") or [], "fraction of the training labels"
    if not (isinstance(x, Sequence) and x and all(_is_number(v) for v in x)):
        return _note("The learning curve in this run has no usable x values (n_labels or fractions).")
    series = [s for s in lc["series"] if isinstance(s, Mapping)]
    log_x = min(x) > 0 and max(x) / min(x) >= 4
    metric = str(lc.get("metric") or "metric")
    svg = line_chart_svg(list(x), series, x_title + (" (log scale)" if log_x else ""), metric, log_x)
    parts = [f'<figure class="chart-wrap">{svg}<figcaption>Test {escape(metric)} when training on '
             "part of the labels. Error bars: ±1 standard deviation where available.</figcaption></figure>"]
    if lc.get("labels_saved"):
        parts.append(f'<p class="callout">{_text(lc["labels_saved"])}</p>')
    headers = [escape(x_title), *(_text(s.get("name")) for s in series)]
    rows = []
    for i, xv in enumerate(x):
        row = [f"{xv:g}"]
        for s in series:
            values, sds = list(s.get("values") or []), list(s.get("sd") or [])
            cell = _num(values[i]) if i < len(values) else "—"
            if i < len(sds) and _is_number(sds[i]):
                cell += f" ± {_num(sds[i])}"
            row.append(cell)
        rows.append(row)
    table = _table(headers, rows, [True] * len(headers))
    parts.append(f"<details><summary>Data</summary>{table}</details>")
    return "".join(parts)


def _calibration(report: Mapping) -> str:
    metrics = _mapping(report.get("metrics"))
    cal = _mapping(metrics.get("calibration"))
    ece = metrics.get("ece")
    ece_line = (f'<p>Expected calibration error (ECE): <strong>{_num(ece)}</strong>, the gap between '
                "confidence and accuracy averaged over the bins and weighted by their counts; "
                "0 is perfect.</p>") if ece is not None else ""
    bins = [b for b in cal.get("bins") or [] if isinstance(b, Mapping)]
    if not bins:
        return _note("No reliability diagram in this run.") + ece_line
    return (f'<figure class="chart-wrap">{reliability_svg(bins)}<figcaption>Reliability diagram: '
            "bars under the dashed diagonal mean the model is over-confident in that bin, bars above "
            "it under-confident. Numbers under the axis: test items per bin.</figcaption></figure>"
            + ece_line)


def _slice_table(rows: list[Mapping]) -> str:
    metrics = [k for k in dict.fromkeys(k for r in rows for k in r)
               if k not in ("value", "n", "flagged", "note") and any(_is_number(r.get(k)) for r in rows)]
    if metrics:  # worst first on the first metric, rows without it last
        first = metrics[0]
        rows = sorted(rows, key=lambda r: (not _is_number(r.get(first)),
                                           r.get(first) if _is_number(r.get(first)) else 0))
    headers = ["Value", "n", *(escape(METRIC_NAMES.get(k, k)) for k in metrics), "Flag"]
    cells = [[_text(r.get("value")), _count(r.get("n")), *(_num(r.get(k)) for k in metrics),
              "⚑ flagged" if r.get("flagged") else ""] for r in rows]
    classes = ["flagged" if r.get("flagged") else "" for r in rows]
    return _table(headers, cells, [False, True, *[True] * len(metrics), False], classes)


def _slices(report: Mapping) -> str:
    slices = report.get("slices")
    if not isinstance(slices, Mapping) or not slices:
        return _note("No slices in this run: <code>headstart fit ... --slice-col COLUMN</code> "
                     "reports the metrics for each value of a column (source, site, group...).")
    overall = _mapping(report.get("metrics")).get("accuracy")
    parts = ['<p class="hint">A <span class="flag-sample">flagged</span> slice scores well below the '
             f"overall metric (test accuracy {_num(overall)}). A pretrained model can inherit bias "
             "from its pretraining data: check flagged groups before shipping. Worst slices first.</p>"]
    for column, rows in slices.items():
        rows = [r for r in rows or [] if isinstance(r, Mapping)]
        parts.append(f"<h3>{_text(column)}</h3>")
        parts.append(_slice_table(rows) if rows else _note("No rows for this column."))
    return "".join(parts)


def _preview(preview: object, locator: str) -> str:
    if isinstance(preview, Mapping) and preview.get("kind") == "text":
        text = str(preview.get("text") or "")
        return f'<blockquote class="snippet">{escape(text[:500])}</blockquote>'
    if isinstance(preview, Mapping) and preview.get("kind") == "image":
        uri = preview.get("data_uri")
        if isinstance(uri, str) and _DATA_URI.fullmatch(uri):
            return f'<img src="{escape(uri)}" alt="{locator}" loading="lazy">'
    return '<div class="no-preview">no preview</div>'


def _mistakes(report: Mapping) -> str:
    mistakes = report.get("mistakes")
    if mistakes is None:
        return _note("Mistakes were not recorded in this run.")
    cards = [m for m in mistakes if isinstance(m, Mapping)]
    if not cards:
        return _note("No mistakes on the test set.")
    html = []
    for m in cards:
        locator = _text(m.get("locator") or "")
        html.append(f'<figure class="card">{_preview(m.get("preview"), locator)}<figcaption>'
                    f'<div><span class="tag tag-true">true</span> {_text(m.get("true"))}</div>'
                    f'<div><span class="tag tag-pred">predicted</span> {_text(m.get("predicted"))} '
                    f'<span class="conf">({_num(m.get("confidence"))})</span></div>'
                    f'<code class="locator">{locator}</code></figcaption></figure>')
    return ('<p class="hint">Test items the model got wrong with the highest confidence; '
            'they often reveal label noise or a confusable pair.</p>'
            f'<div class="cards">{"".join(html)}</div>')


def _latency(report: Mapping) -> str:
    lat = report.get("latency")
    if not isinstance(lat, Mapping):
        return _note("No latency measurement in this run.")
    return _key_values([
        ("Device", _text(lat.get("device"))), ("Batch size", _count(lat.get("batch_size"))),
        ("p50 latency (ms per item)", _num(lat.get("p50_ms"), 2)),
        ("p95 latency (ms per item)", _num(lat.get("p95_ms"), 2)),
        ("Throughput (items per second)", _num(lat.get("throughput_per_s"), 1)),
        ("Model size (MB)", _num(lat.get("model_size_mb"), 1)),
        ("Parameters", _params(lat.get("n_params"))),
    ])


def _reproduce(report: Mapping) -> str:
    rep = report.get("reproduce")
    if not isinstance(rep, Mapping):
        return _note("No reproduction record in this run.")
    parts = [f'<pre><code>{_text(rep.get("command") or "")}</code></pre>' if rep.get("command")
             else _note("The command line of this run was not recorded."),
             _key_values([("Seed", _text(rep.get("seed"))),
                          ("Data fingerprint", f'<code>{_text(rep.get("data_fingerprint"))}</code>'),
                          ("Created", _text(report.get("created")))])]
    versions = rep.get("versions")
    if isinstance(versions, Mapping) and versions:
        parts.append("<h3>Versions</h3>")
        parts.append(_table(["Package", "Version"], [[_text(k), _text(v)] for k, v in versions.items()],
                            [False, False]))
    return "".join(parts)


SECTION_BODIES: dict[str, Callable[[Mapping], str]] = {
    "verdict": _verdict, "comparison": _comparison, "metrics": _metrics, "confusion": _confusion,
    "per-class": _per_class, "learning-curve": _learning_curve, "calibration": _calibration,
    "slices": _slices, "mistakes": _mistakes, "latency": _latency, "reproduce": _reproduce,
}


def _header(report: Mapping) -> str:
    task = _mapping(report.get("task"))
    classes = [str(c) for c in task.get("classes") or []]
    shown = ", ".join(_text(c) for c in classes[:12]) + (", …" if len(classes) > 12 else "")
    facts = [("Task", f'{_text(task.get("modality"))} classification, {len(classes)} classes'
              + (f" ({shown})" if classes else "")),
             ("Backbone", _text(task.get("backbone"))), ("Strategy", _text(task.get("strategy"))),
             ("Labels", f'{_count(task.get("n_train"))} train · {_count(task.get("n_val"))} '
                        f'validation · {_count(task.get("n_test"))} test')]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    nav = "".join(f'<a href="#{s}">{TITLES[s]}</a>' for s in REPORT_SECTIONS)
    created = f'<p class="created">{_text(report.get("created"))}</p>' if report.get("created") else ""
    return (f'<header><h1>{_text(report.get("title") or "headstart report")}</h1>{created}'
            f'<dl class="facts">{dl}</dl><nav aria-label="Sections">{nav}</nav></header>')


def render_html(report: Mapping[str, Any]) -> str:
    """Render a run report as one self-contained HTML5 page.

    Args:
        report: the report dict described in ``report_schema.md``; optional parts may be
            missing or None.

    Returns:
        The page: inline CSS and SVG only, no script, no external reference.

    Raises:
        ConfigError: ``report`` is not a mapping.

    Example:
        >>> page = render_html({"title": "demo", "task": {"classes": ["a", "b"]}, "metrics": {}})
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    if not isinstance(report, Mapping):
        raise ConfigError(f"render_html: report must be a dict (see report_schema.md), "
                          f"got {type(report).__name__}.")
    sections = "".join(f'<section id="{sid}"><h2>{TITLES[sid]}</h2>{SECTION_BODIES[sid](report)}</section>'
                       for sid in REPORT_SECTIONS)
    title = _text(report.get("title") or "headstart report")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="headstart"><title>{title}</title>'
            f"<style>{CSS}</style></head><body><main>{_header(report)}{sections}</main>"
            '<footer>Made by headstart. This page is self-contained: it loads nothing from the '
            "network.</footer></body></html>\n")


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Render ``report`` and write it to ``path`` atomically, as UTF-8.

    The page is written to a temporary file in the same folder and then renamed over ``path``,
    so a reader sees the old page or the new one, never half of one.

    Example:
        >>> write_report(report, "runs/animals/report.html")  # doctest: +SKIP
        PosixPath('runs/animals/report.html')
    """
    return write_text_atomic(render_html(report), path)


def write_text_atomic(page: str, path: str | os.PathLike) -> Path:
    """Write ``page`` to ``path`` as UTF-8 with the shared atomic file writer (umask permissions).

    Raises:
        OutputError: ``path`` cannot be written (the message names it and what to do).
    """
    return write_file(path, page)
