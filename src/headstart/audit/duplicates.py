"""Exact and near duplicates, duplicates with conflicting labels, and leakage across splits."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from headstart.audit.base import AuditContext, Finding, Outcome, n_of, register
from headstart.audit.integrity import item_info
from headstart.audit.neighbors import Neighbours, components, nearest, similar_pairs
from headstart.data.splits import parse_times  # the split by --time-col orders items the same way
from headstart.modalities import get_modality

N_NEIGHBOURS = 10
# A pair found by the embedding search counts as a near duplicate only if the modality agrees
# that the two items hold the same content (Modality.same_content): text embeddings see only the
# first few hundred tokens (256 for MiniLM), and e-mails from one mailing list share those
# headers and embed almost identically, so texts must also share 60% of their 3-word shingles
# (headstart.modalities.text.SHINGLE_JACCARD).
# A near duplicate must also be at most half as far as the 10th nearest item (Lowe's ratio
# test): on 5,000 MNIST digits this drops half of the pairs of distinct, look-alike ones at
# 0.97 (384 → 196) and keeps every planted copy that the threshold alone finds.
NEAR_RATIO = 0.5
# Cross-split pairs this similar are leakage for certain (severe); below, possible leakage
# to review (warning).
SURE_LEAK = 0.99
# Images are also compared by their 16×16 thumbnails (mean removed), with the same threshold:
# a backbone's features blur a resized copy with other items of its class (on 28-px animal
# silhouettes copies scored 0.91-0.96, the median nearest distinct item 0.91), thumbnails do
# not. Measured on the 1,591 distinct silhouettes at 0.97: 100% of upscaled, JPEG q60 and q85
# copies found, 81% of copies downscaled to 20 px; 34 distinct items (2.1%) have a neighbour
# that close, alike 28-px shapes of one animal. Photos differ far more.


def exact_groups(ctx: AuditContext) -> list[list[int]]:
    """Items with identical content (sha256 of the file bytes or text)."""

    def compute() -> list[list[int]]:
        by_hash: dict[str, list[int]] = defaultdict(list)
        for i, h in enumerate(ctx.data.item_hashes()):
            by_hash[h].append(i)
        return sorted((g for g in by_hash.values() if len(g) > 1), key=lambda g: g[0])

    return ctx.once("exact_groups", compute)


def neighbours(ctx: AuditContext) -> Neighbours:
    """Nearest neighbours among the readable items; indices are rows of ``ctx.features``
    (``ctx.readable[row]`` is the dataset index)."""
    return ctx.once("neighbours", lambda: nearest(ctx.features, k=N_NEIGHBOURS, seed=ctx.seed))


def near_pairs(ctx: AuditContext) -> list[tuple[int, int, float, str]]:
    """Pairs ``(i, j, similarity, how)`` that are near duplicates but not byte-identical, found by
    what the data's modality offers (:class:`~headstart.modalities.base.Modality`):

    - equal :meth:`~headstart.modalities.base.Modality.near_key` (texts: the same up to case and
      whitespace; found without a model), ``how`` = ``near_key_how`` (``"normalised text"``);
    - close ``"fingerprint"`` vectors from :meth:`~headstart.modalities.base.Modality.inspect`
      (images: 16×16 thumbnails, resized or re-encoded copies; found without a model, only with
      ``ctx.pixel_search``), ``how`` = ``near_fingerprint_how`` (``"pixel"``);
    - ``"embedding"``: cosine similarity of the backbone's features ≥ the threshold, kept when
      :meth:`~headstart.modalities.base.Modality.same_content` agrees (texts: shared shingles).
    """

    def compute() -> list[tuple[int, int, float, str]]:
        modality = get_modality(ctx.data.modality)
        hashes = ctx.data.item_hashes()
        found: dict[tuple[int, int], tuple[float, str]] = {}
        by_key: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(ctx.data.items):
            key = modality.near_key(item)
            if key is not None:
                by_key[key].append(i)
        for group in by_key.values():
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    i, j = group[a], group[b]
                    if hashes[i] != hashes[j]:
                        found[(i, j)] = (1.0, modality.near_key_how)
        if ctx.pixel_search:
            infos = item_info(ctx)
            rows = np.array([i for i, info in enumerate(infos) if info.get("fingerprint") is not None],
                            dtype=np.int64)
            if len(rows) > 1:
                prints = np.stack([infos[i]["fingerprint"] for i in rows])
                for r, q, sim in similar_pairs(nearest(prints, k=N_NEIGHBOURS, seed=ctx.seed), ctx.near_threshold,
                                              NEAR_RATIO):
                    i, j = sorted((int(rows[r]), int(rows[q])))
                    if hashes[i] != hashes[j] and not ((i, j) in found and found[(i, j)][0] >= sim):
                        found[(i, j)] = (sim, modality.near_fingerprint_how)
        if ctx.features is not None:
            for r, q, sim in similar_pairs(neighbours(ctx), ctx.near_threshold, NEAR_RATIO):
                i, j = sorted((int(ctx.readable[r]), int(ctx.readable[q])))
                if hashes[i] == hashes[j] or ((i, j) in found and found[(i, j)][0] >= sim):
                    continue
                if not modality.same_content(ctx.data.items[i], ctx.data.items[j]):
                    continue  # same opening, different content
                found[(i, j)] = (sim, "embedding")
        return sorted(((i, j, s, how) for (i, j), (s, how) in found.items()), key=lambda t: (-t[2], t[0], t[1]))

    return ctx.once("near_pairs", compute)


def _label_text(ctx: AuditContext, items: list[int]) -> str:
    if ctx.data.labels is None:
        return ""
    labels = sorted({str(ctx.label_of(i)) for i in items})
    return f"; labels {', '.join(labels)}" if len(labels) > 1 else f"; label {labels[0]}"


@register("exact-duplicates", "Exact duplicates",
          "Items whose content is byte-for-byte identical (sha256).")
def exact_duplicates(ctx: AuditContext) -> Outcome:
    groups = exact_groups(ctx)
    if not groups:
        return Outcome("ok", "no exact duplicates")
    extra = sum(len(g) - 1 for g in groups)
    findings = [Finding(g, float(len(g)), f"{len(g)} copies: " + " = ".join(ctx.where(i) for i in g[:4])
                        + (" …" if len(g) > 4 else "") + _label_text(ctx, g)) for g in groups]
    findings.sort(key=lambda f: -f.score)
    return Outcome("warning", f"{n_of(len(groups), 'group')} of identical items ({n_of(extra, 'redundant copy', 'redundant copies')})", findings,
                   {"n_groups": len(groups), "n_redundant": extra},
                   "Keep one copy of each: duplicates weigh those items twice in training and, across "
                   "splits, leak answers into evaluation (see `leakage`).")


@register("near-duplicates", "Near duplicates",
          "Items that are almost the same: texts equal up to case and whitespace; images whose 16×16 "
          "thumbnails (resized or re-encoded copies) or embeddings have a cosine similarity at or above "
          "the threshold (texts must also share 60% of their 3-word shingles).")
def near_duplicates(ctx: AuditContext) -> Outcome:
    pairs = near_pairs(ctx)
    without = get_modality(ctx.data.modality).near_without_backbone
    partial = ("" if ctx.features is not None else f" ({without}: no backbone ran)" if without
               else " (no backbone ran: nothing searched)")
    stats = {"threshold": ctx.near_threshold, "n_pairs": len(pairs)}
    if ctx.features is not None:
        stats["search"] = neighbours(ctx).method
    if not pairs:
        return Outcome("ok", f"no near duplicates{partial}", stats=stats)
    groups = components(len(ctx.data), [(i, j, s) for i, j, s, _ in pairs])
    findings = [Finding([i, j], s, f"{how} similarity {s:.3f}: {ctx.where(i)} ≈ {ctx.where(j)}"
                        + _label_text(ctx, [i, j])) for i, j, s, how in pairs]
    stats["n_groups"] = len(groups)
    return Outcome("warning", f"{n_of(len(pairs), 'near-duplicate pair')} in {n_of(len(groups), 'group')}{partial}", findings,
                   stats, "Review the pairs: keep one of each, or pass --near-threshold higher if these are "
                   "genuinely different items.")


def duplicate_groups(ctx: AuditContext) -> list[list[int]]:
    """Exact and near duplicates merged into groups."""
    pairs = [(g[0], j, 1.0) for g in exact_groups(ctx) for j in g[1:]]
    pairs += [(i, j, s) for i, j, s, _ in near_pairs(ctx)]
    return components(len(ctx.data), pairs)


@register("conflicting-labels", "Duplicates with conflicting labels",
          "Exact or near duplicates that carry different labels: at least one of them is wrong.",
          needs_labels=True)
def conflicting_labels(ctx: AuditContext) -> Outcome:
    findings = []
    for g in duplicate_groups(ctx):
        labels = Counter(str(ctx.label_of(i)) for i in g)
        if len(labels) > 1:
            findings.append(Finding(g, float(len(labels)), " vs ".join(
                f"{ctx.where(i)} [{ctx.label_of(i)}]" for i in g[:4]) + (" …" if len(g) > 4 else "")))
    if not findings:
        return Outcome("ok", "no duplicates disagree on their label")
    return Outcome("warning", f"{n_of(len(findings), 'duplicate group')} disagree{'s' if len(findings) == 1 else ''} on the label", findings,
                   {"n_groups": len(findings)},
                   "Decide the right label for each group and keep one copy.")


@register("leakage", "Leakage across splits",
          "Exact or near duplicates that sit in different splits: the model is tested on what it trained on.")
def leakage(ctx: AuditContext) -> Outcome:
    if ctx.data.splits is None:
        return Outcome("skipped", "the data has no split (headstart fit keeps identical items in one split)")
    findings = []
    for g in exact_groups(ctx):
        if len({ctx.split_of(i) for i in g}) > 1:
            findings.append(Finding(g, 1.0, "identical: " + " = ".join(ctx.where(i) for i in g[:4])))
    n_exact = len(findings)
    for i, j, s, how in near_pairs(ctx):
        if ctx.split_of(i) != ctx.split_of(j):
            findings.append(Finding([i, j], s, f"{how} similarity {s:.3f}: {ctx.where(i)} ≈ {ctx.where(j)}"))
    stats: dict[str, Any] = {"exact_only": ctx.features is None, "n_exact": n_exact,
                             "n_near": len(findings) - n_exact}
    if not findings:
        return Outcome("ok", "no duplicates across splits" + (" (exact only: no backbone ran)"
                                                             if ctx.features is None else ""), stats=stats)
    findings.sort(key=lambda f: -f.score)
    crossing = Counter("/".join(sorted({ctx.split_of(i) for i in f.items})) for f in findings)
    stats["by_splits"] = dict(crossing)
    in_eval = {i for f in findings for i in f.items if ctx.split_of(i) in ("val", "test")}
    stats["n_eval_items_leaked"] = len(in_eval)
    sure = sum(f.score >= SURE_LEAK for f in findings)
    parts = [n_of(n_exact, "identical copy", "identical copies")] if n_exact else []
    if len(findings) > n_exact:
        parts.append(n_of(len(findings) - n_exact, "near-duplicate pair"))
    where = ", ".join(f"{k}: {v}" for k, v in sorted(crossing.items()))
    remedy = ("Remove the evaluation copies (or move them to the same split as their twin); "
              "`headstart fit` stops on identical copies unless --allow-leakage.")
    if sure:
        return Outcome("severe", f"{' and '.join(parts)} across splits ({where})", findings, stats, remedy)
    return Outcome("warning", f"possible leakage: {' and '.join(parts)} across splits ({where}), similarity "
                   f"below {SURE_LEAK}: review them", findings, stats,
                   "Look at the pairs: if they are the same item (resized, re-encoded, edited), remove the "
                   "evaluation copy; if they are distinct look-alikes, pass a higher --near-threshold.")


@register("group-leakage", "Group overlap across splits",
          "With --group-col: the same group (patient, user, device...) appears in more than one split.")
def group_leakage(ctx: AuditContext) -> Outcome:
    if ctx.groups is None:
        return Outcome("skipped", "no --group-col given")
    if ctx.data.splits is None:
        return Outcome("skipped", "the data has no split")
    by_group: dict[Any, list[int]] = defaultdict(list)
    for i, g in enumerate(ctx.groups):
        if g is not None:
            by_group[g].append(i)
    findings = []
    for g, members in by_group.items():
        splits = Counter(ctx.split_of(i) for i in members)
        if len(splits) > 1:
            findings.append(Finding(members, float(len(members)), f"group {g!r} in " + ", ".join(
                f"{s} ({n})" for s, n in sorted(splits.items()))))
    stats = {"n_groups": len(by_group), "n_shared": len(findings)}
    if not findings:
        return Outcome("ok", f"{len(by_group)} groups, each in one split", stats=stats)
    findings.sort(key=lambda f: -f.score)
    return Outcome("severe", f"{len(findings)} of {n_of(len(by_group), 'group')} appear in more than one split", findings,
                   stats, "Split by group so each group sits in exactly one split (all its items together).")


@register("time-leakage", "Time overlap across splits",
          "With --time-col: evaluation items older than the newest training item (the model sees the future).")
def time_leakage(ctx: AuditContext) -> Outcome:
    if ctx.times is None:
        return Outcome("skipped", "no --time-col given")
    if ctx.data.splits is None:
        return Outcome("skipped", "the data has no split")
    times = parse_times(list(ctx.times))
    splits = np.array(ctx.data.splits)
    usable = ~np.isnan(times)
    in_train = np.flatnonzero((splits == "train") & usable)
    if not len(in_train):
        return Outcome("skipped", "no training item has a usable time")
    newest_at = int(in_train[np.argmax(times[in_train])])
    newest, newest_text = times[newest_at], ctx.times[newest_at]
    findings = []
    ranges = {}
    for split in ("train", "val", "test"):
        part = np.flatnonzero((splits == split) & usable)
        if len(part):
            ranges[split] = [str(ctx.times[int(part[np.argmin(times[part])])]),
                             str(ctx.times[int(part[np.argmax(times[part])])])]
        if split == "train":
            continue
        for i in part[times[part] < newest]:
            findings.append(Finding([int(i)], 1.0, f"{split} item at {ctx.times[i]} is older than the newest "
                                    f"training item ({newest_text})"))
    unparsed = int((~usable).sum()) - sum(v is None for v in ctx.times)
    stats = {"ranges": ranges, "n_unparsed": unparsed}
    if not findings:
        return Outcome("ok", "every evaluation item is newer than all training items", stats=stats)
    return Outcome("severe", f"{n_of(len(findings), 'evaluation item')} predate{'s' if len(findings) == 1 else ''} the newest training item", findings, stats,
                   "Split by time: train on the past, validate and test on what comes after it.")
