"""Twins: planted high-norm tokens read back from the feature frames against their declared truth."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import features, hooks, images, models, twins

TINY = models.OFFLINE_MODEL
N_IMAGES = 8
LAST = 11
OUTLIER = 10.0  # planted outliers sit at >= ~19x the median (30x, sigma 0.2); between tokens at <= 8x


@pytest.fixture(scope="module")
def twin_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("twin-cache")


@pytest.fixture(scope="module")
def twin(weights_dir, twin_cache):
    """``twin(name)``: the cached pass of the registered twin ``name`` on the real ViT-Ti, 8 photos."""
    passes = {}

    def run(name: str) -> features.Features:
        if name not in passes:
            passes[name] = features.extract(TINY, features.RunOptions("builtin", N_IMAGES, 224, weights_dir=weights_dir, cache_dir=twin_cache, allow_hub=False, progress=False), plant=twins.TWINS[name])
        return passes[name]

    return run


def patch_ratios(f: features.Features) -> pd.DataFrame:
    """Patch rows of every block with ``ratio`` = norm / that image's median patch norm at that block."""
    patch = f.norms[f.norms.kind == "patch"].copy()
    patch["ratio"] = patch.norm / patch.groupby(["image_id", "block"]).norm.transform("median")
    return patch


def outliers_per_image(f: features.Features, block: int) -> dict[str, set[int]]:
    patch = patch_ratios(f)
    high = patch[(patch.block == block) & (patch.ratio > OUTLIER)]
    found = high.groupby("image_id").token.apply(set).to_dict()
    return {image["image_id"]: found.get(image["image_id"], set()) for image in f.meta["images"]}


def top_cosine(f: features.Features, count: int) -> dict[str, set[int]]:
    return {image_id: set(group.nlargest(count, "neighbour_cosine").token)
            for image_id, group in f.patches.groupby("image_id")}


# ---------------------------------------------------------------------------------------------- declared truth


def test_plant_is_hashable_json_able_and_refuses_nonsense():
    plant = twins.TWINS["pinned"]
    assert len({plant, twins.Plant.from_dict(json.loads(json.dumps(plant.as_dict())))}) == 1
    assert twins.Plant.from_dict(plant.as_dict()) == plant
    with pytest.raises(ValueError, match="where"):
        twins.Plant("x", "everywhere")
    with pytest.raises(ValueError, match="positions"):
        twins.Plant("x", "pinned")
    with pytest.raises(ValueError, match="norm_ratio"):
        twins.Plant("x", "redundant", norm_ratio=5)  # would sit among the between tokens


def test_truth_of_each_registered_twin():
    grid = (14, 14)
    redundant = twins.truth(twins.TWINS["redundant"], 12, grid)
    assert redundant.has_outliers and redundant.redundant is True
    assert (redundant.per_image, redundant.onset_block) == (4, 4)
    assert redundant.share == pytest.approx(4 / 196) and redundant.between_per_image == 1
    assert redundant.share_with_between == pytest.approx(5 / 196)
    assert redundant.blocks_with_outliers() == list(range(4, 12))
    assert twins.truth(twins.TWINS["random"], 12, grid).redundant is False
    pinned = twins.truth(twins.TWINS["pinned"], 12, grid)
    assert pinned.redundant is None and pinned.pinned and pinned.positions == twins.PINNED_POSITIONS
    assert twins.truth(twins.TWINS["early"], 12, grid).onset_block == 1
    none = twins.truth(twins.TWINS["none"], 12, grid)
    assert not none.has_outliers and none.share == 0 and none.onset_block is None and none.between_per_image == 0
    registers = twins.truth(twins.TWINS["registers"], 12, (16, 16))
    assert registers.in_registers and not registers.has_outliers and registers.onset_block == 4
    with pytest.raises(ValueError, match="blocks"):
        twins.truth(twins.TWINS["redundant"], 4, grid)
    with pytest.raises(ValueError, match="grid"):
        twins.truth(twins.TWINS["pinned"], 12, (8, 8))


def test_pinned_positions_are_not_the_vit_tiny_native_outlier_corners(tiny_features):
    native = tiny_features.patches[tiny_features.patches.norm > 150]
    native_positions = set((native.row * 14 + native.col).tolist())
    assert native_positions <= {0, 13, 182, 195}  # the real model's own outliers: the 4 corners
    assert not native_positions & set(twins.PINNED_POSITIONS)


# ---------------------------------------------------------------------------------------------- read back from frames


