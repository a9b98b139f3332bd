"""Twins: planted high-norm tokens read back from the feature frames against their declared truth, and twin bulks
held to the real network's shape."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import features, findings, hooks, images, models, twins

TINY = models.OFFLINE_MODEL
from conftest import TWIN_IMAGES as N_IMAGES, TWIN_SOURCE  # noqa: E402  (the 12 original photos, as validation)
LAST = 11


@pytest.fixture(scope="session")
def twin(twin_pass):
    """``twin(name)``: the cached pass of the registered twin ``name`` (conftest's ``twin_pass``)."""
    return twin_pass


@pytest.fixture(scope="session")
def plain_tiny(weights_dir, twin_cache):
    """The real ViT-Ti without a plant, on the same 12 photos."""
    options = features.RunOptions(TWIN_SOURCE, N_IMAGES, 224, weights_dir=weights_dir, cache_dir=twin_cache,
                                  allow_hub=False, progress=False)
    return features.extract(TINY, options)


def ratios(f: features.Features) -> np.ndarray:
    """``(B, L, Np)`` patch norm / that image's median of *non-planted* patches at that block (cache order)."""
    norms = findings.patch_norms(f)
    masks = twins.planted_masks(f.meta)
    planted = (masks["outliers"] | masks["between"])[:, None, :]
    return norms / np.nanmedian(np.where(planted, np.nan, norms), axis=2, keepdims=True)


def finals(f: features.Features, kind: str = "outliers") -> np.ndarray:
    """``(B, Np)`` the planted final ratios (0 where nothing of ``kind`` was planted)."""
    prefix = f.meta["num_prefix_tokens"]
    out = np.zeros((len(f.meta["images"]), f.grid[0] * f.grid[1]))
    for row, image in enumerate(f.meta["images"]):
        planted = f.meta["planted"][image["image_id"]]
        for token, value in zip(planted[kind], planted[f"{kind[:-1] if kind == 'outliers' else kind}_ratios"]):
            if token >= prefix:
                out[row, token - prefix] = value
    return out


# ---------------------------------------------------------------------------------------------- declared truth


def test_plant_is_hashable_json_able_and_refuses_nonsense():
    plant = twins.TWINS["dev-pinned"]
    assert len({plant, twins.Plant.from_dict(json.loads(json.dumps(plant.as_dict())))}) == 1
    assert twins.Plant.from_dict(plant.as_dict()) == plant
    assert plant.native == twins.VIT_TINY_NATIVE
    with pytest.raises(ValueError, match="where"):
        twins.Plant("x", "everywhere")
    with pytest.raises(ValueError, match="positions"):
        twins.Plant("x", "pinned")
    with pytest.raises(ValueError, match="line"):
        twins.Plant("x", "redundant", ratios=(2.0, 8.0))  # outliers start at the paper's 3x line
    with pytest.raises(ValueError, match="below the line"):
        twins.Plant("x", "redundant", between_ratios=(2.0, 4.0))  # between tokens are not outliers: below 3x
    with pytest.raises(ValueError, match="own outlier"):
        twins.Plant("x", "pinned", positions=(0, 5), native=twins.VIT_TINY_NATIVE)
    with pytest.raises(ValueError, match="share"):
        twins.Plant("x", "random", share=0.0)


def test_the_families_are_apart_and_shaped_like_the_papers_models():
    dev, held = twins.FAMILIES["development"], twins.FAMILIES["held-out"]
    assert not set(dev) & set(held) and set(dev) | set(held) == set(twins.TWINS)
    assert all(twins.TWINS[name].seed < 100 for name in dev) and all(twins.TWINS[name].seed >= 100 for name in held)
    shapes = lambda names: {(p.share, p.ratios, p.onset_block, p.ramp_blocks, p.empty_share)  # noqa: E731
                            for p in map(twins.TWINS.get, names) if p.where != "none"}
    assert not shapes(dev) & shapes(held)  # no held-out shape is a development shape (nothing-planted twins aside)
    for plant in twins.TWINS.values():
        if plant.where != "none":  # the paper's 3-11x the median
            assert twins.LINE <= plant.ratios[0] and plant.ratios[1] <= twins.PAPER_RATIOS[1]
    assert min(p.share for p in twins.TWINS.values() if p.where in ("random", "redundant")) == 0.002  # down to 0.2 %
    assert all(twins.family_of(name) == "development" for name in dev)
    for registers, plain in twins.REGISTER_PAIRS.items():
        assert twins.TWIN_BASES[registers] == twins.REGISTER_BASE and twins.TWIN_BASES[plain] == twins.PLAIN_REGISTER_BASE
        assert twins.family_of(registers) == twins.family_of(plain)


def test_declared_truth_of_the_plants():
    grid = (14, 14)
    redundant = twins.truth(twins.TWINS["dev-redundant"], 12, grid)
    assert redundant.has_outliers and redundant.redundant is True and redundant.onset_block == 4
    assert redundant.share == 0.02 and redundant.blocks_with_outliers() == list(range(4, 12))
    assert redundant.native_replaced == twins.VIT_TINY_NATIVE.positions
    assert twins.truth(twins.TWINS["dev-random"], 12, grid).redundant is False
    pinned = twins.truth(twins.TWINS["held-pinned"], 12, grid)
    assert pinned.redundant is None and pinned.pinned and pinned.positions == twins.HELD_OUT_PINNED
    assert pinned.share == pytest.approx(6 * 0.9 / 196)
    none = twins.truth(twins.TWINS["dev-none"], 12, grid)
    assert not none.has_outliers and none.share == 0 and none.onset_block is None
    registers = twins.truth(twins.TWINS["dev-registers"], 12, (16, 16))
    assert registers.in_registers and registers.has_outliers and registers.share == 0.001  # a few left over
    assert not twins.truth(twins.TWINS["held-registers-clean"], 12, (16, 16)).has_outliers
    realised = twins.truth(twins.TWINS["dev-redundant"], 12, grid, counts=(3, 0, 5), between=(1, 1, 0))
    assert realised.share == pytest.approx(8 / (3 * 196)) and realised.share_with_between == pytest.approx(10 / 588)
    assert realised.empty_images == 1
    with pytest.raises(ValueError, match="blocks"):
        twins.truth(twins.TWINS["dev-late"], 8, grid)
    with pytest.raises(ValueError, match="grid"):
        twins.truth(twins.TWINS["dev-pinned"], 12, (8, 8))


def test_planted_ratios_grow_over_the_blocks_and_cross_the_line_at_the_onset():
    final = np.array([3.0, 5.0, 11.0])
    assert twins.ratio_at(final, 1, onset=4, ramp=2) is None  # 3 / 1.5**3 < 1: untouched
    np.testing.assert_allclose(twins.ratio_at(final, 2, 4, 2), [4 / 3] * 3)
    np.testing.assert_allclose(twins.ratio_at(final, 3, 4, 2), [2.0] * 3)  # below the line the block before
    at_onset = twins.ratio_at(final, 4, 4, 2)
    assert (at_onset >= twins.LINE).all() and (at_onset[1:] < final[1:]).all()  # on the way to the final
    np.testing.assert_allclose(twins.ratio_at(final, 6, 4, 2), final)  # the final ratio after the ramp
    np.testing.assert_allclose(twins.ratio_at(final, 11, 4, 2), final)
    assert (np.diff([twins.ratio_at(final, b, 4, 2) for b in range(2, 8)], axis=0) >= 0).all()  # never shrinks


def test_counts_vary_per_image_with_empty_images():
    plant = twins.TWINS["dev-redundant"]
    rng = np.random.default_rng(0)
    counts = np.array([twins.draw_count(rng, plant, 196) for _ in range(4000)])
    assert (counts == 0).mean() == pytest.approx(plant.empty_share, abs=0.02)
    assert counts.mean() / 196 == pytest.approx(plant.share, rel=0.1)
    assert counts[counts > 0].std() > np.sqrt(counts[counts > 0].mean())  # over-dispersed: more than Poisson
    assert counts.max() <= 196 // 4


# ---------------------------------------------------------------------------------------------- the base network


def test_the_vit_tiny_grows_its_own_outliers_at_the_corners_from_block_6(plain_tiny):
    """VIT_TINY_NATIVE is measured on the plain network, not on a twin."""
    norms = findings.patch_norms(plain_tiny)
    ratio = norms / np.median(norms, axis=2, keepdims=True)
    corners = list(twins.VIT_TINY_NATIVE.positions)
    rest = np.delete(ratio, corners, axis=2)
    born = twins.VIT_TINY_NATIVE.born
    assert (ratio[:, :born, corners].max(axis=(0, 2)) < 1.6).all()  # normal before
    assert ratio[:, born, corners].max() > 2.5 > rest[:, born].max()  # leaving the bulk at block 6
    assert (ratio[:, born + 1:, corners].max(axis=(0, 2)) > 20).all() and (rest.max(axis=(0, 2)) < 2).all()
    frequent = np.argsort(-(ratio[:, -1] > 3).mean(0))[:4]
    assert set(frequent.tolist()) == set(corners)
    assert not set(corners) & set(twins.PINNED_POSITIONS) | set(corners) & set(twins.HELD_OUT_PINNED)


def test_none_twin_has_no_high_norm_patch_and_the_real_bulks_shape(twin, plain_tiny):
    """The corners are replaced by neighbour copies, nothing is rescaled: no pile at the median, no new outliers,
    and every block's bulk has the real model's skew and kurtosis (corners left out)."""
    f = twin("dev-none")
    assert (ratios(f).max(axis=(0, 2)) < 1.8).all()  # the real model's bulk reaches 1.76x at block 0
    twin_norms, real = findings.patch_norms(f), findings.patch_norms(plain_tiny)
    keep = np.setdiff1d(np.arange(196), twins.VIT_TINY_NATIVE.positions)
    for block in range(f.depth):
        shaped, truth = twins.bulk_shape(twin_norms[:, block]), twins.bulk_shape(real[:, block][:, keep])
        assert shaped["skew"] == pytest.approx(truth["skew"], abs=0.5), block
        assert shaped["excess_kurtosis"] == pytest.approx(truth["excess_kurtosis"], abs=1.0), block
        assert shaped["log_sd"] == pytest.approx(truth["log_sd"], rel=0.3), block
    at_median = np.isclose(twin_norms[:, -1], np.median(twin_norms[:, -1], axis=1, keepdims=True), rtol=1e-4)
    assert at_median.sum(1).max() <= 2  # no pile: at most the median itself (and a copy of it)
    replaced = {int(k): v for k, v in f.meta["planted"][f.meta["images"][0]["image_id"]]["replaced"].items()}
    assert set(replaced) == set(twins.VIT_TINY_NATIVE.positions) and replaced[0] == 15  # (0, 0) copies (1, 1)
    last = twin_norms[:, -1]
    np.testing.assert_allclose(last[:, 0], last[:, 15], rtol=1e-5)  # the copy has its neighbour's norm


def test_every_twin_of_the_vit_tiny_keeps_its_unplanted_patches_in_the_bulk(twin):
    for name in ("dev-redundant", "dev-random", "held-random-high", "held-pinned"):
        f = twin(name)
        masks = twins.planted_masks(f.meta)
        planted = (masks["outliers"] | masks["between"])[:, None, :]
        unplanted = np.where(planted, np.nan, ratios(f))
        assert np.nanmax(unplanted) < 2.0, name  # no new outlier grows elsewhere


# ---------------------------------------------------------------------------------------------- read back from frames


def test_redundant_twin_plants_the_top_cosine_patches_in_varying_numbers(twin):
    f = twin("dev-redundant")
    truth = twins.truth_of(f.meta)
    plant = twins.TWINS["dev-redundant"]
    masks = twins.planted_masks(f.meta)
    counts = masks["outliers"].sum(1)
    assert tuple(counts) == truth.counts and truth.share == pytest.approx(counts.sum() / (N_IMAGES * 196))
    assert len(set(counts)) > 3 and (counts == 0).any()  # the number varies; some images hold none
    cosine = findings.patch_grid(f, "neighbour_cosine")
    allowed = np.setdiff1d(np.arange(196), plant.native_positions)
    for row in range(N_IMAGES):
        top = allowed[np.argsort(-cosine[row, allowed], kind="stable")[: counts[row]]]
        assert set(np.flatnonzero(masks["outliers"][row])) == set(top)  # exactly the most redundant patches
    assert not (masks["outliers"] & masks["between"]).any()
    last = ratios(f)[:, LAST]
    np.testing.assert_allclose(last[masks["outliers"]], finals(f)[masks["outliers"]], rtol=0.02)
    assert last[masks["outliers"]].min() >= twins.LINE and last[masks["outliers"]].max() <= plant.ratios[1] * 1.02
    assert f.provenance.model == TINY and f.meta["plant"] == plant.as_dict()


def test_onset_planted_tokens_cross_the_line_exactly_at_the_onset_block(twin):
    for name in ("dev-redundant", "dev-early", "held-redundant-near"):
        f = twin(name)
        truth = twins.truth_of(f.meta)
        outliers = twins.planted_masks(f.meta)["outliers"]
        planted = ratios(f).transpose(1, 0, 2)[:, outliers]  # (L, planted tokens)
        onset = truth.onset_block
        assert (planted[onset:] >= twins.LINE * 0.999).all(), name
        assert (planted[:onset] < twins.LINE).all(), name
        if onset >= 1:
            np.testing.assert_allclose(planted[onset - 1], 2.0, rtol=0.02)  # 2x the median the block before
        assert (np.diff(planted[onset:], axis=0) >= -0.02 * planted[onset + 1:]).all(), name  # growing, then flat


def test_random_twin_outliers_differ_between_images_and_ignore_redundancy(twin):
    f = twin("dev-random")
    masks = twins.planted_masks(f.meta)["outliers"]
    found = [frozenset(np.flatnonzero(row)) for row in masks if row.any()]
    assert len(set(found)) == len(found)  # a different draw per image
    cosine = findings.patch_grid(f, "neighbour_cosine")
    top = [set(np.argsort(-cosine[i])[: masks[i].sum()]) for i in range(N_IMAGES)]
    overlap = sum(len(set(np.flatnonzero(masks[i])) & top[i]) for i in range(N_IMAGES)) / masks.sum()
    assert overlap <= 0.15


def test_random_selection_does_not_depend_on_the_batch(tiny):
    model, _ = tiny
    records = images.readable_sample(images.list_images("builtin"), 3, 0).records
    pixels = images.pixel_batch(records, model, 224)
    plant = twins.TWINS["dev-random"]
    with twins.attach(model, plant) as ledger:
        together = hooks.capture_tokens(model, pixels).patch_norms[:, LAST]
        alone = torch.cat([hooks.capture_tokens(model, pixels[i : i + 1]).patch_norms[:, LAST] for i in (2, 0, 1)])
    alone = alone[[1, 2, 0]]
    singles = {2: ledger.passes[1][0], 0: ledger.passes[2][0], 1: ledger.passes[3][0]}  # passes in order 2, 0, 1
    assert [image.outliers for image in ledger.passes[0]] == [singles[i].outliers for i in range(3)]
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-3)


