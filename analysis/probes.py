"""Linear probes of what single tokens know (paper, Table 1). Arrays in, scores out; scikit-learn does the fitting.

* local information: a token's grid position (classification) and its patch's pixels (regression),
  trained on normal tokens, evaluated separately on normal and on high-norm tokens;
* global information: the image's class from one token (CLS, a normal patch, a high-norm patch).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _classifier(seed: int = 0):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def position_probe(
    train_tokens: np.ndarray, train_positions: np.ndarray, test_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    grid_width: int, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Predict a patch's grid index from its token ``(n, D)``.

    Returns ``{set name: {"top1": accuracy, "distance": mean grid distance in patches}}`` for each
    ``(tokens, positions)`` test set. An empty test set scores ``nan``.
    """
    probe = _classifier(seed).fit(train_tokens, train_positions)
    scores = {}
    for name, (tokens, positions) in test_sets.items():
        if len(tokens) == 0:
            scores[name] = {"top1": float("nan"), "distance": float("nan"), "n": 0}
            continue
        predicted = probe.predict(tokens)
        rows, cols = np.divmod(predicted, grid_width)
        true_rows, true_cols = np.divmod(positions, grid_width)
        scores[name] = {
            "top1": float((predicted == positions).mean()),
            "distance": float(np.hypot(rows - true_rows, cols - true_cols).mean()),
            "n": int(len(tokens)),
        }
    return scores


def pixel_probe(
    train_tokens: np.ndarray, train_pixels: np.ndarray, test_sets: dict[str, tuple[np.ndarray, np.ndarray]],
    alpha: float = 1.0,
) -> dict[str, float]:
    """Reconstruct a patch's pixels ``(n, P)`` from its token ``(n, D)`` with ridge regression.

    Returns the mean L2 reconstruction error per test set (``nan`` when empty).
    """
    probe = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(train_tokens, train_pixels)
    errors = {}
    for name, (tokens, pixels) in test_sets.items():
        errors[name] = float(np.linalg.norm(probe.predict(tokens) - pixels, axis=1).mean()) if len(tokens) else float("nan")
    return errors


def class_probe(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray,
    seed: int = 0,
) -> float:
    """Accuracy of a logistic-regression classifier from one feature vector per image."""
    probe = _classifier(seed).fit(train_features, train_labels)
    return float((probe.predict(test_features) == test_labels).mean())


def patch_pixels(images: np.ndarray, patch: int) -> np.ndarray:
    """``(B, 3, H, W)`` → ``(B, Np, 3·patch·patch)``: each patch's pixels in row-major grid order."""
    batch, channels, height, width = images.shape
    h, w = height // patch, width // patch
    blocks = images.reshape(batch, channels, h, patch, w, patch)
    return blocks.transpose(0, 2, 4, 1, 3, 5).reshape(batch, h * w, channels * patch * patch)
