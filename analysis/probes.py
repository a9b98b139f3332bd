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


def split_images(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of image indices into two halves: ``(fit, held_out)``, each sorted."""
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[: n_images // 2]), np.sort(order[n_images // 2 :])


def local_information(
    tokens: np.ndarray, pixels: np.ndarray, fit: np.ndarray, held_out: np.ndarray, grid_width: int,
    seed: int = 0, max_fit_tokens: int = 8000,
) -> dict[str, np.ndarray]:
    """Position and pixel probes fit on *all* patch tokens of the ``fit`` images, scored on every
    patch token of the ``held_out`` images.

    ``tokens``: ``(B, Np, D)``; ``pixels``: ``(B, Np, P)``. Returns per held-out token
    ``position_correct`` ``(Bh, Np)`` bool and ``pixel_error`` ``(Bh, Np)`` L2 error, so the caller
    can split them by token kind (normal / high-norm) and resample images.
    """
    n_patches = tokens.shape[1]
    positions = np.broadcast_to(np.arange(n_patches), (len(fit), n_patches)).reshape(-1)
    fit_tokens, fit_pixels = tokens[fit].reshape(-1, tokens.shape[-1]), pixels[fit].reshape(-1, pixels.shape[-1])
    if len(fit_tokens) > max_fit_tokens:
        chosen = np.sort(np.random.default_rng(seed).choice(len(fit_tokens), max_fit_tokens, replace=False))
        fit_tokens, fit_pixels, positions = fit_tokens[chosen], fit_pixels[chosen], positions[chosen]
    position = _classifier(seed).fit(fit_tokens, positions)
    pixel = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(fit_tokens, fit_pixels)
    test = tokens[held_out].reshape(-1, tokens.shape[-1])
    correct = position.predict(test) == np.tile(np.arange(n_patches), len(held_out))
    error = np.linalg.norm(pixel.predict(test) - pixels[held_out].reshape(-1, pixels.shape[-1]), axis=1)
    return {"position_correct": correct.reshape(len(held_out), n_patches),
            "pixel_error": error.reshape(len(held_out), n_patches)}


def global_information(
    features: dict[str, np.ndarray], labels: np.ndarray, fit: np.ndarray, held_out: np.ndarray, seed: int = 0,
) -> dict[str, np.ndarray]:
    """Class probes, one per feature kind (``{kind: (B, D)}``, one vector per image), fit on ``fit``
    images and scored on ``held_out`` ones. Returns ``{kind: (Bh,) bool}`` correct predictions."""
    return {kind: _classifier(seed).fit(values[fit], labels[fit]).predict(values[held_out]) == labels[held_out]
            for kind, values in features.items()}
