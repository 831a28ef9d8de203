"""Classification heads that sit on a backbone's pooled features."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LinearHead(nn.Module):
    """Standardise features, then one linear layer to class logits.

    Keeping the standardisation inside the head (as buffers) means the bundle, ONNX export
    and predictions all apply exactly what training applied.

    Args:
        in_features: feature size.
        n_classes: number of classes.
    """

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
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
        return self.linear((features - self.feature_mean) / self.feature_scale)

    @classmethod
    def from_sklearn(cls, model: object, mean: np.ndarray, scale: np.ndarray) -> LinearHead:
        """From a fitted scikit-learn ``LogisticRegression`` on standardised features.

        A binary model has one weight row ``w`` giving ``P(class 1) = sigmoid(w·x + b)``; as
        two logits ``[0, w·x + b]`` the softmax is the same probability.
        """
        coef = np.asarray(model.coef_, dtype=np.float32)
        intercept = np.asarray(model.intercept_, dtype=np.float32)
        if coef.shape[0] == 1:
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros(1, np.float32), intercept])
        head = cls(coef.shape[1], coef.shape[0])
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
