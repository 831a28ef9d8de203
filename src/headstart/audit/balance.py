"""Class balance: counts per class and split, the imbalance ratio, classes too small to use."""

from __future__ import annotations

from collections import Counter

from headstart.audit.base import AuditContext, Finding, Outcome, register

MIN_TO_SPLIT = 3       # one each for train / val / test
MIN_TO_LEARN = 10      # below this per class, any estimate of that class is a guess
IMBALANCE_WARN = 3.0   # largest / smallest class


@register("class-balance", "Class balance",
          "Examples per class (and per split): the imbalance ratio, and classes too small to split or to learn.",
          needs_labels=True)
def class_balance(ctx: AuditContext) -> Outcome:
    labels = [str(v) for v in ctx.data.labels]
    counts = Counter(labels)
    if not counts:
        return Outcome("severe", "no labeled items", remedy="Add labeled examples.")
    largest, smallest = max(counts.values()), min(counts.values())
    ratio = largest / smallest
    per_split: dict[str, dict[str, int]] = {}
    if ctx.data.splits is not None:
        for split in ("train", "val", "test"):
            c = Counter(lab for lab, s in zip(labels, ctx.data.splits) if s == split)
            if c:
                per_split[split] = {k: c.get(k, 0) for k in sorted(counts)}
    stats = {"counts": dict(sorted(counts.items())), "ratio": ratio, "n_classes": len(counts),
             "per_split": per_split}
    findings: list[Finding] = []
    severe = []
    if len(counts) < 2:
        severe.append(f"only one class ({next(iter(counts))!r})")
    for cls, n in sorted(counts.items(), key=lambda kv: kv[1]):
        members = [i for i, lab in enumerate(labels) if lab == cls]
        if n < MIN_TO_SPLIT and ctx.data.splits is None:
            severe.append(f"class {cls!r} has {n} (needs {MIN_TO_SPLIT} to split)")
            findings.append(Finding(members, float(MIN_TO_LEARN - n), f"class {cls!r}: {n} examples, too few to split"))
        elif n < MIN_TO_LEARN:
            findings.append(Finding(members, float(MIN_TO_LEARN - n), f"class {cls!r}: {n} examples, too few to learn reliably"))
    train = per_split.get("train")
    if train:
        for cls, n in train.items():
            if n == 0:
                severe.append(f"class {cls!r} has no training example")
                findings.append(Finding([i for i, lab in enumerate(labels) if lab == cls], float(MIN_TO_LEARN),
                                        f"class {cls!r}: no training example"))
    for split in ("val", "test"):
        if split in per_split:
            missing = [cls for cls, n in per_split[split].items() if n == 0]
            if missing:
                findings.append(Finding([], 1.0, f"{split} split has no example of {', '.join(map(repr, missing))}",
                                        [f"{split} split"]))
    remedy = ("With imbalance, use --class-weight balanced (or --loss focal for fine-tuning); splits are "
              "stratified by class automatically, and the report shows balanced accuracy and macro-F1. "
              "Collect more examples of the small classes if you can.")
    summary = f"{len(counts)} classes, {smallest}–{largest} examples each (ratio {ratio:.1f})"
    if severe:
        return Outcome("severe", summary + "; " + "; ".join(severe), findings, stats, remedy)
    if ratio >= IMBALANCE_WARN or findings:
        return Outcome("warning", summary, findings, stats, remedy)
    return Outcome("ok", summary, findings, stats)
