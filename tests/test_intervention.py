"""Test-time registers: the neuron search on planted activations, the intervention on a planted
outlier mechanism, and on the real ViT-Ti whose outliers come from one MLP unit."""

import pytest
import torch

from analysis import hooks, images, intervention, models
from analysis.claims import Verdict, judge_test_time_registers


def test_search_finds_the_planted_neuron():
    torch.manual_seed(0)
    activations = {b: torch.randn(3, 1 + 16, 32).abs() for b in range(4)}
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, 5] = True
    activations[2][:, 1 + 5, 7] = 50.0  # unit 7 of block 2 fires only at the outlier patch
    found = intervention.find_register_neurons(activations, mask, num_prefix_tokens=1, top_k=3)
    assert (found[0].block, found[0].neuron) == (2, 7)
    assert found[0].mean_at_outliers == pytest.approx(50.0)
    assert len(found) == 1  # the rest score below 10 % of the planted unit


def test_search_without_outliers_finds_nothing():
    activations = {0: torch.rand(2, 5, 8)}
    assert intervention.find_register_neurons(activations, torch.zeros(2, 4, dtype=torch.bool), 1) == []


def planted_model():
    """A random ViT whose block-2 unit 7 fires at 400 on patch (1, 2): a hand-made register neuron."""
    torch.manual_seed(0)
    model = models.build_architecture("vit_small_patch16_224.augreg_in21k", 64)  # CLS + a 4x4 grid, no LayerScale
    patch = 1 * 4 + 2

    def plant(_module, _inputs, hidden):
        hidden = hidden.clone()
        hidden[:, model.num_prefix_tokens + patch, 7] = 400.0
        return hidden

    model.blocks[2].mlp.act.register_forward_hook(plant)
    return model, patch


def test_intervention_moves_the_planted_outlier_onto_the_new_token():
    model, patch = planted_model()
    images_ = torch.randn(2, 3, 64, 64)
    before = hooks.capture_tokens(model, images_)
    outliers = before.patch_norms[:, -1] > 5 * before.patch_norms[:, -1].median()
    assert outliers[:, patch].all() and outliers.sum() == 2  # the planted patch, in both images

    activations = intervention.mlp_activations(model, images_, range(len(model.blocks)))
    neurons = intervention.find_register_neurons(activations, outliers, model.num_prefix_tokens, top_k=1)
    assert [(n.block, n.neuron) for n in neurons] == [(2, 7)]

    with intervention.test_time_register(model, neurons) as index:
        after = hooks.capture_tokens(model, images_)
    assert index == 1 and after.num_prefix_tokens == 2
    assert after.patch_norms.shape == before.patch_norms.shape
    assert after.patch_norms[:, -1, patch].max() < 3 * before.patch_norms[:, -1].median()
    assert after.prefix_norms[:, -1, index].min() > before.patch_norms[:, -1].median() * 5


def test_intervention_is_undone_after_an_exception():
    model, _ = planted_model()
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    with pytest.raises(RuntimeError):
        with intervention.test_time_register(model, [intervention.RegisterNeuron(2, 7, 1.0, 0.0)]):
            raise RuntimeError("interrupted")
    assert model.num_prefix_tokens == 1
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before


def test_real_vit_tiny_outliers_vanish(tiny):
    model, _ = tiny
    transform = images.make_transform(model, 224)
    pixels = torch.stack([transform(r.load()) for r in images.list_images("builtin")[:6]])
    before = hooks.capture_tokens(model, pixels)
    outliers = before.patch_norms[:, -1] > 150
    assert outliers.any()
    activations = intervention.mlp_activations(model, pixels, range(len(model.blocks)))
    neurons = intervention.find_register_neurons(activations, outliers, model.num_prefix_tokens)
    assert neurons and neurons[0].block == 7  # the outliers first appear at block 7's output
    with intervention.test_time_register(model, neurons) as index:
        after = hooks.capture_tokens(model, pixels)
    assert (after.patch_norms[:, -1] > 150).sum() == 0
    assert after.prefix_norms[:, -1, index].min() > 150


def test_verdict_rule():
    assert judge_test_time_registers(False, 0.02, 0.0, 1)[0] is Verdict.REPRODUCED
    assert judge_test_time_registers(False, 0.02, 0.015, 1)[0] is Verdict.NOT_REPRODUCED
    assert judge_test_time_registers(False, 0.02, 0.02, 0)[0] is Verdict.NOT_REPRODUCED
    assert judge_test_time_registers(False, 0.0, 0.0, 0)[0] is Verdict.NOT_TESTABLE
    assert judge_test_time_registers(True, 0.02, 0.0, 1)[0] is Verdict.NOT_TESTABLE
