"""Test-time registers: the unit search on planted activations, the intervention on planted outlier
mechanisms (a plain MLP and a SwiGLU MLP as in DINOv2 ViT-g), bounded memory, and the real ViT-Ti."""

import pytest
import torch
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer

from analysis import hooks, images, intervention, models


def contrast_of(activations: dict[int, torch.Tensor], mask: torch.Tensor, prefix: int) -> intervention.UnitContrast:
    """The streamed sums for hand-made activations ``{block: (B, N, H)}``."""
    result = intervention.UnitContrast({}, {}, int(mask.sum()), int(mask.numel() - mask.sum()))
    for block, values in activations.items():
        patches = values[:, prefix:]
        at = (patches * mask.unsqueeze(-1)).sum((0, 1))
        result.at_outliers[block], result.elsewhere[block] = at, patches.sum((0, 1)) - at
    return result


def test_search_finds_the_planted_unit():
    torch.manual_seed(0)
    activations = {b: torch.randn(3, 1 + 16, 32).abs() for b in range(4)}
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, 5] = True
    activations[2][:, 1 + 5, 7] = 50.0  # unit 7 of block 2 fires only at the outlier patch
    found = intervention.find_register_neurons(contrast_of(activations, mask, 1), top_k=3)
    assert (found[0].block, found[0].neuron) == (2, 7)
    assert found[0].mean_at_outliers == pytest.approx(50.0)
    assert len(found) == 1  # the rest score below 10 % of the planted unit


def test_search_without_outliers_finds_nothing():
    mask = torch.zeros(2, 4, dtype=torch.bool)
    assert intervention.find_register_neurons(contrast_of({0: torch.rand(2, 5, 8)}, mask, 1)) == []


def planted_model(glu: bool = False):
    """A random ViT whose block-2 hidden unit 7 (the input of fc2) is 400 on patch (1, 2).

    ``glu``: a SwiGLU MLP (timm's ``SwiGLUPacked``, DINOv2 ViT-g's), where the unit is the product
    gate x value that feeds fc2, not the gate alone.
    """
    torch.manual_seed(0)
    if glu:
        model = VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=2, mlp_ratio=4,
                                  mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU).eval()
    else:
        model = models.build_architecture("vit_small_patch16_224.augreg_in21k", 64)  # CLS + a 4x4 grid
    patch = 1 * 4 + 2

    def plant(_module, inputs):
        hidden = inputs[0].clone()
        hidden[:, model.num_prefix_tokens + patch, 7] = 400.0
        return (hidden,)

    model.blocks[2].mlp.fc2.register_forward_pre_hook(plant)
    return model, patch


@pytest.mark.parametrize("glu", [False, True])
def test_intervention_moves_the_planted_outlier_onto_the_new_token(glu):
    model, patch = planted_model(glu)
    pixels = torch.randn(4, 3, 64, 64)
    before = hooks.capture_tokens(model, pixels)
    outliers = before.patch_norms[:, -1] > 5 * before.patch_norms[:, -1].median()
    assert outliers[:, patch].all() and outliers.sum() == 4  # the planted patch, in every image

    neurons = intervention.choose_neurons(model, pixels, outliers, batch_size=2, top_k=1)
    assert [(n.block, n.neuron) for n in neurons] == [(2, 7)]
    with intervention.test_time_register(model, neurons) as index:
        after = hooks.capture_tokens(model, pixels)
    assert index == 1 and after.num_prefix_tokens == 2
    assert after.patch_norms.shape == before.patch_norms.shape
    assert after.patch_norms[:, -1, patch].max() < 3 * before.patch_norms[:, -1].median()
    assert after.prefix_norms[:, -1, index].min() > before.patch_norms[:, -1].median() * 5


def test_unit_statistics_do_not_grow_with_images():
    """The hook reduces each batch to (H,) sums per block: the same state after 2 or 20 batches."""
    model, patch = planted_model()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, patch] = True
    few = intervention.unit_contrast(model, [(torch.randn(2, 3, 64, 64), mask)] * 2)
    many = intervention.unit_contrast(model, [(torch.randn(2, 3, 64, 64), mask)] * 20)
    assert {b: t.shape for b, t in few.at_outliers.items()} == {b: t.shape for b, t in many.at_outliers.items()}
    assert all(t.shape == (model.blocks[0].mlp.fc2.in_features,) for t in many.elsewhere.values())
    assert many.n_outliers == 40 and many.n_elsewhere == 20 * 2 * 16 - 40


def test_intervention_is_undone_after_an_exception():
    model, _ = planted_model()
    hooks_before = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    with pytest.raises(RuntimeError):
        with intervention.test_time_register(model, [intervention.RegisterNeuron(2, 7, 1.0, 0.0)]):
            raise RuntimeError("interrupted")
    assert model.num_prefix_tokens == 1
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()) == hooks_before


def test_real_vit_tiny_outliers_vanish_on_images_not_used_to_choose(tiny):
    model, _ = tiny
    pixels = images.pixel_batch(images.list_images("builtin")[:8], model, 224)
    before = hooks.capture_tokens(model, pixels)
    outliers = before.patch_norms[:, -1] > 150
    assert outliers.any()
    neurons = intervention.choose_neurons(model, pixels[:4], outliers[:4])
    assert neurons and neurons[0].block == 7  # the outliers first appear at block 7's output
    with intervention.test_time_register(model, neurons) as index:
        after = hooks.capture_tokens(model, pixels[4:])
    assert outliers[4:].any() and (after.patch_norms[:, -1] > 150).sum() == 0
    assert after.prefix_norms[:, -1, index].min() > 150
