"""The hooked pass against timm's own forward_intermediates, planted tokens, and hook hygiene; the CLS
attention row against the unfused probabilities on every reused-projection layout; non-finite passes refused."""

import pytest
import torch

from analysis import hooks, models


def random_vit(name="vit_small_patch14_reg4_dinov2.lvd142m", size=56):
    torch.manual_seed(0)
    return models.build_architecture(name, size)


def test_block_outputs_equal_timm_forward_intermediates(tiny):
    model, _ = tiny
    images = torch.randn(2, 3, 224, 224)
    depth = len(model.blocks)
    capture = hooks.capture_tokens(model, images, token_blocks=range(depth))
    with torch.inference_mode():
        final, reference = model.forward_intermediates(images, norm=False, output_fmt="NLC", return_prefix_tokens=True)
    for index, (patches, prefix) in enumerate(reference):
        torch.testing.assert_close(capture.tokens[index], torch.cat([prefix, patches], dim=1))
        torch.testing.assert_close(capture.block_norms[:, index], torch.cat([prefix, patches], 1).norm(dim=-1))
    # the paper's measurement point: before the final LayerNorm, which would equalise the norms
    after_norm = final.norm(dim=-1)
    assert capture.block_norms[:, -1].max() > 5 * after_norm.max()


def test_patch_embedding_is_captured_before_position_embedding(tiny):
    model, _ = tiny
    images = torch.randn(1, 3, 224, 224)
    capture = hooks.capture_tokens(model, images)
    with torch.inference_mode():
        expected = model.patch_embed(images)
    torch.testing.assert_close(capture.patch_embed, expected)
    assert capture.grid == (14, 14)


def test_prefix_tokens_split_from_patches_with_registers():
    model = random_vit()
    capture = hooks.capture_tokens(model, torch.randn(2, 3, 56, 56))
    assert capture.num_prefix_tokens == 5  # CLS + 4 registers
    assert capture.patch_norms.shape == (2, len(model.blocks), 16)
    assert capture.prefix_norms.shape == (2, len(model.blocks), 5)


def test_cls_attention_is_a_probability_row(tiny):
    model, _ = tiny
    capture = hooks.capture_tokens(model, torch.randn(2, 3, 224, 224), attention_blocks=(0, -1))
    assert set(capture.cls_attention) == {0, 11}
    rows = capture.cls_attention[11]
    assert rows.shape == (2, 3, 197)
    torch.testing.assert_close(rows.sum(-1), torch.ones(2, 3))


def test_planted_token_is_found_at_its_grid_position():
    model = random_vit()
    planted_block, row, col = 3, 2, 1
    token = model.num_prefix_tokens + row * 4 + col

    def plant(_module, _inputs, output):
        output = output.clone()
        output[:, token] += 1000.0
        return output

    handle = model.blocks[planted_block].register_forward_hook(plant)
    try:
        capture = hooks.capture_tokens(model, torch.randn(1, 3, 56, 56))
    finally:
        handle.remove()
    norms = capture.patch_norms[0]  # (L, Np)
    assert norms[:planted_block].max() < 100  # not yet planted
    assert norms[planted_block].argmax().item() == row * 4 + col
    assert (norms[planted_block] > 500).sum().item() == 1


def test_hooks_removed_and_fused_attention_restored_when_forward_raises():
    model = random_vit()
    fused_before = model.blocks[-1].attn.fused_attn

    def explode(_module, _inputs):
        raise RuntimeError("boom")

    handle = model.blocks[5].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        hooks.capture_tokens(model, torch.randn(1, 3, 56, 56))
    handle.remove()
    assert model.blocks[-1].attn.fused_attn == fused_before
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_bad_block_index():
    with pytest.raises(IndexError, match="block 40"):
        hooks.capture_tokens(random_vit(), torch.randn(1, 3, 56, 56), attention_blocks=(40,))


