"""``contrastive``: SetFit-style few-shot text classification.

Step 1 fine-tunes the sentence encoder on generated pairs: two texts with the same label
should embed close (cosine 1), two with different labels apart (cosine 0). Step 2 fits the
linear probe on the adapted embeddings. With 8 examples per class this often beats a probe
on the frozen encoder, because step 1 sees every pair of examples, not just every example.

SetFit's defaults (20 pair iterations per example, 256 tokens) take about an hour on two CPU
cores for 128 texts; here the number of pairs is capped (``max_pairs``) and pair training
reads at most ``pair_max_length`` tokens, which keeps a run to minutes.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
import torch.nn.functional as F

from headstart.backbones.base import Backbone, move_to
from headstart.data.dataset import Dataset
from headstart.errors import ConfigError
from headstart.strategies.base import FitContext, FittedModel, Strategy, register_strategy
from headstart.strategies.linear_probe import LinearProbe
from headstart.training import checkpoint as ckpt
from headstart.training.optim import make_scheduler, param_groups

logger = logging.getLogger(__name__)


def make_pairs(labels: list[Any], n_iterations: int, max_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """Balanced positive (same label, 1.0) and negative (different label, 0.0) index pairs."""
    rng = random.Random(seed)
    by_label: dict[Any, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    pairs = []
    for _ in range(n_iterations):
        for i, label in enumerate(labels):
            same = [j for j in by_label[label] if j != i] or [i]
            other = [j for lab, idx in by_label.items() if lab != label for j in idx]
            pairs.append((i, rng.choice(same), 1.0))
            pairs.append((i, rng.choice(other), 0.0))
    rng.shuffle(pairs)
    return pairs[:max_pairs]


@register_strategy
class Contrastive(Strategy):
    """Contrastive pair fine-tuning of a text encoder, then a linear probe.

    Args:
        n_iterations: pairs generated per example and per kind (positive/negative).
        max_pairs: cap on the number of pairs trained on.
        pair_max_length: tokens read per text during pair training.
        lr: encoder learning rate.
        batch_size: pairs per step.
        pair_epochs: passes over the pairs.
        warmup: fraction of steps warming up.
    """

    name = "contrastive"
    description = "SetFit-style: fine-tune the sentence encoder on same/different-label pairs, then a linear probe."

    def __init__(self, n_iterations: int = 20, max_pairs: int = 640, pair_max_length: int = 128, lr: float = 2e-5,
                 batch_size: int = 16, pair_epochs: int = 1, warmup: float = 0.1) -> None:
        if min(n_iterations, max_pairs, pair_max_length, batch_size, pair_epochs) < 1:
            raise ConfigError("n_iterations, max_pairs, pair_max_length, batch_size and pair_epochs must be >= 1.")
        super().__init__(n_iterations=n_iterations, max_pairs=max_pairs, pair_max_length=pair_max_length, lr=lr,
                         batch_size=batch_size, pair_epochs=pair_epochs, warmup=warmup)

    def fit(self, backbone: Backbone, train: Dataset, val: Dataset | None, context: FitContext) -> FittedModel:
        if backbone.spec.modality != "text":
            raise ConfigError(f"the contrastive strategy is for text; {backbone.spec.name} takes "
                              f"{backbone.spec.modality}. Use partial, full, progressive or lora.")
        from headstart.data.dataset import concat

        data = concat(train, val) if val is not None and len(val) else train
        labels = data.require_labels("the contrastive strategy")
        pairs = make_pairs(labels, self.params["n_iterations"], self.params["max_pairs"], context.seed)
        resumed = context.resume and context.run_dir is not None and ckpt.has_checkpoint(context.run_dir)
        if resumed:
            backbone.load_state_dict(ckpt.load_checkpoint(context.run_dir)["model"])
            losses: list[float] = []
        else:
            losses = self._train_pairs(backbone, data.items, pairs, context)
            if context.run_dir is not None:
                ckpt.save_checkpoint(context.run_dir, model_state=backbone.state_dict(), best_state=None,
                                     optimizer_state={}, state={"phase": {"phase": "pairs-done"}, "rng": ckpt.rng_state()})
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        embed = context.embed_with or (lambda _b, ds: context.embed(ds))
        probe_context = FitContext(embed=lambda ds: embed(backbone, ds), seed=context.seed, device=context.device)
        probe = LinearProbe().fit(backbone, data, None, probe_context)
        details = {"n_pairs": len(pairs), "pair_loss_first": losses[0] if losses else None,
                   "pair_loss_last": losses[-1] if losses else None, "resumed_after_pair_training": resumed,
                   "C": probe.details["C"], "n_train": len(data)}
        return FittedModel(backbone=backbone, head=probe.head, classes=probe.classes, strategy=self.name,
                           params=dict(self.params), details=details, backbone_changed=True)

    def _train_pairs(self, backbone: Backbone, items: list[str], pairs: list[tuple[int, int, float]],
                     context: FitContext) -> list[float]:
        p = self.params
        device = context.device
        backbone.to(device)
        named = [(n, q) for n, q in backbone.named_parameters()]
        for _, q in named:
            q.requires_grad_(True)
        optimizer = torch.optim.AdamW(param_groups([("encoder", named, p["lr"])], 0.01))
        batches = [pairs[i:i + p["batch_size"]] for i in range(0, len(pairs), p["batch_size"])]
        scheduler = make_scheduler(optimizer, "cosine", len(batches) * p["pair_epochs"], p["warmup"])
        saved_max = backbone.max_length
        backbone.max_length = min(saved_max, p["pair_max_length"])
        losses = []
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(context.seed)
                backbone.train()
                for epoch in range(p["pair_epochs"]):
                    for step, batch in enumerate(batches):
                        texts = [items[i] for i, _, _ in batch] + [items[j] for _, j, _ in batch]
                        emb = backbone.forward_features(move_to(backbone.preprocess(texts), device))
                        a, b = emb[: len(batch)], emb[len(batch):]
                        target = torch.tensor([t for _, _, t in batch], device=device)
                        loss = F.mse_loss(F.cosine_similarity(a, b), target)
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 1.0)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        losses.append(float(loss.detach()))
                        for fn in context.callbacks.get("on_batch_end", []):
                            fn({"epoch": epoch, "step": step, "steps": len(batches), "loss": losses[-1]})
        finally:
            backbone.max_length = saved_max
            backbone.eval()
        return losses
