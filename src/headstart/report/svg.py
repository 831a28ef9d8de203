"""Inline SVG charts for the HTML report, drawn by hand so the page needs no plotting library.

Every function returns one ``<svg>`` element as a string. All text that comes from the caller
(labels, series names) is HTML-escaped here; numbers are formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Okabe-Ito: tells series apart for readers with colour-vision deficiency; dashes help in print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", "10 4", "3 6")
CHAR_WIDTH = 0.6  # average glyph width of the sans-serif stack, in font sizes


def _svg_open(width: float, height: float, label: str) -> str:
    # No xmlns: inline SVG in HTML5 needs none, and the page must hold no URL at all.
    return (f'<svg viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{escape(label)}" '
            f'class="chart" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">')


def _text(x: float, y: float, text: str, size: float = 12, anchor: str = "middle",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:.1f}" text-anchor="{anchor}"{extra}>'
            f"{escape(text)}</text>")


def _short_labels(labels: Sequence[str], max_chars: int = 24) -> list[str]:
    """Labels cut to ``max_chars`` and still told apart.

    Cut the end first, then the middle (class names often differ only by a suffix, "type 12");
    if neither keeps them distinct, number them.
    """
    def end_cut(label: str, n: int) -> str:
        return label if len(label) <= n else label[: n - 1] + "…"

    def middle_cut(label: str, n: int) -> str:
        tail = (n - 1) // 2
        return label if len(label) <= n else label[: n - 1 - tail] + "…" + label[-tail:]

    for cut in (end_cut, middle_cut):
        shown = [cut(label, max_chars) for label in labels]
        if len(set(shown)) == len(set(labels)):
            return shown
    return [f"{i + 1}. {middle_cut(label, max_chars - 4)}" for i, label in enumerate(labels)]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mix(colour: tuple[int, int, int], fraction: float) -> str:
    """``colour`` blended with white: 0 gives white, 1 gives ``colour``."""
    f = min(max(fraction, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * f) for c in colour)
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion_svg(labels: Sequence[str], matrix: Sequence[Sequence[float]],
                  rows_title: str = "true label", columns_title: str = "predicted label") -> str:
    """A confusion-matrix heatmap: correct counts in blue, errors in red, shaded by row share.

    Cells shrink and column labels tilt as the number of classes grows, so 30 classes still fit
    in about 700 pixels; long labels are abbreviated and given in full in each ``<title>``.
    """
    k = len(labels)
    cell = max(20, min(56, 640 // max(k, 1)))
    font = min(13.0, cell * 0.42)
    shown = _short_labels([str(label) for label in labels])
    longest = max((len(s) for s in shown), default=1) * 12 * CHAR_WIDTH
    tilt = k > 4 or longest > cell
    left = 28 + longest + 8
    top = 24 + (longest * 0.72 + 10 if tilt else 20)
    right = longest * 0.72 if tilt else 8
    width, height = left + k * cell + right + 8, top + k * cell + 8
    parts = [_svg_open(width, height, f"confusion matrix, rows {rows_title}, columns {columns_title}")]
    parts.append(_text(left + k * cell / 2, 14, columns_title, 12, extra=' font-weight="600"'))
    parts.append(_text(12, top + k * cell / 2, rows_title, 12,
                       extra=f' font-weight="600" transform="rotate(-90 12 {top + k * cell / 2:.1f})"'))
    for j, (full, short) in enumerate(zip(labels, shown)):
        x = left + j * cell + cell / 2
        if tilt:
            y = top - 6
            attrs = f' transform="rotate(-45 {x:.1f} {y:.1f})"'
            parts.append(f'<g><title>{escape(str(full))}</title>'
                         f'{_text(x, y, short, 12, "start", attrs)}</g>')
        else:
            parts.append(f'<g><title>{escape(str(full))}</title>{_text(x, top - 6, short, 12)}</g>')
    for i, (full, short, row) in enumerate(zip(labels, shown, matrix)):
        y = top + i * cell
        parts.append(f'<g><title>{escape(str(full))}</title>'
                     f'{_text(left - 6, y + cell / 2 + 4, short, 12, "end")}</g>')
        total = sum(v for v in row if isinstance(v, (int, float))) or 1
        for j, count in enumerate(row[:k]):
            value = count if isinstance(count, (int, float)) else 0
            share = value / total
            base = (8, 81, 156) if i == j else (203, 24, 29)
            fill = _mix(base, 0.08 + 0.92 * share) if value else "#f6f8fa"
            ink = "#ffffff" if share > 0.5 else ("#8c959f" if not value else "#1f2328")
            tip = f"true {labels[i]} → predicted {labels[j]}: {value:g} ({share:.1%} of the row)"
            x = left + j * cell
            number = _text(x + cell / 2, y + cell / 2 + font * 0.35, f"{value:g}", font,
                           extra=f' fill="{ink}"')
            parts.append(f'<g><title>{escape(tip)}</title>'
                         f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell}" height="{cell}" '
                         f'fill="{fill}" stroke="#ffffff"/>{number}</g>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_range(lo: float, hi: float, n_ticks: int = 5) -> tuple[float, float, float]:
    """Round ``[lo, hi]`` out to a step of 1, 2 or 5 times a power of ten."""
    if not hi > lo:
        lo, hi = lo - 0.05, hi + 0.05
    raw = (hi - lo) / n_ticks
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


def _legend(names: Sequence[str], x0: float, width: float) -> tuple[list[str], float]:
    """Legend items laid out left to right, wrapping; returns the parts and the height used."""
    parts, x, y = [], x0, 14.0
    for index, name in enumerate(names):
        item = 30 + len(name) * 12 * CHAR_WIDTH + 18
        if x > x0 and x + item > x0 + width:
            x, y = x0, y + 18
        colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
        parts.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 24:.1f}" y2="{y - 4:.1f}" '
                     f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>')
        parts.append(_text(x + 30, y, name, 12, "start"))
        x += item
    return parts, y + 10


def line_chart_svg(x: Sequence[float], series: Sequence[dict], x_title: str, y_title: str,
                   log_x: bool = False) -> str:
    """One line per series over shared ``x`` values, with ±sd error bars and a legend.

    Args:
        x: the x positions, positive when ``log_x``.
        series: ``{"name", "values", "sd"}`` dicts; ``None`` values leave a gap in the line.
        x_title: x-axis title.
        y_title: y-axis title.
        log_x: place x on a logarithmic scale.
    """
    width, plot_w, plot_h, left = 680.0, 590.0, 280.0, 64.0
    names = [str(s.get("name", f"series {i + 1}")) for i, s in enumerate(series)]
    legend, top = _legend(names, left, plot_w)
    top += 8
    height = top + plot_h + 56
    ys = []  # every value and its ±sd ends, to fit the y range
    for s in series:
        values, sds = list(s.get("values") or [])[: len(x)], list(s.get("sd") or [])
        for i, v in enumerate(values):
            if _is_number(v):
                sd = sds[i] if i < len(sds) and _is_number(sds[i]) else 0.0
                ys += [v - sd, v + sd]
    y_lo, y_hi, y_step = _nice_range(min(ys, default=0.0), max(ys, default=1.0))
    fx = math.log if log_x else float
    x_lo, x_hi = fx(min(x)), fx(max(x))

    def px(value: float) -> float:
        return left + (plot_w / 2 if x_hi == x_lo else (fx(value) - x_lo) / (x_hi - x_lo) * plot_w)

    def py(value: float) -> float:
        return top + plot_h - (value - y_lo) / (y_hi - y_lo) * plot_h

    parts = [_svg_open(width, height, f"{y_title} against {x_title}"), *legend]
    n_steps = round((y_hi - y_lo) / y_step)
    for t in range(n_steps + 1):
        value = y_lo + t * y_step
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(value):.1f}" '
                     f'y2="{py(value):.1f}" stroke="#d0d7de" stroke-width="1"/>')
        parts.append(_text(left - 6, py(value) + 4, f"{value:.{max(0, -math.floor(math.log10(y_step)))}f}", 11, "end"))
    stride = max(1, math.ceil(len(x) / 10))
    for i, value in enumerate(x):
        if i % stride == 0 or i == len(x) - 1:
            parts.append(f'<line x1="{px(value):.1f}" x2="{px(value):.1f}" y1="{top + plot_h}" '
                         f'y2="{top + plot_h + 5}" stroke="#57606a"/>')
            parts.append(_text(px(value), top + plot_h + 18, f"{value:g}", 11))
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#57606a"/>')
    parts.append(_text(left + plot_w / 2, top + plot_h + 40, x_title, 12, extra=' font-weight="600"'))
    mid = top + plot_h / 2
    parts.append(_text(16, mid, y_title, 12, extra=f' font-weight="600" transform="rotate(-90 16 {mid:.1f})"'))
    for index, (name, s) in enumerate(zip(names, series)):
        parts.append(_series(index, name, x, s, px, py))
    parts.append("</svg>")
    return "".join(parts)


def _series(index: int, name: str, x: Sequence[float], s: dict, px, py) -> str:
    colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
    values, sds = list(s.get("values") or []), list(s.get("sd") or [])
    path, marks, pen_down = [], [], False
    for i, (xv, v) in enumerate(zip(x, values)):
        if not _is_number(v):
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{px(xv):.1f} {py(v):.1f}")
        pen_down = True
        sd = sds[i] if i < len(sds) and _is_number(sds[i]) else None
        tip = f"{name} at {xv:g}: {v:.3f}" + (f" ± {sd:.3f} (sd)" if sd else "")
        mark = f'<circle cx="{px(xv):.1f}" cy="{py(v):.1f}" r="4" fill="{colour}"/>'
        if sd:
            cx, y1, y2 = px(xv), py(v - sd), py(v + sd)
            mark += (f'<path d="M{cx:.1f} {y1:.1f}V{y2:.1f}M{cx - 4:.1f} {y1:.1f}h8M{cx - 4:.1f} '
                     f'{y2:.1f}h8" stroke="{colour}" stroke-width="1.5" fill="none"/>')
        marks.append(f"<g><title>{escape(tip)}</title>{mark}</g>")
    line = (f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'stroke-dasharray="{dash}"/>') if path else ""
    return f'<g class="series">{line}{"".join(marks)}</g>'


def reliability_svg(bins: Sequence[dict]) -> str:
    """A reliability diagram: accuracy per confidence bin against the diagonal, with bin counts.

    Args:
        bins: ``{"lo", "hi", "confidence", "accuracy", "count"}`` dicts (None where a bin is empty).
    """
    left, top, size = 56.0, 30.0, 360.0
    width, height = left + size + 24, top + size + 78
    parts = [_svg_open(width, height, "reliability diagram: accuracy against confidence")]

    def px(value: float) -> float:
        return left + value * size

    def py(value: float) -> float:
        return top + size - value * size

    for t in range(6):
        v = t / 5
        parts.append(f'<line x1="{left}" x2="{left + size}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#d0d7de"/>')
        parts.append(_text(left - 6, py(v) + 4, f"{v:.1f}", 11, "end"))
        parts.append(_text(px(v), top + size + 16, f"{v:.1f}", 11))
    for b in bins:
        lo, hi = b.get("lo"), b.get("hi")
        if not (_is_number(lo) and _is_number(hi)):
            continue
        acc, conf, count = b.get("accuracy"), b.get("confidence"), b.get("count")
        count = count if _is_number(count) else 0
        parts.append(_text(px((lo + hi) / 2), top + size + 34, f"{count:g}", 10, extra=' fill="#57606a"'))
        if not count or not _is_number(acc):
            continue
        conf_text = f"{conf:.3f}" if _is_number(conf) else "—"
        tip = f"confidence {lo:.1f}–{hi:.1f}: {count:g} items, mean confidence {conf_text}, accuracy {acc:.3f}"
        bar = (f'<rect x="{px(lo) + 1:.1f}" y="{py(acc):.1f}" width="{(hi - lo) * size - 2:.1f}" '
               f'height="{acc * size:.1f}" fill="#0072B2" fill-opacity="0.55" stroke="#0072B2"/>')
        if _is_number(conf):
            bar += f'<circle cx="{px(conf):.1f}" cy="{py(acc):.1f}" r="3.5" fill="#D55E00"/>'
        parts.append(f"<g><title>{escape(tip)}</title>{bar}</g>")
    parts.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#57606a" '
                 'stroke-dasharray="5 4" stroke-width="1.5"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#57606a"/>')
    parts.append(_text(left - 6, top + size + 34, "count", 10, "end", ' fill="#57606a"'))
    parts.append(_text(left + size / 2, top + size + 56, "confidence (top-class probability)", 12,
                       extra=' font-weight="600"'))
    mid = top + size / 2
    parts.append(_text(16, mid, "accuracy", 12, extra=f' font-weight="600" transform="rotate(-90 16 {mid:.1f})"'))
    parts.append(_text(left, 16, "bars: accuracy per bin · dots: mean confidence · dashed: perfect calibration",
                       10, "start", ' fill="#57606a"'))
    parts.append("</svg>")
    return "".join(parts)
