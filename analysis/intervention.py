"""Test-time registers (Jiang et al. 2025, "Vision Transformers Don't Need Trained Registers", arXiv 2506.08010).

A few MLP neurons create the high-norm tokens: they fire hard at the outlier positions and
barely anywhere else. At inference one extra token is inserted after the CLS/register tokens,
and in every forward pass those neurons' activations are moved onto it: zeroed at every other
token, set to their per-image maximum on the new token. No weight changes, no retraining.

Shapes: activations ``(B, N, H)`` (``H`` MLP hidden units), masks ``(B, Np)`` over patch tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer


@dataclass(frozen=True)
class RegisterNeuron:
    """An MLP hidden unit whose activation singles out the outlier positions."""

    block: int
    neuron: int
    mean_at_outliers: float
    mean_elsewhere: float

    @property
    def score(self) -> float:
        return self.mean_at_outliers - self.mean_elsewhere


@torch.inference_mode()
def mlp_activations(model: VisionTransformer, images: torch.Tensor, blocks: Sequence[int]) -> dict[int, torch.Tensor]:
    """Post-activation MLP hidden units of ``blocks``: ``{block: (B, N, H)}``, hooks always removed."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for index in blocks:
            def hook(_module, _inputs, output, index=index):
                captured[index] = output.detach().clone()

            handles.append(model.blocks[index].mlp.act.register_forward_hook(hook))
        model.forward_features(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def find_register_neurons(
    activations: dict[int, torch.Tensor],
    outlier_mask: torch.Tensor,
    num_prefix_tokens: int,
    top_k: int = 4,
    min_relative_score: float = 0.1,
) -> list[RegisterNeuron]:
    """Neurons whose mean activation at outlier patches most exceeds their mean elsewhere.

    ``activations``: ``{block: (B, N, H)}``; ``outlier_mask``: ``(B, Np)`` high-norm patches of the
    output. Keeps at most ``top_k`` neurons scoring at least ``min_relative_score`` × the best score.
    Empty when there are no outliers.
    """
    mask = outlier_mask.bool()
    if not mask.any() or mask.all():
        return []
    candidates = []
    for block, values in activations.items():
        patches = values[:, num_prefix_tokens:].float()  # (B, Np, H)
        at_outliers = patches[mask].mean(0)
        elsewhere = patches[~mask].mean(0)
        score = at_outliers - elsewhere
        best = torch.topk(score, min(top_k, score.numel()))
        for neuron in best.indices.tolist():
            candidates.append(RegisterNeuron(block, neuron, float(at_outliers[neuron]), float(elsewhere[neuron])))
    candidates.sort(key=lambda n: n.score, reverse=True)
    if not candidates or candidates[0].score <= 0:
        return []
    floor = min_relative_score * candidates[0].score
    return [n for n in candidates[:top_k] if n.score >= floor]


@contextmanager
def test_time_register(model: VisionTransformer, neurons: Sequence[RegisterNeuron]) -> Iterator[int]:
    """Inside the block, ``model`` runs with one extra token moved-to by ``neurons``.

    The new token sits right after the existing prefix tokens and ``model.num_prefix_tokens`` is
    raised by one, so token splitting downstream counts it as a register. Yields its index.
    Everything is restored on exit, also after an exception.
    """
    prefix = model.num_prefix_tokens
    by_block: dict[int, list[int]] = {}
    for neuron in neurons:
        by_block.setdefault(neuron.block, []).append(neuron.neuron)

    def insert_token(_module, _inputs, tokens):  # (B, N, D) -> (B, N + 1, D)
        return torch.cat([tokens[:, :prefix], torch.zeros_like(tokens[:, :1]), tokens[:, prefix:]], dim=1)

    def move_activations(ids):
        def hook(_module, _inputs, hidden):  # (B, N + 1, H)
            hidden = hidden.clone()
            peak = hidden[:, :, ids].amax(dim=1)
            hidden[:, :, ids] = 0
            hidden[:, prefix, ids] = peak
            return hidden

        return hook

    handles = [model.norm_pre.register_forward_hook(insert_token)]
    try:
        for block, ids in by_block.items():
            handles.append(model.blocks[block].mlp.act.register_forward_hook(move_activations(ids)))
        model.num_prefix_tokens = prefix + 1
        yield prefix
    finally:
        model.num_prefix_tokens = prefix
        for handle in handles:
            handle.remove()
