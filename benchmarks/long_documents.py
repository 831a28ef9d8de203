"""Long documents: does reading every window of a text (not only its first ``max_length`` tokens) pay?

Issue 15. On two data sets whose texts run far past MiniLM's 256-token window, this compares
linear probes on features pooled over a text's windows against the first window alone:

- ``spam-assassin`` (spam vs ham; raw e-mails whose first 256 tokens are mostly headers): a fixed,
  stratified test set of ``--spam-test`` e-mails (seed 12345); training e-mails are drawn from the
  rest.
- ``state-of-the-union`` (3 eras): grouped by president (random splits leak the speaker): in each
  era, presidents in a fixed shuffled order (seed 12345) go to the test set until it holds a third
  of the era's speeches; training speeches are drawn from the other presidents.

Per seed (``--seeds``) and labels per class (16, 32), the training texts are a seeded sample of
that many per class (the 16 are the first 16 of the 32), and the probe is scikit-learn's
``StandardScaler`` + ``LogisticRegression(C=1.0)`` on the features; accuracy on the fixed test set.

Windows are the backbone's own (:meth:`headstart.backbones.text.HFTextBackbone`): ``max_length``
tokens with special tokens, consecutive windows overlapping by a quarter of their content tokens.
Every window of a text that any compared variant reads (the first 32, and 16 or 32 spread evenly
over the whole text) is embedded once (MiniLM, mask-aware mean of token states, not normalised)
and kept in ``--work`` (an ``.npz`` per data set, reused by later runs); the variants are then
pooled from those vectors:

- ``first-window``: window 0, L2-normalised: exactly today's one-window feature.
- ``mean``: mean of the windows' raw pooled vectors, then L2-normalised (the library's pooling).
- ``mean-of-normalised``: mean of L2-normalised window vectors, normalised again.
- ``max``: element-wise max over L2-normalised window vectors.
- ``max-raw``: element-wise max over the raw window vectors, then L2-normalised.
- ``mean+first``: ``mean`` concatenated with ``first-window`` (twice the dimensions).
each with the cap on windows taken as the first N windows (``first``), N spread evenly over the
first ``WINDOW_SPAN × N`` windows (``spread-span``: the library's rule) or N spread evenly from the
first to the last window (``spread``), N = 16 and 32.

Run from the repository root (about 10k windows of 256 tokens: ~50 minutes on 2 busy CPU cores)::

    python benchmarks/long_documents.py --json benchmarks/results/long-documents.json
    python benchmarks/long_documents.py --speed   # extraction seconds: one window vs the default
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("HEADSTART_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
CAPS = (16, 32)
SHOTS = (16, 32)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def spam_split(rows: list[dict], n_test: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(12345)
    test: list[int] = []
    labels = sorted({r["label"] for r in rows})
    for label in labels:
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        share = round(n_test * len(idx) / len(rows))
        test += rng.choice(idx, size=share, replace=False).tolist()
    test_set = set(test)
    return sorted(test), [i for i in range(len(rows)) if i not in test_set]


def sotu_split(rows: list[dict]) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(12345)
    test: list[int] = []
    for label in sorted({r["label"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        presidents = sorted({rows[i]["president"] for i in idx})
        rng.shuffle(presidents)
        chosen: list[int] = []
        for p in presidents:
            if len(chosen) >= len(idx) / 3:
                break
            chosen += [i for i in idx if rows[i]["president"] == p]
        test += chosen
    test_set = set(test)
    return sorted(test), [i for i in range(len(rows)) if i not in test_set]


def train_samples(rows: list[dict], pool: list[int], seeds: list[int]) -> dict[int, list[int]]:
    """Per seed, 32 training items per class (in sampled order: the first 16 are the 16-shot sample)."""
    out = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        picked: list[int] = []
        for label in sorted({rows[i]["label"] for i in pool}):
            idx = [i for i in pool if rows[i]["label"] == label]
            picked += rng.choice(idx, size=max(SHOTS), replace=False).tolist()
        out[seed] = picked
    return out


SELECTIONS = ("first", "spread-span", "spread")


def select(n: int, cap: int, how: str) -> list[int]:
    """Window indices read: the library's rule (:func:`select_windows`) with a span of ``cap``
    (``first``), ``WINDOW_SPAN × cap`` (``spread-span``, the library's default) or all windows."""
    from headstart.backbones.text import WINDOW_SPAN
    from headstart.data.long_texts import select_windows

    span = {"first": cap, "spread-span": WINDOW_SPAN * cap, "spread": n}[how]
    return select_windows([0] * n, 1, cap, span)[0]


def embed_windows(backbone, texts: list[str], work: Path, name: str) -> dict[int, dict]:
    """Per text (by position): n windows, and the raw pooled vector and token count of every window
    any variant reads. Kept in ``work/name.npz``; a later run embeds only the windows it lacks."""
    import torch

    path = work / f"{name}.npz"
    rows = {"text": [], "window": [], "n": [], "tokens": [], "vectors": []}
    done: set[tuple[int, int]] = set()
    if path.is_file():
        z = np.load(path)
        rows = {k: list(z[k]) for k in rows}
        done = {(int(t), int(w)) for t, w in zip(z["text"], z["window"])}
    tok = backbone.tokenizer.backend_tokenizer
    tok.enable_truncation(backbone.max_length, stride=backbone.window_overlap)
    tok.no_padding()
    jobs = []  # (text, window, n, ids, types)
    for t, text in enumerate(texts):
        enc = tok.encode(text)
        windows = [enc, *enc.overflowing]
        need = sorted({w for cap in CAPS for how in SELECTIONS for w in select(len(windows), cap, how)})
        jobs += [(t, w, len(windows), windows[w].ids, windows[w].type_ids) for w in need if (t, w) not in done]
    print(f"{name}: {len(texts)} texts, {len(jobs)} windows to embed", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(jobs), 32):
            chunk = jobs[s:s + 32]
            width = max(len(j[3]) for j in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            types = torch.zeros_like(ids)
            mask = torch.zeros_like(ids)
            for r, j in enumerate(chunk):
                ids[r, :len(j[3])] = torch.tensor(j[3])
                types[r, :len(j[4])] = torch.tensor(j[4])
                mask[r, :len(j[3])] = 1
            vectors = backbone.window_vectors({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            for j, v, m in zip(chunk, vectors.numpy(), mask.sum(1).tolist()):
                for key, value in zip(rows, (j[0], j[1], j[2], m, v)):
                    rows[key].append(value)
            if s % 640 == 0:
                print(f"  {s + len(chunk)}/{len(jobs)} windows, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
    if jobs:
        np.savez(path, **{k: np.asarray(v) for k, v in rows.items()})
    out: dict[int, dict] = {}
    for t, w, n, k, v in zip(*(rows[k] for k in rows)):
        entry = out.setdefault(int(t), {"n": int(n), "vectors": {}, "tokens": {}})
        entry["vectors"][int(w)] = np.asarray(v)
        entry["tokens"][int(w)] = int(k)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def features(entry: dict, variant: str, cap: int, how: str) -> np.ndarray:
    if variant == "first-window":
        return _unit(entry["vectors"][0])
    chosen = np.stack([entry["vectors"][w] for w in select(entry["n"], cap, how)])
    if variant == "mean":
        return _unit(chosen.mean(0))
    if variant == "mean-of-normalised":
        return _unit(_unit(chosen).mean(0))
    if variant == "max":
        return _unit(chosen).max(0)
    if variant == "max-raw":
        return _unit(chosen.max(0))
    if variant == "mean+first":
        return np.concatenate([_unit(chosen.mean(0)), _unit(entry["vectors"][0])])
    raise ValueError(variant)


def probe_accuracy(x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    clf.fit(x_train, y_train)
    return float((clf.predict(x_test) == y_test).mean())


def evaluate(rows, windows, test, samples) -> dict:
    labels = np.array([r["label"] for r in rows])
    variants = [("first-window", 1, "first")] + [(v, cap, how) for v in ("mean", "mean-of-normalised", "max",
                                                                      "max-raw", "mean+first")
                                                 for how in SELECTIONS for cap in CAPS]
    out = {}
    for variant, cap, how in variants:
        key = variant if variant == "first-window" else f"{variant}/{how}-{cap}"
        x = {i: features(windows[i], variant, cap, how) for i in windows}
        x_test = np.stack([x[i] for i in test])
        out[key] = {}
        for shots in SHOTS:
            accs = []
            for picked in samples.values():
                n_classes = len(picked) // max(SHOTS)
                train = [i for c in range(n_classes) for i in picked[c * max(SHOTS): c * max(SHOTS) + shots]]
                accs.append(probe_accuracy(np.stack([x[i] for i in train]), labels[train], x_test, labels[test]))
            out[key][f"{shots}/class"] = {"mean": float(np.mean(accs)), "sd": float(np.std(accs, ddof=1)),
                                          "per_seed": accs}
    for accs in out.values():  # paired by seed (the same training texts): the gain over one window
        for shots, entry in accs.items():
            gains = np.array(entry["per_seed"]) - np.array(out["first-window"][shots]["per_seed"])
            entry["gain_vs_first_window"] = {"mean": float(gains.mean()), "sd": float(gains.std(ddof=1))}
    return out


def speed(n_short: int, n_long: int) -> dict:
    """Seconds of feature extraction: one window (``windows=1``, the path every text took before
    windows) against the default backbone, sharing one model. Short texts (wordnet glosses, sorted
    by length, batches of 32) alternate between the two batch by batch, so a change in machine load
    hits both alike; long texts (spam-assassin e-mails) are timed through ``embed_batches``."""
    import torch

    from headstart.backbones import create_backbone
    from headstart.features import embed_batches

    default = create_backbone("minilm")
    one = create_backbone("minilm", windows=1)
    one.model = default.model  # the same weights object: only the preprocessing and pooling differ
    glosses = sorted((r["text"] for r in read_jsonl(SHARED / "wordnet-glosses" / "glosses.jsonl")[:n_short]), key=len)
    seconds = {"windows=1": 0.0, f"windows={default.windows}": 0.0}
    same = True
    with torch.inference_mode():
        for k, start in enumerate(range(0, len(glosses), 32)):
            chunk = glosses[start:start + 32]
            out = {}
            for name, backbone in (list(zip(seconds, (one, default))))[:: 1 if k % 2 == 0 else -1]:
                t = time.perf_counter()
                out[name] = backbone.forward_features(backbone.preprocess(chunk))
                seconds[name] += time.perf_counter() - t
            same &= bool(torch.equal(*out.values()))
    emails = [r["text"] for r in read_jsonl(SHARED / "spam-assassin" / "emails.jsonl")[:n_long]]
    long = {}
    for name, backbone in zip(seconds, (one, default)):
        rows = sum(backbone.preprocess([e])["input_ids"].shape[0] for e in emails)
        t = time.perf_counter()
        embed_batches(backbone, emails, batch_size=32, device=torch.device("cpu"))
        long[name] = {"seconds": round(time.perf_counter() - t, 2), "windows_encoded": int(rows)}
    return {"short_texts": {"items": len(glosses), "seconds": {k: round(v, 2) for k, v in seconds.items()},
                            "features_identical": same},
            "long_texts": {"items": len(emails), **long}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--spam-test", type=int, default=300)
    parser.add_argument("--work", type=Path, default=Path("/tmp/headstart-long-documents"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--speed", action="store_true", help="time extraction (one window vs the default) instead")
    args = parser.parse_args()
    if args.speed:
        result = speed(1500, 64)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    from headstart.backbones import create_backbone

    args.work.mkdir(parents=True, exist_ok=True)
    backbone = create_backbone("minilm")
    results = {"backbone": "minilm", "max_length": backbone.max_length, "window_overlap": backbone.window_overlap,
               "probe": "StandardScaler + LogisticRegression(C=1.0)", "seeds": args.seeds, "datasets": {}}
    for name, path, split in (("spam-assassin", SHARED / "spam-assassin" / "emails.jsonl",
                               lambda r: spam_split(r, args.spam_test)),
                              ("state-of-the-union", SHARED / "state-of-the-union" / "speeches.jsonl", sotu_split)):
        rows = read_jsonl(path)
        test, pool = split(rows)
        samples = train_samples(rows, pool, args.seeds)
        used = sorted(set(test).union(*samples.values()))
        embedded = embed_windows(backbone, [rows[i]["text"] for i in used], args.work, name)
        windows = {i: embedded[k] for k, i in enumerate(used)}
        n = np.array([windows[i]["n"] for i in used])
        results["datasets"][name] = {
            "test_items": len(test), "texts_embedded": len(used),
            "windows_per_text": {"median": float(np.median(n)), "p90": float(np.percentile(n, 90)),
                                 "max": int(n.max()), "share_over_one": float((n > 1).mean())},
            "accuracy": evaluate(rows, windows, test, samples),
        }
        for key, accs in results["datasets"][name]["accuracy"].items():
            print(f"{name:20s} {key:30s} " + "  ".join(
                f"{s}: {a['mean']:.3f} ± {a['sd']:.3f} (gain {a['gain_vs_first_window']['mean']:+.3f} ± "
                f"{a['gain_vs_first_window']['sd']:.3f})" for s, a in accs.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
