"""The report's inline stylesheet: system fonts, readable tables, print-friendly, no web fonts."""

from __future__ import annotations

CSS = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa;
        --good: #1a7f37; --neutral: #6e7781; --bad: #cf222e; --accent: #0969da; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5; font-size: 15px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
                    "Noto Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 8px; }
h1 { font-size: 1.75rem; margin: 0 0 4px; line-height: 1.25; word-break: break-word; }
h2 { font-size: 1.3rem; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 18px 0 8px; }
header { margin-bottom: 8px; }
.created { color: var(--muted); margin: 0 0 12px; font-size: .9rem; }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 8px 20px;
         margin: 0 0 14px; }
.facts div { background: var(--soft); border-radius: 6px; padding: 8px 12px; }
.facts dt { color: var(--muted); font-size: .78rem; text-transform: uppercase; letter-spacing: .04em; }
.facts dd { margin: 0; word-break: break-word; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .9rem; padding: 8px 0;
      border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { margin: 28px 0; }
p { margin: 6px 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
            font-size: .88em; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 12px;
      overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.missing { color: var(--muted); font-style: italic; }
.hint, figcaption { color: var(--muted); font-size: .88rem; }
.callout { border-left: 4px solid var(--accent); background: #ddf4ff; padding: 8px 12px;
           border-radius: 0 6px 6px 0; }
.verdict { border: 1px solid var(--line); border-left-width: 8px; border-radius: 8px; padding: 14px 18px; }
.verdict-good { border-left-color: var(--good); }
.verdict-neutral { border-left-color: var(--neutral); }
.verdict-bad { border-left-color: var(--bad); }
.badge { display: inline-block; color: #fff; font-size: 1.6rem; font-weight: 700; margin: 0 0 8px;
         padding: 6px 18px; border-radius: 999px; letter-spacing: .01em; }
.verdict-good .badge { background: var(--good); }
.verdict-neutral .badge { background: var(--neutral); }
.verdict-bad .badge { background: var(--bad); }
.headline { font-size: 1.1rem; }
.explanation { margin-top: 10px; }
.table-wrap { overflow-x: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: .9rem; min-width: 40%; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; border-bottom: 2px solid var(--line); }
tbody tr:nth-child(even) { background: #fbfcfd; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { font-weight: 500; color: var(--muted); }
tr.transfer td { background: #ddf4ff; font-weight: 600; }
tr.flagged td { background: #ffebe9; }
tr.flagged td:last-child { color: var(--bad); font-weight: 600; }
.flag-sample { background: #ffebe9; color: var(--bad); padding: 0 4px; border-radius: 3px; }
.chart-wrap { margin: 8px 0; overflow-x: auto; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart text { fill: var(--ink); }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); font-size: .9rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.card { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: #fff;
        display: flex; flex-direction: column; }
.card img { width: 100%; height: 160px; object-fit: contain; background: var(--soft); display: block; }
.card .snippet { margin: 0; padding: 10px 12px; background: var(--soft); font-size: .88rem;
                 max-height: 160px; overflow: auto; white-space: pre-wrap; word-break: break-word; }
.card .no-preview { height: 60px; display: flex; align-items: center; justify-content: center;
                    color: var(--muted); background: var(--soft); font-size: .85rem; }
.card figcaption { padding: 8px 12px; color: var(--ink); font-size: .88rem; }
.tag { display: inline-block; min-width: 68px; font-size: .75rem; color: var(--muted);
       text-transform: uppercase; letter-spacing: .03em; }
.conf { color: var(--muted); }
.locator { display: block; margin-top: 4px; color: var(--muted); word-break: break-all; font-size: .78rem; }
footer { max-width: 1100px; margin: 0 auto; padding: 12px 20px 28px; color: var(--muted);
         font-size: .8rem; border-top: 1px solid var(--line); }
@media (max-width: 640px) { body { font-size: 14px; } main { padding: 16px 12px; } .badge { font-size: 1.3rem; } }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav, details summary { display: none; }
  section { break-inside: avoid-page; page-break-inside: avoid; }
  .table-wrap, .chart-wrap, pre { overflow: visible; }
  .verdict, .badge, tr.transfer td, tr.flagged td, .card, .facts div {
    -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .card { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""
