"""The hooked pass against timm's own forward_intermediates, planted tokens, and hook hygiene."""

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
