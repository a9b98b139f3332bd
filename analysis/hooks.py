"""One forward pass of a timm VisionTransformer, every token captured through hooks.

What is captured (``B`` images, ``N = P + Np`` tokens of which ``P`` prefix tokens
— CLS and registers — and ``Np`` patch tokens on an ``h × w`` grid, ``L`` blocks, ``D`` channels):

* ``patch_embed``  ``(B, Np, D)``  patch-embedding output, *before* position embedding;
* ``block_norms``  ``(B, L, N)``   L2 norm of every token after every block, on the residual
  stream *before* the final LayerNorm (the paper's measurement point);
* ``cls_attention`` ``{block: (B, H, N)}``  attention probabilities of the CLS query for the
  chosen blocks, float32 (see below);
* ``tokens`` ``{block: (B, N, D)}``  full block outputs, only for blocks asked for;
* ``output``       ``(B, N, D)``   the model's output tokens (after the final LayerNorm), only when asked for;
* ``keys``         ``(B, N, D)``   the last block's attention keys (heads concatenated), only when asked for
  (object discovery with LOST reads them);
* ``predicted_class`` ``(B,)``      the classifier head's top-1 class, −1 for a model without a head (DINO,
  DINOv2): cheap, so always recorded (the test-time-register page compares it before and after).

Only reductions are kept by default, so memory does not grow with the model's depth.

**CLS attention at the floor.** The model's own forward keeps its fused attention kernel in every block.
The CLS row of the attention probabilities is computed beside it from the block's own query/key projection
output (a forward hook on ``attn.qkv``, or on ``q_proj``/``k_proj``, or on a parallel block's ``in_proj``: no
second projection), with the module's ``q_norm``/``k_norm``, rotary embedding (EVA, DINOv3: prefix tokens are
not rotated), grouped key heads and any attention mask applied exactly as timm's forward applies them, then
``softmax(q_cls · kᵀ · scale)`` in float32: ``(B, H, N)`` per block, never the ``(B, H, N, N)`` matrix. One
case re-projects: an EVA attention with a fused ``qkv`` *and* a query bias calls ``F.linear`` on the weight
directly, so the keys and the CLS query are projected again from the attention's input (one ``D × D``
product in that block). An attention layout not listed in :func:`attention_plan` falls back to switching
fused attention off in that block and reading the materialised probabilities (timm's ``DiffAttention``
this way gives its two softmax maps per head, ``(B, 2H, N)``).

**Non-finite values are refused.** :func:`capture_tokens` raises :class:`NonFiniteError` naming where NaN or
infinite values first appear — the patch embedding, block ``k`` of ``L`` (0-based), or the final norm — read
from the per-block norms the pass computes anyway (:func:`check_finite` does the same on any capture).

Hooks are removed and fused attention restored even when the forward pass raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention, AttentionRope
from timm.layers.pos_embed_sincos import apply_rot_embed_cat
from timm.models.eva import Eva, EvaAttention
from timm.models.vision_transformer import ParallelScalingBlock, VisionTransformer

#: The timm model classes the hooks understand: the plain ViT (DINO, DINOv2, DeiT-III, CLIP, SigLIP, AugReg)
#: and ``Eva`` (EVA-02, DINOv3 and the RoPE ViTs).
HOOKABLE = (VisionTransformer, Eva)


class NonFiniteError(ValueError):
    """A forward pass produced NaN or infinite values; the message names where they first appear."""


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


# --------------------------------------------------------------------------------------------------------------
# Non-finite values


def _non_finite_tokens(values: torch.Tensor) -> int:
    """How many tokens of ``values`` ``(..., N, D)`` hold a NaN or an infinity (0 when all are finite).

    The common case costs one float32 sum: a sum is finite unless an element is not (or it overflows,
    which the exact count below then clears)."""
    if bool(torch.isfinite(values.sum(dtype=torch.float32))):
        return 0
    return int((~torch.isfinite(values)).any(-1).sum())


def _where(count: int, total: int, what: str, images: int) -> str:
    return f"{count} of {total} {what} ({images} image{'s' if images != 1 else ''}) hold NaN or infinite values"


def _check(capture: Capture, final: torch.Tensor | None) -> None:
    if capture.patch_embed is not None:
        bad = _non_finite_tokens(capture.patch_embed)
        if bad:
            batch, patches = capture.patch_embed.shape[:2]
            raise NonFiniteError("non-finite values first appear in the patch embedding: "
                                 + _where(bad, batch * patches, "patch tokens", batch))
    norms = capture.block_norms
    if norms is not None and not bool(torch.isfinite(norms.sum())):
        finite = torch.isfinite(norms)  # (B, L, N): a norm is finite iff its token is (or it overflowed)
        per_block = (~finite).sum(dim=(0, 2))
        broken = torch.nonzero(per_block).flatten()
        if len(broken):
            block = int(broken[0])
            batch, depth, tokens = norms.shape
            raise NonFiniteError(f"non-finite values first appear in block {block} of {depth} (counting from 0): "
                                 + _where(int(per_block[block]), batch * tokens, "tokens", batch))
    if final is not None:
        bad = _non_finite_tokens(final)
        if bad:
            batch, tokens = final.shape[:2]
            raise NonFiniteError("non-finite values first appear in the final norm (every block's output is "
                                 "finite): " + _where(bad, batch * tokens, "tokens", batch))


def check_finite(capture: Capture) -> None:
    """Raise :class:`NonFiniteError` if ``capture`` holds NaN or infinite values, naming where they first
    appear: the patch embedding, ``block k of L`` (0-based; from the per-block norms), or the final norm
    (only when the output tokens were kept). :func:`capture_tokens` already calls this on every pass."""
    _check(capture, capture.output)


# --------------------------------------------------------------------------------------------------------------
# CLS attention


def _cls_row(owner: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, call: dict) -> torch.Tensor:
    """``(B, H, N)`` float32 softmax row of the CLS query, from the raw per-head projections ``q`` ``(B, H, 1,
    hd)`` (the CLS token's) and ``k`` ``(B, Hk, N, hd)``, with what timm's forward applies in between:
    q/k norm, rotary embedding on the tokens after the prefix, cast to the projection's dtype (as the fused
    kernel receives them), grouped key heads (``Hk`` divides ``H``), the attention mask."""
    dtype = k.dtype  # timm's `.type_as(v)`; v comes out of the same projection
    q, k = owner.q_norm(q), owner.k_norm(k)
    rope = call.get("rope")
    if rope is not None:
        prefix, half = owner.num_prefix_tokens, getattr(owner, "rotate_half", False)
        if prefix:  # the CLS query is a prefix token: not rotated
            k = torch.cat([k[:, :, :prefix], apply_rot_embed_cat(k[:, :, prefix:], rope, half=half)], dim=2)
        else:
            q = apply_rot_embed_cat(q, rope[..., :1, :], half=half)
            k = apply_rot_embed_cat(k, rope, half=half)
    batch, heads, _, head_dim = q.shape
    key_heads, tokens = k.shape[1], k.shape[2]
    with torch.autocast(q.device.type, enabled=False):  # float32 scores, whatever the pass runs in
        q = q.to(dtype).float().reshape(batch, key_heads, heads // key_heads, head_dim)  # head h: key head h // G
        scores = torch.matmul(q * owner.scale, k.to(dtype).float().transpose(-2, -1)).reshape(batch, heads, tokens)
        mask = call.get("attn_mask")
        if call.get("is_causal"):  # the first query sees only itself
            scores[..., 1:] = float("-inf")
        elif mask is not None:
            row = mask[..., 0, :]
            scores = (scores.masked_fill(~row, float("-inf")) if row.dtype == torch.bool
                      else scores + row.float())
        return scores.softmax(dim=-1)


def _heads(projection: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, N, heads·hd)`` → ``(B, heads, N, hd)`` (a view)."""
    return projection.unflatten(-1, (heads, -1)).transpose(1, 2)


