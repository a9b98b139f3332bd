"""Linear probes of what single tokens know (paper, Table 1). Arrays in, scores out; torch does the fitting.

* local information: a token's grid position (classification) and its patch's pixels (regression), fit on
  *all* patch tokens of the fit images (normal and high-norm alike) and scored on every patch token of the
  held-out images, so the caller can compare normal with high-norm tokens;
* global information: the image's class from one token (CLS, a normal patch, a high-norm patch).

Every probe sees tokens standardised with the fit set's mean and standard deviation (scikit-learn's
``StandardScaler``). The classifiers are multinomial softmax regressions minimising

    mean cross-entropy + ||W||² / (2·C·n),   C = 1, n fit tokens, intercept not penalised,

which is scikit-learn's ``LogisticRegression(C=1.0)`` objective (``C·Σ loss + ½||W||²``) divided by ``C·n``;
with two classes it is, as there, one logistic output. The problem is convex, so L-BFGS from zero weights
(float32, on the caller's ``device``, in whitened coordinates: see :func:`fit_softmax`) heads for its unique
optimum and stops near it (every gradient entry below :data:`RELATIVE_TOLERANCE` of its starting size): no seed
is involved. The pixel probe is ridge regression
(``alpha = 1``), solved exactly in closed form (float64).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

#: Inverse L2 strength of the classifiers, as scikit-learn's default ``C``.
C = 1.0
#: L-BFGS stops when no gradient entry (in whitened coordinates) exceeds this fraction of the largest one at
#: the start (zero weights). Relative, because the gradient's scale shrinks with the number of classes (~1/K
#: per entry). Measured on the shipped ViT-Ti at 448 px (784 positions, 3920 fit tokens): on its output tokens
#: (the page's) the fit stops after ~160 evaluations, 2e-6 above the optimum's objective (scikit-learn's fit it
#: replaced stopped 9e-5 above); on its ill-conditioned pre-norm tokens after ~310, 1.4e-4 above (scikit-learn:
#: 1.6e-3).
RELATIVE_TOLERANCE = 1e-3
#: A cap on L-BFGS iterations.
MAX_ITERATIONS = 1000
#: The stopping rule's absolute floor: float32 rounding leaves gradients of ~1e-8 where the optimum is exactly
#: zero weights (tokens that say nothing about balanced labels).
GRADIENT_FLOOR = 1e-7
#: Whitening keeps directions whose singular value exceeds this fraction of the largest (the rank).
RANK_TOLERANCE = 1e-7
#: Ridge penalty of the pixel probe, as scikit-learn's default ``alpha``.
RIDGE_ALPHA = 1.0


def _device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU (as the pages' ``device`` parameter); else the named one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _standardiser(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(D,)`` of fit tokens ``(n, D)`` in float64; a constant feature gets scale 1
    (as ``StandardScaler``) so that it standardises to 0 instead of dividing by zero."""
    tokens = np.asarray(tokens, dtype=np.float64)
    mean, scale = tokens.mean(0), tokens.std(0)
    return mean, np.where(scale > 0, scale, 1.0)


@dataclass(frozen=True)
class SoftmaxProbe:
    """A fitted softmax regression on standardised tokens.

    ``classes`` ``(K,)``: the labels seen in the fit set, sorted; ``mean``, ``scale`` ``(D,)``: the
    standardisation; ``weight`` ``(D, K)`` and ``bias`` ``(K,)`` act on standardised tokens, except with two
    classes: ``(D, 1)`` and ``(1,)``, the logit of ``classes[1]`` against a fixed 0 for ``classes[0]``.
    """

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """``(n, D)`` → ``(n, K)`` float64 logits (two classes: the first column is 0)."""
        scores = ((np.asarray(tokens, dtype=np.float64) - self.mean) / self.scale) @ self.weight + self.bias
        return np.concatenate([np.zeros_like(scores), scores], 1) if len(self.classes) == 2 else scores

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        """``(n, D)`` → ``(n,)`` predicted labels; only classes seen in the fit set can be predicted."""
        return self.classes[self.logits(tokens).argmax(1)]