def test_pinned_twins_plant_their_positions(twin):
    f = twin("dev-pinned")
    masks = twins.planted_masks(f.meta)["outliers"]
    assert (masks[:, list(twins.PINNED_POSITIONS)]).all() and masks.sum() == 4 * N_IMAGES
    held = twins.planted_masks(twin("held-pinned").meta)["outliers"]
    assert set(np.flatnonzero(held.any(0))) <= set(twins.HELD_OUT_PINNED)
    assert 0.75 <= held[:, list(twins.HELD_OUT_PINNED)].mean() < 1  # each position absent now and then


def test_between_tokens_lie_below_the_line_and_are_not_outliers(twin):
    f = twin("held-redundant-near")
    between = twins.planted_masks(f.meta)["between"]
    assert between.sum() > 0
    last = ratios(f)[:, LAST][between]
    low, high = twins.TWINS["held-redundant-near"].between_ratios
    assert (last >= 0.98 * low).all() and (last <= 1.02 * high).all() and (last < twins.LINE).all()
    np.testing.assert_allclose(last, finals(f, "between")[between], rtol=0.02)


def test_register_twins_move_the_norm_into_the_registers_and_leave_a_few(twin):
    f, plain = twin("dev-registers"), twin("dev-reg-plain")
    truth = twins.truth_of(f.meta)
    plant = twins.TWINS["dev-registers"]
    assert f.provenance.is_random and f.meta["num_registers"] == 4 and f.grid == (16, 16)
    assert plain.meta["num_registers"] == 0 and plain.grid == (16, 16)
    assert truth.in_registers and truth.has_outliers and 0 < truth.share < twins.truth_of(plain.meta).share / 5
    median = f.norms[f.norms.kind == "patch"].groupby(["image_id", "block"]).norm.median()
    registers = f.norms[f.norms.kind == "register"].set_index(["image_id", "block"]).norm
    ratio = registers / median.reindex(registers.index)
    blocks = ratio.index.get_level_values("block")
    assert (ratio[blocks >= plant.onset_block] >= twins.LINE * 0.95).all()
    assert (ratio[blocks >= plant.onset_block + plant.ramp_blocks] <= plant.ratios[1] * 1.05).all()
    assert (ratio[blocks < plant.onset_block] < twins.LINE).all()
    leftover = twins.planted_masks(f.meta)["outliers"]
    assert leftover.sum() == sum(truth.counts) > 0
    last = ratios(f)[:, LAST]
    assert (last[leftover] >= twins.LINE * 0.99).all() and (np.where(leftover, 0, last) < twins.LINE).all()