# --- CLS attention at the floor: the fused kernel runs, the CLS row is computed beside it -------------------


def unfused_cls_rows(model, images, block_index):
    """Reference: the block's attention with fused attention off, its probabilities' CLS row ``(B, H, N)``."""
    block = model.blocks[block_index]
    owner = getattr(block, "attn", block)
    rows, fused = {}, owner.fused_attn

    def keep(_module, _inputs, probabilities):
        rows["cls"] = probabilities[:, :, 0].float().clone()

    owner.fused_attn = False
    handle = owner.attn_drop.register_forward_hook(keep)
    try:
        with torch.inference_mode():
            model.forward_features(images)
    finally:
        handle.remove()
        owner.fused_attn = fused
    return rows["cls"]


def random_timm(name, size, **overrides):
    """A random-init timm model built directly (some layouts here are not names the study accepts)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, img_size=size, **overrides).eval()


def test_cls_attention_is_the_unfused_cls_row_while_the_model_stays_fused(tiny):
    model, _ = tiny
    images = torch.randn(2, 3, 224, 224)
    seen = []
    spies = [block.attn.register_forward_pre_hook(lambda m, _i: seen.append(m.fused_attn)) for block in model.blocks]
    try:
        capture = hooks.capture_tokens(model, images, attention_blocks=(0, 5, -1))
    finally:
        for spy in spies:
            spy.remove()
    assert seen == [True] * 12  # the model's own forward never left the fused kernel
    assert capture.cls_attention[11].shape == (2, 3, 197) and capture.cls_attention[11].dtype == torch.float32
    for index in (0, 5, 11):
        torch.testing.assert_close(capture.cls_attention[index], unfused_cls_rows(model, images, index),
                                   atol=1e-5, rtol=0)


def test_cls_attention_under_bfloat16_autocast_stays_close(tiny):
    model, _ = tiny
    images = torch.randn(2, 3, 224, 224)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = hooks.capture_tokens(model, images).cls_attention[11]
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(mixed, unfused_cls_rows(model, images, 11), atol=1e-2, rtol=0)  # measured 1.7e-3


def _with_random_affine_qk_norm(model):
    for module in model.modules():
        for norm in (getattr(module, "q_norm", None), getattr(module, "k_norm", None)):
            if norm is not None and getattr(norm, "weight", None) is not None:
                torch.nn.init.normal_(norm.weight, 1.0, 0.5)
                if getattr(norm, "bias", None) is not None:
                    torch.nn.init.normal_(norm.bias, 0.0, 0.5)
    return model


def _with_random_query_bias(model, separate=False):
    for module in model.modules():
        if getattr(module, "q_bias", None) is not None:
            torch.nn.init.normal_(module.q_bias, 0.0, 1.0)
            module.qkv_bias_separate = separate
    return model


LAYOUTS = {  # name: (builder, resolution); every one of them takes the exact path (no fallback)
    "dinov2-reg4": (lambda: random_timm("vit_small_patch14_reg4_dinov2.lvd142m", 56), 56),
    "qk-norm": (lambda: _with_random_affine_qk_norm(
        random_timm("vit_small_patch14_reg4_dinov2.lvd142m", 56, depth=3, qk_norm=True)), 56),
    "parallel-rmsnorm-qk": (lambda: _with_random_affine_qk_norm(random_timm("vit_base_patch16_xp_224", 64, depth=2)),
                            64),
    "dinov3-eva-rope": (lambda: random_timm("vit_small_patch16_dinov3.lvd1689m", 64, depth=2), 64),
    "eva-fused-query-bias": (lambda: _with_random_query_bias(
        random_timm("vit_small_patch16_dinov3_qkvb", 64, depth=2)), 64),
    "eva-separate-bias": (lambda: _with_random_query_bias(
        random_timm("vit_small_patch16_dinov3_qkvb", 64, depth=2), separate=True), 64),
    "eva02-separate-projections": (lambda: random_timm("eva02_base_patch14_224.mim_in22k", 56, depth=2), 56),
    "eva02-qk-norm": (lambda: _with_random_affine_qk_norm(
        random_timm("eva02_tiny_patch14_224.mim_in22k", 56, depth=2, qk_norm=True)), 56),
    "rope-mixed": (lambda: random_timm("vit_small_patch16_rope_mixed_224", 64, depth=2), 64),
    "grouped-query-rope": (lambda: random_timm("vit_base_patch16_sapiens2", 64, depth=2, num_kv_heads=4), 64),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_cls_attention_is_exact_on_every_reused_projection_layout(layout):
    build, size = LAYOUTS[layout]
    model = build()
    assert hooks.attention_plan(model.blocks[-1], lambda *_: None) is not None  # not the fallback
    images = torch.randn(2, 3, size, size)
    depth = len(model.blocks)
    capture = hooks.capture_tokens(model, images, attention_blocks=(0, -1))
    for index in (0, depth - 1):
        torch.testing.assert_close(capture.cls_attention[index], unfused_cls_rows(model, images, index),
                                   atol=1e-5, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = hooks.capture_tokens(model, images).cls_attention[depth - 1]
    torch.testing.assert_close(mixed, capture.cls_attention[depth - 1], atol=2e-2, rtol=0)


def test_an_attention_layout_without_a_plan_falls_back_to_unfused_probabilities():
    model = random_timm("vit_small_patch14_reg4_dinov2.lvd142m", 56, depth=2, attn_layer="diff")
    assert hooks.attention_plan(model.blocks[-1], lambda *_: None) is None
    capture = hooks.capture_tokens(model, torch.randn(2, 3, 56, 56))
    rows = capture.cls_attention[1]
    assert rows.shape == (2, 2 * model.blocks[-1].attn.num_heads, 21)  # differential attention: two maps a head
    torch.testing.assert_close(rows.sum(-1), torch.ones(rows.shape[:2]))
    assert model.blocks[-1].attn.fused_attn


@pytest.mark.parametrize("layout", ["eva-fused-query-bias", "eva02-separate-projections", "parallel-rmsnorm-qk"])
def test_keys_are_the_last_blocks_raw_key_projection(layout):
    build, size = LAYOUTS[layout]
    model = build()
    images = torch.randn(2, 3, size, size)
    block = model.blocks[-1]
    seen = {}
    if hasattr(block, "attn"):
        handle = block.attn.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    else:  # parallel block: its input projection's input
        handle = block.in_proj.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    try:
        capture = hooks.capture_tokens(model, images, keep_keys=True)
    finally:
        handle.remove()
    with torch.inference_mode():
        if hasattr(block, "attn") and block.attn.k_proj is not None:
            expected = block.attn.k_proj(seen["x"])
        elif hasattr(block, "attn"):
            dim = block.attn.num_heads * block.attn.head_dim
            expected = torch.nn.functional.linear(seen["x"], block.attn.qkv.weight[dim : 2 * dim], block.attn.k_bias)
        else:
            start, dim = block.in_split[0], block.in_split[1]
            expected = block.in_proj(seen["x"])[..., start + dim : start + 2 * dim]
    torch.testing.assert_close(capture.keys, expected)


@pytest.mark.parametrize("layout", ["exact", "fallback"])
def test_hooks_removed_and_fused_state_restored_when_the_attention_raises(layout):
    overrides = {"attn_layer": "diff"} if layout == "fallback" else {}
    model = random_timm("vit_small_patch14_reg4_dinov2.lvd142m", 56, depth=3, **overrides)
    last = model.blocks[-1].attn

    def explode(_module, _inputs, _output):
        raise RuntimeError("boom")

    handle = last.proj.register_forward_hook(explode)  # after the CLS row's own hooks have run
    with pytest.raises(RuntimeError, match="boom"):
        hooks.capture_tokens(model, torch.randn(1, 3, 56, 56), attention_blocks=(0, -1), keep_keys=True)
    handle.remove()
    assert last.fused_attn and model.blocks[0].attn.fused_attn
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._forward_hooks_with_kwargs
                    or module._forward_pre_hooks_with_kwargs)
    capture = hooks.capture_tokens(model, torch.randn(1, 3, 56, 56))  # and the model still runs
    torch.testing.assert_close(capture.cls_attention[2].sum(-1), torch.ones(1, capture.cls_attention[2].shape[1]))


# --- non-finite values: refused, naming where they first appear ---------------------------------------------


@pytest.fixture()
def tiny_copy(tiny):
    import copy

    return copy.deepcopy(tiny[0])


@pytest.mark.parametrize("block, weight", [(0, "attn.qkv.weight"), (3, "mlp.fc1.weight"), (11, "attn.proj.weight")])
def test_a_nan_weight_in_block_k_is_refused_naming_block_k(tiny_copy, block, weight):
    with torch.no_grad():
        tiny_copy.blocks[block].get_parameter(weight).view(-1)[7] = float("nan")
    with pytest.raises(hooks.NonFiniteError, match=rf"block {block} of 12\b") as raised:
        hooks.capture_tokens(tiny_copy, torch.randn(2, 3, 224, 224))
    message = str(raised.value)
    assert "\n" not in message and "394 of 394 tokens (2 images)" in message
    assert isinstance(raised.value, ValueError)


def test_a_nan_in_the_patch_embedding_weight_names_the_patch_embedding(tiny_copy):
    with torch.no_grad():
        tiny_copy.patch_embed.proj.weight[5, 0, 0, 0] = float("nan")
    with pytest.raises(hooks.NonFiniteError, match="patch embedding: 392 of 392 patch tokens"):
        hooks.capture_tokens(tiny_copy, torch.randn(2, 3, 224, 224))


def test_the_first_block_and_its_count_are_named_as_values_spread(tiny_copy):
    """One infinite token in block 4 spreads to every token through block 5's attention: block 4, 1 token."""
    def plant(_module, _inputs, output):
        output = output.clone()
        output[1, 30, 0] = float("inf")
        return output

    tiny_copy.blocks[4].register_forward_hook(plant)
    with pytest.raises(hooks.NonFiniteError, match=r"block 4 of 12 \(counting from 0\): 1 of 394 tokens"):
        hooks.capture_tokens(tiny_copy, torch.randn(2, 3, 224, 224))