def _whitened(standardised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whitened coordinates of standardised tokens ``(n, D)`` (float64): ``(centre (D,), whitened (n, r),
    basis (D, r), singular (r,))`` with ``x − centre = whitened · diag(singular / √n) · basisᵀ``, ``basis``
    orthonormal, ``r`` the rank (directions whose singular value is at most :data:`RANK_TOLERANCE` of the
    largest carry no variance, and the penalty sets their weights to zero).

    Each whitened column has mean 0 and variance 1, and the columns are uncorrelated."""
    centre = standardised.mean(0)
    left, singular, right_t = torch.linalg.svd(standardised - centre, full_matrices=False)
    rank = int((singular > RANK_TOLERANCE * singular[:1].clamp(min=torch.finfo(singular.dtype).tiny)).sum())
    return centre, left[:, :rank] * len(standardised) ** 0.5, right_t[:rank].T, singular[:rank]


def _loss_and_residual(scores: torch.Tensor, targets: torch.Tensor, binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``scores`` ``(n, K)`` (binary: ``(n, 1)``, one logistic output) against class
    indices ``targets`` ``(n,)``, and its gradient with respect to the scores, ``(probabilities − one-hot) / n``,
    written into ``scores`` (in place: the scores are the largest array of the fit, and each pass over them
    costs about as much as a matrix product)."""
    n = len(scores)
    if binary:
        label = targets.to(scores.dtype)[:, None]
        loss = (torch.nn.functional.softplus(scores) - label * scores).mean()
        return loss, scores.sigmoid_().sub_(label).div_(n)
    scores.sub_(scores.amax(1, keepdim=True))  # shifted so that exp cannot overflow
    target_score = scores.gather(1, targets[:, None])[:, 0]
    total = scores.exp_().sum(1, keepdim=True)
    loss = (total[:, 0].log() - target_score).mean()
    residual = scores.div_(total * n)
    residual[torch.arange(n, device=scores.device), targets] -= 1.0 / n
    return loss, residual


class ProbeFitError(RuntimeError):
    """A softmax fit that made no progress from zero weights (its numbers would be chance, not a measurement)."""


def fit_softmax(tokens: np.ndarray, labels: np.ndarray, device: str | torch.device = "cpu", c: float = C,
                relative_tolerance: float = RELATIVE_TOLERANCE) -> SoftmaxProbe:
    """Fit a softmax regression on ``tokens`` ``(n, D)`` standardised, to ``labels`` ``(n,)`` (any sortable
    labels: ints, strings), with L-BFGS on ``device`` in float32 from zero weights.

    Minimises mean cross-entropy + ``||W||² / (2·c·n)`` (see the module docstring). At least two classes.

    The fit runs in preconditioned whitened coordinates (:func:`_whitened`): with
    ``W = basis · diag(√n / √(singular² + 1/c)) · U`` and the bias absorbing ``centre · W``, the scores are
    ``whitened · diag(singular / √(singular² + 1/c)) · U + bias'`` and the penalty is
    ``Σ_d ||U_d||² / (2·(1 + c·singular_d²))`` — the same objective and optimum, reparameterised so that every
    direction's curvature is at most about 1 (data) and at least its penalty: L-BFGS neither fights the tokens'
    correlated channels (on real tokens it needs about half the evaluations) nor stalls on a nearly collinear
    pair, whose tiny singular value would otherwise give its penalty a huge curvature. The gradient is written
    out (two matrix products per evaluation), not taped by autograd. A fit that stops above its tolerance warns;
    one that made no progress raises :class:`ProbeFitError`.
    """
    classes, targets = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a classifier needs at least two classes in its fit set, got {len(classes)}")
    target = _device(device)
    mean, scale = _standardiser(tokens)
    standardised = torch.as_tensor((np.asarray(tokens, dtype=np.float64) - mean) / scale, device=target)
    centre, whitened, basis, singular = _whitened(standardised)
    damped = torch.sqrt(singular**2 + 1.0 / c)  # (r,)
    design = (whitened * (singular / damped)).float()  # (n, r)
    penalty = (1.0 / (2.0 * (1.0 + c * singular**2))).float()[:, None]  # (r, 1)
    y = torch.as_tensor(targets.reshape(-1), device=target)
    binary = len(classes) == 2
    n_outputs = 1 if binary else len(classes)
    weight = torch.zeros(design.shape[1], n_outputs, device=target)  # U, (r, K)
    bias = torch.zeros(n_outputs, device=target)  # bias', (K,)

    def objective() -> torch.Tensor:
        loss, residual = _loss_and_residual(torch.addmm(bias, design, weight), y, binary)
        weight.grad = design.T @ residual + 2.0 * penalty * weight
        bias.grad = residual.sum(0)
        return loss + (penalty * weight * weight).sum()

    def largest_gradient() -> float:
        return max(float(weight.grad.abs().max()) if weight.numel() else 0.0, float(bias.grad.abs().max()))

    with torch.no_grad():
        first = float(objective())  # the gradient at zero weights sets the scale of the stopping rule
        start = largest_gradient()
        tolerance = max(relative_tolerance * start, GRADIENT_FLOOR)
        optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=MAX_ITERATIONS, history_size=10,
                                      tolerance_grad=tolerance, tolerance_change=1e-12, line_search_fn="strong_wolfe")
        optimiser.step(objective)  # one step runs L-BFGS until a tolerance or MAX_ITERATIONS
        last, reached = float(objective()), largest_gradient()
        _check_progress(first, last, start, reached, tolerance, optimiser.state[weight].get("func_evals", 0))
        fitted_weight = basis @ (weight.double() * (len(standardised) ** 0.5 / damped)[:, None])  # (D, K)
        fitted_bias = bias.double() - centre @ fitted_weight
    return SoftmaxProbe(classes, mean, scale, fitted_weight.cpu().numpy(), fitted_bias.cpu().numpy())


