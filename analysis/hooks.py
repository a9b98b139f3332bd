"""One forward pass of a timm VisionTransformer, every token captured through hooks.

What is captured (``B`` images, ``N = P + Np`` tokens of which ``P`` prefix tokens
— CLS and registers — and ``Np`` patch tokens on an ``h × w`` grid, ``L`` blocks, ``D`` channels):

* ``patch_embed``  ``(B, Np, D)``  patch-embedding output, *before* position embedding;
* ``block_norms``  ``(B, L, N)``   L2 norm of every token after every block, on the residual
  stream *before* the final LayerNorm (the paper's measurement point);
* ``cls_attention`` ``{block: (B, H, N)}``  attention probabilities of the CLS query for the
  chosen blocks (fused attention is switched off only in those blocks);
* ``tokens`` ``{block: (B, N, D)}``  full block outputs, only for blocks asked for;
* ``output``       ``(B, N, D)``   the model's output tokens (after the final LayerNorm), only when asked for;
* ``keys``         ``(B, N, D)``   the last block's attention keys (heads concatenated), only when asked for
  (object discovery with LOST reads them);
* ``predicted_class`` ``(B,)``      the classifier head's top-1 class, −1 for a model without a head (DINO,
  DINOv2): cheap, so always recorded (the test-time-register page compares it before and after).

Only reductions are kept by default, so memory does not grow with the model's depth.
Hooks are removed and fused attention restored even when the forward pass raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

#: The timm model classes the hooks understand: the plain ViT (DINO, DINOv2, DeiT-III, CLIP, SigLIP, AugReg)
#: and ``Eva`` (EVA-02, DINOv3 and the RoPE ViTs).
HOOKABLE = (VisionTransformer, Eva)


def has_cls_token(model: torch.nn.Module) -> bool:
    """Does the model prepend a CLS token (SigLIP, for one, pools with attention instead)?"""
    return getattr(model, "cls_token", None) is not None


@dataclass
class Capture:
    """Everything one hooked forward pass recorded (see module docstring for shapes)."""

    num_prefix_tokens: int
    grid: tuple[int, int]
    patch_embed: torch.Tensor | None = None
    block_norms: torch.Tensor | None = None
    cls_attention: dict[int, torch.Tensor] = field(default_factory=dict)
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    predicted_class: torch.Tensor | None = None

    @property
    def patch_norms(self) -> torch.Tensor:
        """``(B, L, Np)`` norms of patch tokens only."""
        return self.block_norms[:, :, self.num_prefix_tokens :]

    @property
    def prefix_norms(self) -> torch.Tensor:
        """``(B, L, P)`` norms of CLS and register tokens."""
        return self.block_norms[:, :, : self.num_prefix_tokens]


def _resolve(indices: Sequence[int], depth: int) -> list[int]:
    resolved = []
    for index in indices:
        real = index + depth if index < 0 else index
        if not 0 <= real < depth:
            raise IndexError(f"block {index} does not exist in a model with {depth} blocks")
        resolved.append(real)
    return sorted(set(resolved))


def has_classifier(model: torch.nn.Module) -> bool:
    """Does the model end in a classification head (``num_classes > 0``)?"""
    return getattr(model, "num_classes", 0) > 0


def grid_size(model: torch.nn.Module, height: int, width: int) -> tuple[int, int]:
    return tuple(model.patch_embed.dynamic_feat_size((height, width)))


@contextmanager
def _hooks(
    model: VisionTransformer, capture: Capture, attention_blocks: list[int], token_blocks: list[int], keep_output: bool,
    keep_keys: bool = False,
) -> Iterator[list[torch.Tensor]]:
    handles = []
    fused_before = {}
    norms: list[torch.Tensor] = []

    def on_patch_embed(_module, _inputs, output):
        capture.patch_embed = output.flatten(1, -2) if output.ndim == 4 else output

    def on_block(index):
        def hook(_module, _inputs, output):
            norms.append(torch.linalg.vector_norm(output, dim=-1, dtype=torch.float32))  # no float copy
            if index in token_blocks:
                capture.tokens[index] = output.detach().clone()

        return hook

    def on_output(_module, _inputs, output):
        capture.output = output.detach().clone()

    def on_qkv(_module, _inputs, qkv):  # (B, N, 3D): queries, keys, values
        dim = qkv.shape[-1] // 3
        capture.keys = qkv[..., dim : 2 * dim].detach().clone()

    def on_keys(_module, _inputs, keys):  # (B, N, D): a separate key projection (some EVA models)
        capture.keys = keys.detach().clone()

    def on_attention(index):
        def hook(_module, _inputs, probabilities):  # (B, H, N, N) after softmax
            capture.cls_attention[index] = probabilities[:, :, 0, :].detach().clone()

        return hook

    try:
        handles.append(model.patch_embed.register_forward_hook(on_patch_embed))
        if keep_output:
            handles.append(model.norm.register_forward_hook(on_output))
        if keep_keys:
            last = model.blocks[-1].attn
            if getattr(last, "qkv", None) is not None:
                handles.append(last.qkv.register_forward_hook(on_qkv))
            else:
                handles.append(last.k_proj.register_forward_hook(on_keys))
        for index, block in enumerate(model.blocks):
            handles.append(block.register_forward_hook(on_block(index)))
        for index in attention_blocks:
            attention = model.blocks[index].attn
            fused_before[index] = attention.fused_attn
            attention.fused_attn = False
            handles.append(attention.attn_drop.register_forward_hook(on_attention(index)))
        yield norms
    finally:
        for handle in handles:
            handle.remove()
        for index, fused in fused_before.items():
            model.blocks[index].attn.fused_attn = fused


@torch.inference_mode()
def capture_tokens(
    model: VisionTransformer,
    images: torch.Tensor,
    attention_blocks: Sequence[int] = (-1,),
    token_blocks: Sequence[int] = (),
    keep_output: bool = False,
    keep_keys: bool = False,
) -> Capture:
    """Run ``model`` once on ``images`` ``(B, 3, H, W)`` and return a :class:`Capture`.

    ``attention_blocks`` and ``token_blocks`` take block indices (negative counts from the end);
    ``keep_output`` keeps the output tokens after the final LayerNorm (for linear probes);
    ``keep_keys`` the last block's attention keys (for LOST).
    """
    if not isinstance(model, HOOKABLE):
        raise TypeError(f"capture_tokens needs a timm VisionTransformer or Eva, got {type(model).__name__}")
    depth = len(model.blocks)
    if not has_cls_token(model):  # no CLS query: there is no CLS attention to record
        attention_blocks = ()
    capture = Capture(model.num_prefix_tokens, grid_size(model, images.shape[-2], images.shape[-1]))
    with _hooks(model, capture, _resolve(attention_blocks, depth), _resolve(token_blocks, depth), keep_output,
                keep_keys) as norms:
        features = model.forward_features(images)
    capture.block_norms = torch.stack(norms, dim=1)
    capture.predicted_class = (model.forward_head(features).argmax(-1) if has_classifier(model)
                               else torch.full((len(images),), -1, device=images.device))
    return capture


def capture_batches(model: VisionTransformer, images: torch.Tensor, batch_size: int = 8, **options) -> Capture:
    """:func:`capture_tokens` over ``images`` ``(B, 3, H, W)`` in batches, joined along the image axis.

    Only what each batch keeps is joined (norms, last-block CLS attention, and output or keys when
    asked for), so memory grows with the images but not with the batch's activations.
    """
    device = next(model.parameters()).device
    parts = [capture_tokens(model, images[start : start + batch_size].to(device), **options)
             for start in range(0, len(images), batch_size)]
    first = parts[0]
    joined = Capture(first.num_prefix_tokens, first.grid)
    joined.patch_embed = torch.cat([p.patch_embed.cpu() for p in parts])
    joined.block_norms = torch.cat([p.block_norms.cpu() for p in parts])
    joined.cls_attention = {i: torch.cat([p.cls_attention[i].cpu() for p in parts]) for i in first.cls_attention}
    for name in ("output", "keys", "predicted_class"):
        if getattr(first, name) is not None:
            setattr(joined, name, torch.cat([getattr(p, name).cpu() for p in parts]))
    return joined