# ---------------------------------------------------------------------------------------------- cache and hooks


def test_cache_key_differs_with_and_without_a_plant(weights_dir, tmp_path, monkeypatch):
    run = features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, allow_hub=False,
                              progress=False)
    plain = features.extract(TINY, run)
    twin_pass = features.extract(TINY, run, plant=twins.TWINS["dev-none"])
    entries = sorted(path.parent.name for path in tmp_path.glob("*/meta.json"))
    assert len(entries) == 2 and any("twin-dev-none" in entry for entry in entries)
    assert "plant" not in plain.meta and twin_pass.meta["plant"]["name"] == "dev-none"
    assert twin_pass.provenance == plain.provenance
    provenance = models.resolve_weights(TINY, weights_dir=weights_dir)
    base = features.cache_key(provenance, TINY, "images", 224)
    keys = {twins.cache_key(base, plant) for plant in twins.TWINS.values()} | {base}
    assert len(keys) == len(twins.TWINS) + 1
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model ran despite a cache hit"))
    again = features.extract(TINY, run, plant=twins.TWINS["dev-none"])
    pd.testing.assert_frame_equal(again.norms, twin_pass.norms)


def test_hooks_are_removed_even_when_the_pass_fails(tiny):
    model, _ = tiny
    pixels = torch.randn(1, 3, 224, 224)
    before = hooks.capture_tokens(model, pixels).block_norms

    def count_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    with pytest.raises(RuntimeError, match="boom"):
        with twins.attach(model, twins.TWINS["dev-redundant"]):
            assert count_hooks() == 2 + len(model.blocks)
            raise RuntimeError("boom")
    assert count_hooks() == 0
    torch.testing.assert_close(hooks.capture_tokens(model, pixels).block_norms, before)


def test_set_norm_along_hits_the_target_and_keeps_the_rest():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(5, 16, generator=generator)
    unit = twins.direction(twins.TWINS["dev-redundant"], 16)
    targets = torch.full((5,), 40.0)
    planted = twins.set_norm_along(tokens, unit, targets)
    torch.testing.assert_close(planted.norm(dim=-1), targets)
    rest = lambda x: x - (x @ unit)[:, None] * unit  # noqa: E731
    torch.testing.assert_close(rest(planted), rest(tokens))


def test_replacement_order_starts_with_the_inner_neighbours():
    assert twins.replacement_order(0, (14, 14))[:3] == [15, 1, 14]
    assert twins.replacement_order(195, (14, 14))[:3] == [180, 194, 181]
    order = twins.replacement_order(13, (14, 14))
    assert order[:3] == [26, 12, 27] and len(order) == 195 and 13 not in order