def _check_progress(first: float, last: float, start: float, reached: float, tolerance: float, evaluations: int):
    """Raise if the fit ended with its gradient above half its start, or left the objective where zero weights
    had it while the gradient was not small (either would report chance); warn if it stopped (line search or
    :data:`MAX_ITERATIONS`) above its tolerance. Zero weights that are the optimum (a gradient at the float32
    floor from the start) are neither."""
    if start > 100 * GRADIENT_FLOOR and (reached > 0.5 * start or (last >= first and reached > tolerance)):
        raise ProbeFitError(f"the softmax fit made no progress from zero weights after {evaluations} evaluations "
                            f"(objective {last:.6g}, gradient {reached / start:.2g} of its start)")
    if reached > tolerance:
        warnings.warn(f"the softmax fit stopped after {evaluations} evaluations with its gradient at "
                      f"{reached / start:.2g} of its start, above the tolerance {tolerance / start:.2g}",
                      RuntimeWarning, stacklevel=3)


def fit_ridge(tokens: np.ndarray, targets: np.ndarray, device: str | torch.device = "cpu",
              alpha: float = RIDGE_ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression of ``targets`` ``(n, P)`` on standardised ``tokens`` ``(n, D)``: the exact solution of
    ``min ||Y − X W − b||² + alpha·||W||²`` (float64 Cholesky solve on ``device``; scikit-learn's
    ``Ridge(alpha)`` after ``StandardScaler``). Returns ``(mean, scale, weight (D, P), bias (P,))``."""
    target = _device(device)
    mean, scale = _standardiser(tokens)
    x = torch.as_tensor((np.asarray(tokens, dtype=np.float64) - mean) / scale, device=target)
    y = torch.as_tensor(np.asarray(targets, dtype=np.float64), device=target)
    x_mean, y_mean = x.mean(0), y.mean(0)  # the intercept is not penalised: solve on centred data
    centred = x - x_mean
    gram = centred.T @ centred + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=target)
    weight = torch.cholesky_solve(centred.T @ (y - y_mean), torch.linalg.cholesky(gram))
    bias = y_mean - x_mean @ weight
    return mean, scale, weight.cpu().numpy(), bias.cpu().numpy()


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
    seed: int = 0, max_fit_tokens: int = 8000, device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Position and pixel probes fit on *all* patch tokens of the ``fit`` images (a seeded sample of
    ``max_fit_tokens`` of them when there are more), scored on every patch token of the ``held_out`` images.

    ``tokens``: ``(B, Np, D)``; ``pixels``: ``(B, Np, P)``; positions are the row-major grid indices
    ``0..Np-1`` (``grid_width`` is kept for callers; the position probe scores exact hits). Returns per
    held-out token ``position_correct`` ``(Bh, Np)`` bool and ``pixel_error`` ``(Bh, Np)`` L2 error, so the
    caller can split them by token kind (normal / high-norm) and resample images. A position missing from
    the fit sample is never predicted.
    """
    n_patches = tokens.shape[1]
    positions = np.broadcast_to(np.arange(n_patches), (len(fit), n_patches)).reshape(-1)
    fit_tokens, fit_pixels = tokens[fit].reshape(-1, tokens.shape[-1]), pixels[fit].reshape(-1, pixels.shape[-1])
    if len(fit_tokens) > max_fit_tokens:
        chosen = np.sort(np.random.default_rng(seed).choice(len(fit_tokens), max_fit_tokens, replace=False))
        fit_tokens, fit_pixels, positions = fit_tokens[chosen], fit_pixels[chosen], positions[chosen]
    position = fit_softmax(fit_tokens, positions, device)
    mean, scale, weight, bias = fit_ridge(fit_tokens, fit_pixels, device)
    test = tokens[held_out].reshape(-1, tokens.shape[-1])
    correct = position.predict(test) == np.tile(np.arange(n_patches), len(held_out))
    reconstructed = ((np.asarray(test, dtype=np.float64) - mean) / scale) @ weight + bias
    error = np.linalg.norm(reconstructed - pixels[held_out].reshape(-1, pixels.shape[-1]), axis=1)
    return {"position_correct": correct.reshape(len(held_out), n_patches),
            "pixel_error": error.reshape(len(held_out), n_patches)}


def global_information(
    features: dict[str, np.ndarray], labels: np.ndarray, fit: np.ndarray, held_out: np.ndarray, seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Class probes, one per feature kind (``{kind: (B, D)}``, one vector per image), fit on ``fit``
    images and scored on ``held_out`` ones. Returns ``{kind: (Bh,) bool}`` correct predictions.

    ``seed`` is kept for callers: the convex fit from zero weights uses no randomness."""
    return {kind: fit_softmax(values[fit], labels[fit], device).predict(values[held_out]) == labels[held_out]
            for kind, values in features.items()}
