"""``headstart audit --html``: the audit as one self-contained page.

The input is :meth:`headstart.audit.AuditReport.to_dict` plus optional ``previews`` (item
index → thumbnail or snippet, as :func:`headstart.evaluation.proof.preview` makes them). Like
the fit report, the page has inline CSS only, no script and no external reference, and every
value from the data is escaped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from headstart.errors import ConfigError
from headstart.report.html import (
    _count,
    _key_values,
    _note,
    _preview,
    _table,
    _text,
    write_text_atomic,
)
from headstart.report.style import CSS

__all__ = ["render_audit_html", "write_audit_html"]

SEVERITY_CLASS = {"severe": "bad", "warning": "warn", "info": "neutral", "ok": "good", "skipped": "neutral"}

AUDIT_CSS = """
.sev { display: inline-block; color: #fff; font-size: .8rem; font-weight: 700; padding: 1px 10px;
       border-radius: 999px; text-transform: uppercase; letter-spacing: .03em; }
.sev-bad { background: var(--bad); } .sev-warn { background: #9a6700; }
.sev-neutral { background: var(--neutral); } .sev-good { background: var(--good); }
.finding { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; margin: 10px 0; }
.finding > p { margin: 0 0 8px; }
.finding .cards { margin: 0; }
.remedy { border-left: 4px solid var(--accent); background: #ddf4ff; padding: 6px 12px;
          border-radius: 0 6px 6px 0; }
"""

MAX_FINDINGS = 30  # per check on the page; --json has every row


def _badge(severity: object) -> str:
    sev = str(severity)
    return f'<span class="sev sev-{SEVERITY_CLASS.get(sev, "neutral")}">{escape(sev)}</span>'


def _scalar_stats(stats: object) -> list[tuple[str, str]]:
    pairs = []
    for key, value in (stats.items() if isinstance(stats, Mapping) else []):
        if isinstance(value, (str, int, float, bool)) or value is None:
            shown = f"{value:.4g}" if isinstance(value, float) else _text(value)
            pairs.append((_text(key.replace("_", " ")), shown))
    return pairs


def _item_card(index: object, items: Sequence[Mapping], previews: Mapping) -> str:
    if not isinstance(index, int) or not 0 <= index < len(items):
        return ""
    item = items[index] if isinstance(items[index], Mapping) else {}
    locator = _text(item.get("locator") or "")
    split = f'<div><span class="tag">split</span> {_text(item.get("split"))}</div>' if item.get("split") else ""
    return (f'<figure class="card">{_preview(previews.get(str(index)), locator)}<figcaption>'
            f'<div><span class="tag tag-true">label</span> {_text(item.get("label"))}</div>{split}'
            f'<code class="locator">{locator}</code></figcaption></figure>')


def _findings(check: Mapping, items: Sequence[Mapping], previews: Mapping) -> str:
    findings = [f for f in check.get("findings") or [] if isinstance(f, Mapping)]
    if not findings:
        return ""
    parts = []
    for f in findings[:MAX_FINDINGS]:
        cards = "".join(_item_card(i, items, previews) for i in (f.get("items") or [])[:6])
        dropped = "".join(f"<li><code>{_text(loc)}</code></li>" for loc in (f.get("locators") or [])[:6])
        body = f'<div class="cards">{cards}</div>' if cards else (f"<ul>{dropped}</ul>" if dropped else "")
        parts.append(f'<div class="finding"><p>{_text(f.get("detail"))}</p>{body}</div>')
    if len(findings) > MAX_FINDINGS:
        parts.append(f'<p class="hint">… and {_count(len(findings) - MAX_FINDINGS)} more: '
                     "<code>headstart audit --json</code> lists every one.</p>")
    return "".join(parts)


def render_audit_html(audit: Mapping[str, Any], previews: Mapping[str, Any] | None = None) -> str:
    """Render an audit (``AuditReport.to_dict()``) as one self-contained HTML5 page.

    Example:
        >>> page = render_audit_html({"data": {"source": "x"}, "summary": [], "checks": []})
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    if not isinstance(audit, Mapping):
        raise ConfigError(f"render_audit_html: audit must be a dict, got {type(audit).__name__}.")
    previews = previews if isinstance(previews, Mapping) else {}
    data = audit.get("data") if isinstance(audit.get("data"), Mapping) else {}
    items = audit.get("items") or []
    backbone = audit.get("backbone") if isinstance(audit.get("backbone"), Mapping) else None
    summary = [s for s in audit.get("summary") or [] if isinstance(s, Mapping)]
    checks = [c for c in audit.get("checks") or [] if isinstance(c, Mapping)]
    severe = any(s.get("severity") == "severe" for s in summary)
    splits = data.get("split_counts") if isinstance(data.get("split_counts"), Mapping) else {}
    facts = [("Data", _text(data.get("source"))),
             ("Items", f'{_count(data.get("n_items"))} {_text(data.get("modality"))} items'
                       + (f' ({", ".join(f"{_text(k)} {_count(v)}" for k, v in splits.items())})' if splits else "")
                       + (f' · {_count(data.get("n_rows_dropped"))} rows not loadable'
                          if data.get("n_rows_dropped") else "")),
             ("Embeddings", _text(backbone.get("name")) if backbone else "none (checks without a model only)"),
             ("Took", f'{audit.get("seconds", 0):.1f} s' if isinstance(audit.get("seconds"), (int, float)) else "—")]
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    verdict = ('<div class="verdict verdict-bad"><p class="badge">severe problems</p>'
               "<p>Fix these before training: a model trained or evaluated on this data can look "
               "better than it is. <code>headstart audit</code> exits with 1.</p></div>" if severe else
               '<div class="verdict verdict-good"><p class="badge">nothing severe</p>'
               "<p>Review the warnings below. <code>headstart audit</code> exits with 0.</p></div>")
    rows = [[_badge(s.get("severity")), f'<a href="#check-{escape(str(s.get("check")))}">{_text(s.get("title"))}</a>',
             _count(s.get("count")), _text(s.get("summary"))] for s in summary]
    table = _table(["severity", "check", "items", "summary"], rows, [False, False, True, False])
    sections = []
    for c in checks:
        name = escape(str(c.get("name")))
        body = [f'<p>{_badge(c.get("severity"))} {_text(c.get("summary"))}</p>',
                f'<p class="hint">{_text(c.get("description"))}</p>']
        if c.get("remedy"):
            body.append(f'<p class="remedy">{_text(c.get("remedy"))}</p>')
        stats = _scalar_stats(c.get("stats"))
        if stats:
            body.append(_key_values(stats))
        body.append(_findings(c, items, previews))
        sections.append(f'<section id="check-{name}"><h2>{_text(c.get("title"))}</h2>{"".join(body)}</section>')
    title = f'Audit of {_text(data.get("source") or "data")}'
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="headstart"><title>{title}</title>'
            f"<style>{CSS}{AUDIT_CSS}</style></head><body><main>"
            f'<header><h1>{title}</h1><dl class="facts">{dl}</dl></header>'
            f'<section id="summary"><h2>Summary</h2>{verdict}{table if rows else _note("No checks ran.")}</section>'
            f'{"".join(sections)}</main>'
            '<footer>Made by headstart. This page is self-contained: it loads nothing from the '
            "network.</footer></body></html>\n")


def write_audit_html(audit: Mapping[str, Any], path: str | os.PathLike,
                     previews: Mapping[str, Any] | None = None) -> Path:
    """Render the audit page and write it to ``path`` atomically."""
    return write_text_atomic(render_audit_html(audit, previews), path)
