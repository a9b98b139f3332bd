"""Test-time registers (Jiang et al. 2025, "Vision Transformers Don't Need Trained Registers", arXiv 2506.08010).

A few MLP hidden units create the high-norm tokens: they fire hard at the outlier positions and
barely anywhere else. At inference one extra token is inserted after the prefix tokens (CLS and
any trained registers), and in every forward pass those units' activations are moved onto it:
zeroed at every other token, set to their per-image maximum on the new token. No weight changes.

The *unit* is the MLP hidden activation that feeds ``fc2`` — in a plain MLP ``act(fc1(x))``, in a
GLU MLP (DINOv2 ViT-g's ``SwiGLUPacked``, EVA's ``SwiGLU``) the product ``act(gate) * value`` — read
and changed through a forward *pre*-hook on ``fc2``, so the same code serves every timm MLP.

Shapes: hidden units ``(B, N, H)`` (``H`` hidden width), masks ``(B, Np)`` over patch tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


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


def unit_input(block: nn.Module) -> nn.Module:
    """The module whose *input* is the block's MLP hidden units (``fc2`` in every timm MLP)."""
    fc2 = getattr(getattr(block, "mlp", None), "fc2", None)
    if fc2 is None:
        raise TypeError(f"block {type(block).__name__} has no mlp.fc2: not a timm ViT block")
    return fc2


@dataclass
class UnitContrast:
    """Per block, the summed hidden-unit activation at outlier patches and elsewhere (streamed)."""

    at_outliers: dict[int, torch.Tensor]  # block -> (H,) sums
    elsewhere: dict[int, torch.Tensor]
    n_outliers: int = 0
    n_elsewhere: int = 0


@torch.inference_mode()
def unit_contrast(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], blocks: Sequence[int] | None = None
) -> UnitContrast:
    """Stream ``(pixels (B, 3, H, W), outlier mask (B, Np))`` batches through ``model`` and sum every
    hidden unit at outlier patches and at the other patches.

    Each block's activations are reduced to two ``(H,)`` sums inside the hook, so memory does not
    grow with the number of images or with depth.
    """
    blocks = list(range(len(model.blocks))) if blocks is None else list(blocks)
    prefix = model.num_prefix_tokens
    result = UnitContrast({}, {})
    current: dict[str, torch.Tensor] = {}

    def reduce(index):
        def hook(_module, inputs):
            hidden = inputs[0][:, prefix:].float()  # (B, Np, H)
            mask = current["mask"].unsqueeze(-1)  # (B, Np, 1)
            at = (hidden * mask).sum((0, 1))
            total = hidden.sum((0, 1))
            result.at_outliers[index] = result.at_outliers.get(index, 0) + at
            result.elsewhere[index] = result.elsewhere.get(index, 0) + (total - at)

        return hook

    handles = [unit_input(model.blocks[i]).register_forward_pre_hook(reduce(i)) for i in blocks]
    try:
        for pixels, mask in batches:
            current["mask"] = mask.float().to(pixels.device)
            model.forward_features(pixels)
            result.n_outliers += int(mask.sum())
            result.n_elsewhere += int(mask.numel() - mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    return result


def find_register_neurons(contrast: UnitContrast, top_k: int = 4, min_relative_score: float = 0.1) -> list[RegisterNeuron]:
    """Units whose mean activation at outlier patches most exceeds their mean elsewhere.

    Keeps at most ``top_k`` units scoring at least ``min_relative_score`` × the best score. Empty when
    there were no outliers (or only outliers).
    """
    if contrast.n_outliers == 0 or contrast.n_elsewhere == 0:
        return []
    candidates = []
    for block in contrast.at_outliers:
        at = contrast.at_outliers[block] / contrast.n_outliers
        elsewhere = contrast.elsewhere[block] / contrast.n_elsewhere
        best = torch.topk(at - elsewhere, min(top_k, at.numel()))
        for neuron in best.indices.tolist():
            candidates.append(RegisterNeuron(block, neuron, float(at[neuron]), float(elsewhere[neuron])))
    candidates.sort(key=lambda n: n.score, reverse=True)
    if not candidates or candidates[0].score <= 0:
        return []
    floor = min_relative_score * candidates[0].score
    return [n for n in candidates[:top_k] if n.score >= floor]


@contextmanager
def test_time_register(model: nn.Module, neurons: Sequence[RegisterNeuron]) -> Iterator[int]:
    """Inside the block, ``model`` runs with one extra token that ``neurons`` are moved onto.

    The new token sits right after the existing prefix tokens (CLS and trained registers) and
    ``model.num_prefix_tokens`` is raised by one, so token splitting downstream counts it as a
    register. Yields its index. Everything is restored on exit, also after an exception.
    """
    prefix = model.num_prefix_tokens
    by_block: dict[int, list[int]] = {}
    for neuron in neurons:
        by_block.setdefault(neuron.block, []).append(neuron.neuron)

    def insert_token(_module, _inputs, tokens):  # (B, N, D) -> (B, N + 1, D)
        return torch.cat([tokens[:, :prefix], torch.zeros_like(tokens[:, :1]), tokens[:, prefix:]], dim=1)

    def move_units(ids):
        def hook(_module, inputs):  # hidden units (B, N + 1, H)
            hidden = inputs[0].clone()
            peak = hidden[:, :, ids].amax(dim=1)
            hidden[:, :, ids] = 0
            hidden[:, prefix, ids] = peak
            return (hidden, *inputs[1:])

        return hook

    # EVA's attention layers keep their own prefix count (RoPE skips prefix tokens): move every counter
    counters = [m for m in model.modules() if isinstance(getattr(m, "num_prefix_tokens", None), int)]
    moved: list[nn.Module] = []
    handles = [model.norm_pre.register_forward_hook(insert_token)]
    try:
        for block, ids in by_block.items():
            handles.append(unit_input(model.blocks[block]).register_forward_pre_hook(move_units(ids)))
        for module in counters:
            module.num_prefix_tokens += 1
            moved.append(module)
        yield prefix
    finally:
        for module in moved:
            module.num_prefix_tokens -= 1
        for handle in handles:
            handle.remove()


def choose_neurons(model: nn.Module, pixels: torch.Tensor, outlier_mask: torch.Tensor, batch_size: int = 8,
                   top_k: int = 4) -> list[RegisterNeuron]:
    """:func:`unit_contrast` over ``pixels`` ``(B, 3, H, W)`` with their outlier masks ``(B, Np)`` in
    batches, then :func:`find_register_neurons`."""
    device = next(model.parameters()).device
    batches = ((pixels[i : i + batch_size].to(device), outlier_mask[i : i + batch_size])
               for i in range(0, len(pixels), batch_size))
    return find_register_neurons(unit_contrast(model, batches), top_k=top_k)
