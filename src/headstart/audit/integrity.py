"""Checks that need no model: missing labels, unreadable files, empty texts, odd images."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from headstart.audit.base import AuditContext, Finding, Outcome, n_of, register
from headstart.data.labels import is_placeholder
from headstart.modalities import get_modality

MIN_TEXT_CHARS = 3          # fewer word characters than this: a near-empty text
SMALL_IMAGE_SIDE = 32       # upscaled from below this, an image carries little for a 224-px backbone
LARGE_IMAGE_SIDE = 8192     # decoding and resizing above this costs more than it gives
EXTREME_ASPECT = 5.0        # a centre crop of such an image drops most of it
_WORD = re.compile(r"\w", re.UNICODE)


def _dropped(ctx: AuditContext, check: str) -> list[Finding]:
    return [Finding([], 1.0, p["detail"], [p["locator"]]) for p in ctx.problems if p["check"] == check]


def item_info(ctx: AuditContext) -> list[dict[str, Any]]:
    """Every item inspected once by its modality (:meth:`~headstart.modalities.base.Modality.inspect`):
    ``{"error": None or why it cannot be read, ...}`` (images: mode, size, a thumbnail fingerprint)."""

    def compute() -> list[dict[str, Any]]:
        modality = get_modality(ctx.data.modality)
        return [modality.inspect(item, loc) for item, loc in zip(ctx.data.items, ctx.data.locators)]

    return ctx.once("item_info", compute)


def readable(ctx: AuditContext) -> np.ndarray:
    """Indices of items a backbone can read: all of them, unless the modality reads files (then
    those that its inspection could read)."""
    if not get_modality(ctx.data.modality).reads_files:
        return np.arange(len(ctx.data))
    return np.array([i for i, info in enumerate(item_info(ctx)) if info["error"] is None], dtype=np.int64)


@register("missing-labels", "Missing labels",
          "Rows whose label is empty: they cannot be trained on or evaluated.")
def missing_labels(ctx: AuditContext) -> Outcome:
    found = _dropped(ctx, "missing-labels")
    labels = ctx.data.labels or []
    placeholders = [Finding([i], 0.5, f"label {v!r} usually means a missing label; it is kept as a class")
                    for i, v in enumerate(labels) if is_placeholder(v)]
    if not found and placeholders:
        values = sorted({str(labels[f.items[0]]) for f in placeholders})
        return Outcome("warning", f"{n_of(len(placeholders), 'row')} labeled {' / '.join(map(repr, values))}, "
                       "a text that usually means no label", placeholders, {"n_placeholder": len(placeholders)},
                       "If these rows are unlabeled, empty their label cells (fit then refuses them until they "
                       "are labeled or dropped); if it is a real class, rename it to say so.")
    if not found:
        return Outcome("ok", "every item has a label")
    return Outcome("severe", f"{n_of(len(found), 'row')} without a label"
                   + (f", {len(placeholders)} labeled like a missing value" if placeholders else ""),
                   found + placeholders, {"n_missing": len(found), "n_placeholder": len(placeholders)},
                   "Label these rows or remove them; `headstart fit` refuses data with unlabeled rows.")


@register("unreadable-files", "Unreadable or corrupt files",
          "Image paths that do not exist and files that do not decode as images.")
def unreadable_files(ctx: AuditContext) -> Outcome:
    found = _dropped(ctx, "unreadable-files")
    reads_files = get_modality(ctx.data.modality).reads_files
    if reads_files:
        found += [Finding([i], 1.0, f"cannot decode: {info['error']}")
                  for i, info in enumerate(item_info(ctx)) if info["error"] is not None]
    if not found:
        return Outcome("ok", "every file is readable" if reads_files else "no file inputs")
    return Outcome("severe", f"{n_of(len(found), 'file')} missing or undecodable", found,
                   {"n_unreadable": len(found)},
                   "Replace or remove these files: training stops at the first one it cannot read.")


@register("empty-texts", "Empty or near-empty texts",
          f"Texts that are blank, or have fewer than {MIN_TEXT_CHARS} letters or digits.", modalities=("text",))
def empty_texts(ctx: AuditContext) -> Outcome:
    blank = _dropped(ctx, "empty-texts")
    near = []
    for i, text in enumerate(ctx.data.items):
        n_word = len(_WORD.findall(text))
        if n_word < MIN_TEXT_CHARS:
            near.append(Finding([i], float(MIN_TEXT_CHARS - n_word), f"only {n_word} letters/digits: {text.strip()[:40]!r}"))
    if blank:
        return Outcome("severe", f"{n_of(len(blank), 'empty text')}" + (f", {len(near)} near-empty" if near else ""),
                       blank + near, {"n_empty": len(blank), "n_near_empty": len(near)},
                       "Fill in or drop the empty rows: `headstart fit` refuses them.")
    if near:
        return Outcome("warning", f"{n_of(len(near), 'near-empty text')}", near, {"n_near_empty": len(near)},
                       "Check these rows: a label on an almost empty text is mostly noise.")
    return Outcome("ok", "no empty texts")


@register("image-properties", "Image modes and sizes",
          "Images in unusual modes (converted to RGB for the backbone) or of extreme size or shape.",
          modalities=("image",))
def image_properties(ctx: AuditContext) -> Outcome:
    infos = item_info(ctx)
    modes: dict[str, int] = {}
    flagged: list[tuple[int, dict[str, str]]] = []
    sides = []
    for i, info in enumerate(infos):
        if info["error"] is not None:
            continue
        modes[str(info["mode"])] = modes.get(str(info["mode"]), 0) + 1
        w, h = info["size"]
        sides.append(min(w, h))
        kinds = {}
        if min(w, h) < SMALL_IMAGE_SIDE:
            kinds["small"] = f"small ({w}×{h})"
        if max(w, h) > LARGE_IMAGE_SIDE:
            kinds["large"] = f"very large ({w}×{h})"
        if max(w, h) / max(1, min(w, h)) > EXTREME_ASPECT:
            kinds["aspect"] = f"extreme aspect ratio ({w}×{h})"
        if info["mode"] in ("CMYK", "I;16", "I", "F", "LA", "PA", "RGBA"):
            kinds["mode"] = f"mode {info['mode']} (converted to RGB)"
        if kinds:
            flagged.append((i, kinds))
    n = max(1, sum(modes.values()))
    kind_counts: dict[str, int] = {}
    for _, kinds in flagged:
        for k in kinds:
            kind_counts[k] = kind_counts.get(k, 0) + 1
    # What most images share is the nature of the data set, not a problem with some items.
    common = {k for k, c in kind_counts.items() if c > 0.5 * n}
    notes = {"small": f"most images are smaller than {SMALL_IMAGE_SIDE} px (median side "
                      f"{np.median(sides) if sides else 0:.0f}): the backbone sees them upscaled",
             "large": f"most images are larger than {LARGE_IMAGE_SIDE} px: decoding dominates the cost",
             "aspect": "most images have an extreme aspect ratio: centre crops drop much of each",
             "mode": "most images are not RGB: they are converted for the backbone"}
    findings = [Finding([i], float(len(rare)), "; ".join(rare.values()))
                for i, kinds in flagged if (rare := {k: v for k, v in kinds.items() if k not in common})]
    stats = {"modes": modes, "min_side_median": float(np.median(sides)) if sides else None,
             "dataset_notes": [notes[k] for k in sorted(common)]}
    mode_text = "modes " + ", ".join(f"{m} ({c})" for m, c in sorted(modes.items()))
    if not findings:
        if common:
            return Outcome("info", "; ".join(stats["dataset_notes"]) + f"; {mode_text}", stats=stats)
        return Outcome("ok", mode_text, stats=stats)
    severity = "warning" if len(findings) > 0.01 * n else "info"
    return Outcome(severity, f"{len(findings)} images differ in size, shape or mode from the rest ({mode_text})",
                   findings, stats,
                   "Mixed modes are converted to RGB automatically (check that transparent backgrounds "
                   "become what you expect); resize or crop extreme images before training.")
