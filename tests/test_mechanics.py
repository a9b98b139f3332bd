"""Every model the study names runs through every page's building blocks, without its weights.

Random weights at reduced depth (timm's ``depth=`` keeps each architecture's blocks: registers, SwiGLU,
LayerScale, CLIP's pre-norm, RoPE, patch 8/14/16) at the paper's resolution on one or two images. What is
checked is mechanics — shapes, hooks, prefix split, the intervention, LOST — not findings.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from analysis import discovery, findings, hooks, images, intervention, models, params, probes
from analysis.features import frames_from_capture

PAPER_RESOLUTION = params.COMMON_PAPER["resolution"]
EXTRA = ["vit_small_patch16_dinov3.lvd1689m", "eva02_base_patch14_224.mim_in22k", "vit_base_patch16_siglip_224.webli"]
NAMES = sorted({models.ModelSpec.parse(m).name for m in params.models_of(params.PAPER)}
               | {n for names in models.FAMILIES.values() for n in names} | set(EXTRA))


def test_the_paper_set_and_the_families_are_timm_pretrained_tags():
    """A renamed or removed timm tag fails here, not on a researcher's GPU."""
    pretrained = set(timm.list_pretrained())
    missing = [name for name in NAMES if name not in pretrained]
    assert not missing, f"not timm pretrained tags (timm {timm.__version__}): {missing}"


def resolution_for(model: torch.nn.Module) -> int:
    patch = models.patch_size(model)
    return PAPER_RESOLUTION // patch * patch


@pytest.mark.parametrize("name", NAMES)
def test_every_page_mechanism_runs_on(name):
    torch.manual_seed(0)
    probe = models.build_architecture(name, device="meta")
    resolution = resolution_for(probe)
    model = models.build_architecture(name, resolution, depth=2)
    pixels = images.pixel_batch(images.list_images("builtin")[:2], model, resolution)
    capture = hooks.capture_tokens(model, pixels, keep_output=True, keep_keys=True)
    prefix, grid = capture.num_prefix_tokens, capture.grid
    n_patches = grid[0] * grid[1]
    assert capture.block_norms.shape == (2, 2, prefix + n_patches)
    assert capture.patch_embed.shape[:2] == (2, n_patches)
    assert capture.keys.shape[:2] == capture.output.shape[:2] == (2, prefix + n_patches)
    frames = frames_from_capture(capture, ["a", "b"])
    assert len(frames["patches"]) == 2 * n_patches
    cls = hooks.has_cls_token(model)
    assert frames["patches"].cls_attention.notna().all() == cls  # no CLS token: no CLS attention (nan)
    # norm, layer and position findings
    norms = capture.block_norms[:, :, prefix:].numpy()
    assert findings.block_table(norms).shape[0] == 2
    high = norms[:, -1] > np.quantile(norms[:, -1], 0.98)  # a stand-in mask: random weights have no outliers
    findings.position_stability(high)
    findings.position_matched_auc(frames["patches"].neighbour_cosine.to_numpy().reshape(2, -1), high)
    # probes on output tokens
    tokens = capture.output[:, prefix:].numpy()
    pixel_patches = probes.patch_pixels(pixels.numpy(), models.patch_size(model))
    assert tokens.shape[1] == pixel_patches.shape[1] == n_patches  # one pixel target per patch token
    first_row = slice(0, grid[1])  # one grid row keeps the probe small (a class per position)
    local = probes.local_information(tokens[:, first_row], pixel_patches[:, first_row], np.array([0]), np.array([1]),
                                     grid[1])
    assert local["position_correct"].shape == (1, grid[1])
    # test-time register: units chosen, moved onto an inserted token
    neurons = intervention.choose_neurons(model, pixels, torch.from_numpy(high), top_k=1)
    assert neurons, "a planted mask always has a best-scoring unit"
    with intervention.test_time_register(model, neurons) as index:
        moved = hooks.capture_tokens(model, pixels, keep_keys=True)
    assert index == prefix and moved.num_prefix_tokens == prefix + 1
    assert moved.block_norms.shape == (2, 2, prefix + 1 + n_patches)
    # LOST on the last block's keys
    boxes = discovery.pixel_boxes(discovery.discover(capture.keys[:, prefix:].numpy(), grid), models.patch_size(model),
                                  [(1.0, 1.0)] * 2)
    assert len(boxes) == 2