def test_redundant_twin_plants_the_top_cosine_patches_at_the_declared_ratio(twin):
    f = twin("redundant")
    truth = twins.truth_of(f.meta)
    assert truth == twins.truth(twins.TWINS["redundant"], f.depth, f.grid)
    found = outliers_per_image(f, LAST)
    assert found == top_cosine(f, truth.per_image)  # exactly the most redundant patches, in every image
    last = patch_ratios(f).query("block == @LAST")
    planted = last[last.ratio > OUTLIER].ratio
    assert len(planted) == N_IMAGES * truth.per_image
    assert (last.ratio > OUTLIER).groupby(last.image_id).mean().eq(truth.share).all()  # 4 / 196 ≈ 2 %
    assert planted.min() > 15 and np.exp(np.log(planted).mean()) == pytest.approx(30, rel=0.2)
    masks = twins.planted_masks(f.meta)  # (B, Np) truth in cache order, as the findings' grids are
    assert masks["outliers"].sum(1).tolist() == [truth.per_image] * N_IMAGES
    assert not (masks["outliers"] & masks["between"]).any()
    last_grid = last.assign(image=last.image_id.map({im["image_id"]: i for i, im in enumerate(f.meta["images"])}))
    last_grid = last_grid.sort_values(["image", "token"]).ratio.to_numpy().reshape(N_IMAGES, -1)
    np.testing.assert_array_equal(last_grid > OUTLIER, masks["outliers"])
    assert ((last_grid > 2.5).mean(1) <= truth.share_with_between).all()
    assert f.provenance.model == TINY and f.meta["plant"] == twins.TWINS["redundant"].as_dict()


def test_onset_no_planted_tokens_before_the_onset_block_all_from_it(twin):
    for name in ("redundant", "early"):
        f = twin(name)
        truth = twins.truth_of(f.meta)
        counts = (patch_ratios(f).query("ratio > @OUTLIER").groupby("block").size()
                  .reindex(range(f.depth), fill_value=0))
        assert (counts.iloc[: truth.onset_block] == 0).all(), name
        assert (counts.iloc[truth.onset_block:] == N_IMAGES * truth.per_image).all(), name
        first = patch_ratios(f).query("block < @truth.onset_block")
        assert first.ratio.max() < 4, name


def test_random_twin_outliers_differ_between_images_and_ignore_redundancy(twin):
    f = twin("random")
    truth = twins.truth_of(f.meta)
    found = outliers_per_image(f, LAST)
    assert all(len(tokens) == truth.per_image for tokens in found.values())
    assert len({frozenset(tokens) for tokens in found.values()}) == N_IMAGES  # a different draw per image
    top = top_cosine(f, truth.per_image)
    overlap = sum(len(found[image] & top[image]) for image in found) / (N_IMAGES * truth.per_image)
    assert overlap <= 0.15  # chance level is 4/196 per token
    assert {image: set(planted["outliers"]) for image, planted in f.meta["planted"].items()} == found


def test_random_selection_does_not_depend_on_the_batch(tiny):
    model, _ = tiny
    records = images.readable_sample(images.list_images("builtin"), 3, 0).records
    pixels = images.pixel_batch(records, model, 224)
    plant = twins.TWINS["random"]
    with twins.attach(model, plant) as ledger:
        together = hooks.capture_tokens(model, pixels).patch_norms[:, LAST]
        alone = torch.cat([hooks.capture_tokens(model, pixels[i : i + 1]).patch_norms[:, LAST] for i in (2, 0, 1)])
    alone = alone[[1, 2, 0]]
    singles = {2: ledger.passes[1][0], 0: ledger.passes[2][0], 1: ledger.passes[3][0]}  # passes in order 2, 0, 1
    assert [image.outliers for image in ledger.passes[0]] == [singles[i].outliers for i in range(3)]
    top = lambda norms: set(torch.topk(norms, 4).indices.tolist())  # noqa: E731
    assert all(top(together[i]) == top(alone[i]) for i in range(3))


def test_pinned_twin_plants_its_positions_in_every_image(twin):
    f = twin("pinned")
    expected = {position + 1 for position in twins.PINNED_POSITIONS}  # token = CLS + patch index
    assert all(tokens == expected for tokens in outliers_per_image(f, LAST).values())


def test_none_twin_has_no_high_norm_patch_anywhere_while_the_plain_model_does(twin, tiny_features):
    neutral = patch_ratios(twin("none")).groupby("block").ratio.max()
    assert (neutral < 4).all()
    assert (neutral <= twins.NEUTRAL_CAP * 1.001).all()  # 2: the corners are capped already at block 6
    native = patch_ratios(tiny_features).groupby("block").ratio.max()
    assert (native.iloc[7:] > 20).all()  # the same photos: the real model's own corners were neutralised