#: How a CLS row is read from one block: a list of (module, hook kind, hook) triples to register, hook kind
#: ``"pre"`` (forward pre-hook with kwargs: the attention's call) or ``"post"`` (forward hook).
Plan = list[tuple[torch.nn.Module, str, Callable]]


def attention_plan(block: torch.nn.Module, on_qk: Callable[[torch.Tensor, torch.Tensor, dict], None]) -> Plan | None:
    """Hooks that hand ``on_qk(q_cls, k, call)`` the raw CLS query ``(B, H, 1, hd)``, the raw keys ``(B, Hk, N,
    hd)`` and the attention call's arguments (``rope``, ``attn_mask``, ``is_causal``) during ``block``'s own
    forward, for the attention layouts whose projections can be reused exactly: timm's ``Attention``,
    ``AttentionRope``, ``EvaAttention`` (fused or separate projections) and ``ParallelScalingBlock``.
    None for any other layout (the caller falls back to unfused attention there)."""
    attention = getattr(block, "attn", None)
    kind = type(attention)
    if type(block) is ParallelScalingBlock:
        owner = block
    elif kind in (Attention, AttentionRope, EvaAttention):
        owner = attention
    else:
        return None
    signature = inspect.signature(owner.forward)
    call: dict = {}

    def on_call(_module, args, kwargs):
        call.clear()
        call.update(signature.bind(*args, **kwargs).arguments)

    def on_done(_module, _inputs, _output):
        call.clear()  # drop the references to this call's tensors

    plan: Plan = [(owner, "pre", on_call), (owner, "post", on_done)]
    heads = owner.num_heads
    if owner is block:  # parallel block: [mlp | q | k | v] out of one input projection
        width = block.in_split[1]
        start = block.in_split[0]

        def on_in_proj(_module, _inputs, out):
            q = _heads(out[:, :1, start : start + width], heads)
            on_qk(q, _heads(out[:, :, start + width : start + 2 * width], heads), call)

        return plan + [(block.in_proj, "post", on_in_proj)]
    if owner.qkv is None:  # separate projections (EVA-02 B/L, grouped-query RoPE attention)
        held = {}

        def on_q(_module, _inputs, out):
            held["q"] = _heads(out[:, :1], heads)

        def on_k(_module, _inputs, out):
            on_qk(held.pop("q"), _heads(out, out.shape[-1] // owner.head_dim), call)

        return plan + [(owner.q_proj, "post", on_q), (owner.k_proj, "post", on_k)]
    width = owner.num_heads * owner.head_dim
    bias = getattr(owner, "q_bias", None) if kind is EvaAttention else None
    if bias is not None and not owner.qkv_bias_separate:  # EVA calls F.linear on qkv.weight: the hook never fires

        def on_input(module, args, kwargs):
            on_call(module, args, kwargs)
            x, weight = call["x"], owner.qkv.weight
            q = F.linear(x[:, :1], weight[:width], owner.q_bias)
            k = F.linear(x, weight[width : 2 * width], owner.k_bias)
            on_qk(_heads(q, heads), _heads(k, heads), call)

        return [(owner, "pre", on_input), (owner, "post", on_done)]

    def on_qkv(_module, _inputs, out):  # (B, N, 3·H·hd): queries, keys, values
        q, k = out[:, :1, :width], out[:, :, width : 2 * width]
        if bias is not None:  # EVA with `qkv_bias_separate`: the bias is added in place after this hook
            q, k = (q + owner.q_bias).to(out.dtype), (k + owner.k_bias).to(out.dtype)
        on_qk(_heads(q, heads), _heads(k, heads), call)

    return plan + [(owner.qkv, "post", on_qkv)]


def _key_plan(block: torch.nn.Module, on_keys: Callable[[torch.Tensor], None]) -> Plan:
    """Hooks that hand ``on_keys`` the block's raw key projection ``(B, N, Hk·hd)`` (no norm, no rotation)."""
    def on_qk(_q, k, _call):
        on_keys(k.transpose(1, 2).flatten(2))

    plan = attention_plan(block, on_qk)
    if plan is not None:
        return plan
    attention = block.attn  # another layout with a fused qkv (e.g. DiffAttention): the middle third
    if getattr(attention, "qkv", None) is None:
        raise TypeError(f"cannot read the keys of a {type(attention).__name__}")

    def on_qkv(_module, _inputs, qkv):
        dim = qkv.shape[-1] // 3
        on_keys(qkv[..., dim : 2 * dim])

    return [(attention.qkv, "post", on_qkv)]


def _register(plan: Plan, handles: list) -> None:
    for module, kind, hook in plan:
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True) if kind == "pre"
                       else module.register_forward_hook(hook))


