"""Classification heads that sit on a backbone's pooled features."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NORMALIZATIONS = ("none", "l2")


class LinearHead(nn.Module):
    """Optionally L2-normalise features, standardise them, then one linear layer to class logits.

    Keeping the feature preprocessing inside the head (the normalisation as a setting the bundle
    records, the standardisation as buffers) means the bundle, ONNX export and predictions all
    apply exactly what training applied.

    Args:
        in_features: feature size.
        n_classes: number of classes.
        normalize: ``"l2"`` scales each feature vector to unit length first; ``"none"`` does not.
    """

    def __init__(self, in_features: int, n_classes: int, normalize: str = "none") -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        self.linear = nn.Linear(in_features, n_classes)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def n_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize == "l2":
            features = nn.functional.normalize(features, dim=1, eps=1e-12)
        return self.linear((features - self.feature_mean) / self.feature_scale)

    def config(self) -> dict[str, object]:
        """What the bundle records to rebuild this head (besides its tensors)."""
        return {"type": "linear", "in_features": self.in_features, "n_classes": self.n_classes,
                "normalize": self.normalize, "standardize": True, "output": "softmax"}

    @classmethod
    def from_sklearn(cls, model: object, mean: np.ndarray, scale: np.ndarray, *, normalize: str = "none",
                     temperature: float = 1.0) -> LinearHead:
        """From a fitted scikit-learn ``LogisticRegression`` on (normalised,) standardised features.

        A binary model has one weight row ``w`` giving ``P(class 1) = sigmoid(w·x + b)``; as
        two logits ``[0, w·x + b]`` the softmax is the same probability. A calibration
        ``temperature`` divides the logits, so it is folded into the weights and bias.
        """
        coef = np.asarray(model.coef_, dtype=np.float64) / temperature
        intercept = np.asarray(model.intercept_, dtype=np.float64) / temperature
        if coef.shape[0] == 1:
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros(1), intercept])
        coef, intercept = coef.astype(np.float32), intercept.astype(np.float32)
        head = cls(coef.shape[1], coef.shape[0], normalize=normalize)
        with torch.no_grad():
            head.linear.weight.copy_(torch.from_numpy(coef))
            head.linear.bias.copy_(torch.from_numpy(intercept))
            head.feature_mean.copy_(torch.from_numpy(np.asarray(mean, np.float32)))
            head.feature_scale.copy_(torch.from_numpy(np.asarray(scale, np.float32)))
        return head

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for a feature matrix (float64 so rows sum to 1 tightly)."""
        with torch.inference_mode():
            logits = self(torch.from_numpy(np.asarray(features, np.float32)).to(self.linear.weight.device))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()