def test_a_nan_after_every_block_names_the_final_norm(tiny_copy):
    with torch.no_grad():
        tiny_copy.norm.weight[0] = float("nan")
    with pytest.raises(hooks.NonFiniteError, match="final norm"):
        hooks.capture_tokens(tiny_copy, torch.randn(1, 3, 224, 224))


def test_check_finite_on_a_capture():
    norms = torch.ones(2, 4, 10)
    capture = hooks.Capture(1, (3, 3), patch_embed=torch.zeros(2, 9, 8), block_norms=norms)
    hooks.check_finite(capture)  # all finite: nothing raised
    norms[1, 2, 3] = float("nan")
    norms[0, 3, :] = float("inf")
    with pytest.raises(hooks.NonFiniteError, match=r"block 2 of 4 \(counting from 0\): 1 of 20 tokens"):
        hooks.check_finite(capture)
    capture.output = torch.full((2, 10, 8), float("nan"))
    capture.patch_embed[0, 4, 1] = float("-inf")
    with pytest.raises(hooks.NonFiniteError, match="patch embedding: 1 of 18 patch tokens"):
        hooks.check_finite(capture)
    huge = hooks.Capture(1, (3, 3), patch_embed=torch.full((2, 9, 8), 3e38), block_norms=torch.ones(2, 4, 10))
    hooks.check_finite(huge)  # a sum that overflows is not a non-finite value