@contextmanager
def _hooks(
    model: VisionTransformer, capture: Capture, attention_blocks: list[int], token_blocks: list[int], keep_output: bool,
    keep_keys: bool = False,
) -> Iterator[list[torch.Tensor]]:
    handles = []
    fused_before = {}
    norms: list[torch.Tensor] = []
    token_blocks = set(token_blocks)

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

    def on_keys(keys):
        capture.keys = keys.detach().clone()

    def on_cls(index):
        def hook(q, k, call):
            capture.cls_attention[index] = _cls_row(owner_of(index), q, k, call)

        return hook

    def owner_of(index):
        block = model.blocks[index]
        return block if type(block) is ParallelScalingBlock else block.attn

    def on_probabilities(index):
        def hook(_module, _inputs, probabilities):  # (B, H, N, N) after softmax
            capture.cls_attention[index] = probabilities[:, :, 0, :].to(torch.float32, copy=True)

        return hook

    try:
        handles.append(model.patch_embed.register_forward_hook(on_patch_embed))
        if keep_output:
            handles.append(model.norm.register_forward_hook(on_output))
        if keep_keys:
            _register(_key_plan(model.blocks[-1], on_keys), handles)
        for index, block in enumerate(model.blocks):
            handles.append(block.register_forward_hook(on_block(index)))
        for index in attention_blocks:
            block = model.blocks[index]
            plan = attention_plan(block, on_cls(index))
            if plan is not None:
                _register(plan, handles)
                continue
            attention = getattr(block, "attn", block)  # fallback: materialise this block's probabilities
            if not hasattr(attention, "fused_attn") or not hasattr(attention, "attn_drop"):
                raise TypeError(f"cannot read the CLS attention of a {type(attention).__name__}")
            fused_before[index] = attention.fused_attn
            attention.fused_attn = False
            handles.append(attention.attn_drop.register_forward_hook(on_probabilities(index)))
        yield norms
    finally:
        for handle in handles:
            handle.remove()
        for index, fused in fused_before.items():
            getattr(model.blocks[index], "attn", model.blocks[index]).fused_attn = fused


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

    Raises :class:`NonFiniteError` when the pass yields NaN or infinite values (see :func:`check_finite`).
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
    _check(capture, features)
    capture.predicted_class = (model.forward_head(features).argmax(-1) if has_classifier(model)
                               else torch.full((len(images),), -1, device=images.device))
    return capture