def test_between_tokens_lie_between_the_modes_and_are_not_outliers(twin):
    f = twin("redundant")
    last = patch_ratios(f).query("block == @LAST").set_index(["image_id", "token"]).ratio
    between = [(image, token) for image, planted in f.meta["planted"].items() for token in planted["between"]]
    assert len(between) == N_IMAGES * twins.truth_of(f.meta).between_per_image
    ratios = last.loc[between]
    assert ratios.between(0.9 * twins.BETWEEN_RATIOS[0], 1.05 * twins.BETWEEN_RATIOS[1]).all()
    planted = pd.Series([r for p in f.meta["planted"].values() for r in p["between_ratios"]])
    np.testing.assert_allclose(ratios.to_numpy(), planted.to_numpy(), rtol=0.05)  # frame median vs non-planted


def test_register_twin_moves_the_norm_into_the_registers(tmp_path):
    plant = twins.TWINS["registers"]
    assert twins.TWIN_BASES["registers"] == twins.TWIN_BASES["redundant-reg4"] == twins.REGISTER_BASE
    f, partner = (features.extract(twins.REGISTER_BASE, features.RunOptions("builtin", 3, 224, cache_dir=tmp_path, allow_hub=False, progress=False), plant=twins.TWINS[name]) for name in ("registers", "redundant-reg4"))
    truth = twins.truth_of(f.meta)
    assert f.provenance.is_random and f.meta["num_registers"] == 4 and f.grid == (16, 16)
    assert truth.in_registers and not truth.has_outliers
    median = f.norms[f.norms.kind == "patch"].groupby(["image_id", "block"]).norm.median()
    registers = f.norms[f.norms.kind == "register"].set_index(["image_id", "block"]).norm
    ratio = registers / median.reindex(registers.index)
    layers = ratio.index.get_level_values("block")
    assert (ratio[layers >= plant.onset_block] > OUTLIER).all()
    assert np.exp(np.log(ratio[layers >= plant.onset_block]).mean()) == pytest.approx(plant.norm_ratio, rel=0.25)
    assert (ratio[layers < plant.onset_block] < 1).all()
    assert (patch_ratios(f).ratio < 4).all()  # no patch outliers at any block
    # the partner twin: the same network with the norm on its patches instead, the registers left alone
    assert twins.truth_of(partner.meta).has_outliers and twins.truth_of(partner.meta).per_image == 5  # 2 % of 256
    assert set(map(len, outliers_per_image(partner, LAST).values())) == {5}
    assert (partner.norms[partner.norms.kind == "register"].norm < 1).all()


# ---------------------------------------------------------------------------------------------- cache and hooks


def test_cache_key_differs_with_and_without_a_plant(weights_dir, tmp_path, monkeypatch):
    run = features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, allow_hub=False,
                              progress=False)
    plain = features.extract(TINY, run)
    twin_pass = features.extract(TINY, run, plant=twins.TWINS["none"])
    entries = sorted(path.parent.name for path in tmp_path.glob("*/meta.json"))
    assert len(entries) == 2 and any("twin-none" in entry for entry in entries)
    assert "plant" not in plain.meta and twin_pass.meta["plant"]["name"] == "none"
    assert twin_pass.provenance == plain.provenance
    provenance = models.resolve_weights(TINY, weights_dir=weights_dir)
    base = features.cache_key(provenance, TINY, "images", 224)
    keys = {twins.cache_key(base, plant) for plant in twins.TWINS.values()} | {base}
    assert len(keys) == len(twins.TWINS) + 1
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model ran despite a cache hit"))
    again = features.extract(TINY, run, plant=twins.TWINS["none"])
    pd.testing.assert_frame_equal(again.norms, twin_pass.norms)


def test_hooks_are_removed_even_when_the_pass_fails(tiny):
    model, _ = tiny
    pixels = torch.randn(1, 3, 224, 224)
    before = hooks.capture_tokens(model, pixels).block_norms

    def count_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    with pytest.raises(RuntimeError, match="boom"):
        with twins.attach(model, twins.TWINS["redundant"]):
            assert count_hooks() == 2 + len(model.blocks)
            raise RuntimeError("boom")
    assert count_hooks() == 0
    torch.testing.assert_close(hooks.capture_tokens(model, pixels).block_norms, before)


def test_set_norm_along_hits_the_target_and_keeps_the_rest():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(5, 16, generator=generator)
    unit = twins.direction(twins.TWINS["redundant"], 16)
    targets = torch.full((5,), 40.0)
    planted = twins.set_norm_along(tokens, unit, targets)
    torch.testing.assert_close(planted.norm(dim=-1), targets)
    rest = lambda x: x - (x @ unit)[:, None] * unit  # noqa: E731
    torch.testing.assert_close(rest(planted), rest(tokens))
