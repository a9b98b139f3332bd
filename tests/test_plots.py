"""Figures drawn from known tables, checked on the drawn objects as a reader would see them: panels that are
compared share one colour scale with a labelled colour bar, every mark is explained, counts are whole numbers,
legends sit off the data, no two pieces of text overlap, and the one-slide summary shows the values it was given."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from analysis import plots, slide

PLAIN = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
RANDOM = f"random:{PLAIN}"
WITHOUT = "vit_small_patch14_dinov2.lvd142m"
WITH = "vit_small_patch14_reg4_dinov2.lvd142m"


# ---------------------------------------------------------------------------------------------
# What a reader sees: drawn text, legends, bars, colour scales.

def drawn(fig):
    """Lay the figure out and draw it; returns its renderer."""
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def drawn_tick_labels(axis) -> list[Text]:
    """The tick labels ``axis`` draws: non-empty, visible, at a tick inside the view (major and minor); after
    :func:`drawn` (tick labels get their text when drawn)."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(high - low), 1e-12)
    labels = []
    for ticks, locs in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                        (axis.get_minor_ticks(), axis.get_minorticklocs())):
        labels += [t.label1 for t, loc in zip(ticks, locs)
                   if low - slack <= loc <= high + slack and t.label1.get_visible() and t.label1.get_text()]
    return labels


def drawn_texts(fig) -> list[Text]:
    """Every piece of text the figure draws (titles, axis and tick labels, legends, annotations)."""
    tick_labels, shown = set(), []
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels |= {tick.label1, tick.label2}
            shown += drawn_tick_labels(axis)
    others = [t for t in fig.findobj(Text) if t not in tick_labels and t.get_visible() and t.get_text().strip()]
    return shown + others


def overlapping(texts: list[Text], renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(0.98, 0.9)) for t in texts]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def assert_no_text_overlaps(fig):
    renderer = drawn(fig)
    assert overlapping(drawn_texts(fig), renderer) == []


def bars(ax) -> list[Rectangle]:
    """The bars of a bar chart (drawn rectangles with a size; not the axes background)."""
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0 and p.get_height() > 0]


def assert_legend_off_the_data(fig, legend, axes):
    renderer = drawn(fig)
    box = legend.get_window_extent(renderer)
    for ax in axes:
        for bar in bars(ax):
            assert not box.overlaps(bar.get_window_extent(renderer)), "the legend covers a bar"
        assert not box.overlaps(ax.get_window_extent(renderer)), "the legend sits on the data area"


def whole_ticks(axis) -> np.ndarray:
    low, high = sorted(axis.get_view_interval())
    ticks = np.asarray(axis.get_majorticklocs())
    return ticks[(ticks >= low) & (ticks <= high)]


def images_of(fig) -> list[AxesImage]:
    return [image for ax in fig.get_axes() for image in ax.get_images()]


def colour_bars(fig) -> dict:
    """``{colour bar: the images drawn on its scale}`` (images sharing the bar's normalisation)."""
    images = [image for image in images_of(fig) if image.get_array().ndim == 2]
    found = {image.colorbar for image in images if image.colorbar is not None}
    return {bar: [image for image in images if image.norm is bar.norm] for bar in found}


def legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.get_axes() if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


# ---------------------------------------------------------------------------------------------
# Attention maps and one image: one colour scale per quantity, a labelled colour bar, boxes explained.

def two_models_maps(n: int = 2, side: int = 4):
    rng = np.random.default_rng(0)
    pretrained = rng.dirichlet(np.ones(side * side), n)
    pretrained[:, 0] = 0.6  # a bright spot at the outlier
    uniform = np.full((n, side * side), 1 / (side * side))
    outliers = np.zeros((n, side * side), bool)
    outliers[:, 0] = True
    return {PLAIN: pretrained, RANDOM: uniform}, {PLAIN: outliers, RANDOM: np.zeros_like(outliers)}


def test_attention_maps_share_one_colour_scale_with_a_labelled_bar_and_explain_the_boxes():
    maps, outliers = two_models_maps()
    pictures = [np.zeros((32, 32, 3), np.uint8)] * 2
    fig = plots.attention_maps(pictures, maps, outliers, ["a", "b"], (4, 4))
    coloured = [image for image in images_of(fig) if image.get_array().ndim == 2]
    assert len(coloured) == 4  # 2 models x 2 images
    limits = {image.get_clim() for image in coloured}
    assert len(limits) == 1, "each panel has its own colour scale"
    low, high = limits.pop()
    assert high == pytest.approx(0.6) and low == pytest.approx(0.6 / 10 ** plots.ATTENTION_DECADES)
    (colour_bar, on_it), = colour_bars(fig).items()
    assert on_it == coloured, "a map is not on the colour bar's scale"
    assert "CLS attention (share of the row" in colour_bar.ax.get_ylabel().replace("\n", " ")
    boxes = [p for ax in fig.get_axes() for p in ax.patches if isinstance(p, Rectangle)
             and p.get_edgecolor()[:3] == pytest.approx((0.0, 1.0, 1.0))]
    assert len(boxes) == 2  # the outlier of each image of the pretrained model
    assert plots.OUTLIER_BOX_LABEL in legend_texts(fig)
    assert any("uniform attention (1 / 16" in text for text in legend_texts(fig))
    assert_no_text_overlaps(fig)


def test_single_image_norms_share_a_scale_across_models_and_attention_another():
    maps, outliers = two_models_maps(n=1)
    norm_maps = {PLAIN: np.full((4, 4), 20.0), RANDOM: np.full((4, 4), 6.0)}
    norm_maps[PLAIN][0, 0] = 500.0
    attention = {model: values[0].reshape(4, 4) for model, values in maps.items()}
    boxes = {model: values[0].reshape(4, 4) for model, values in outliers.items()}
    fig = plots.single_image(np.zeros((32, 32, 3), np.uint8), norm_maps, attention, boxes)
    by_label = {bar.ax.get_xlabel().replace("\n", " "): {image.get_clim() for image in images}
                for bar, images in colour_bars(fig).items()}
    assert sum(len(images) for images in colour_bars(fig).values()) == 4  # 2 models x (norms, attention)
    labels = sorted(by_label)
    assert len(labels) == 2
    assert labels[0].startswith("CLS attention (share of the row") and labels[1].startswith("token norm")
    assert by_label[labels[1]] == {(0.0, 500.0)}, "the random model's norm map is scaled to its own maximum"
    assert len(by_label[labels[0]]) == 1 and max(by_label[labels[0]].pop()) == pytest.approx(0.6)
    assert plots.OUTLIER_BOX_LABEL in legend_texts(fig)
    assert_no_text_overlaps(fig)


def test_a_shared_scale_is_set_by_the_largest_value_of_any_panel():
    assert plots.norm_scale([np.array([8.0]), np.array([500.0])]).vmax == 500.0
    scale = plots.attention_scale([np.array([0.005]), np.array([0.3])])
    assert (scale.vmin, scale.vmax) == pytest.approx((0.3e-3, 0.3))


# ---------------------------------------------------------------------------------------------
# Counts and legends.

CLAIMS = pd.DataFrame({"page": ["norm_histogram"] * 3 + ["layer_dependence"] * 2 + ["registers"],
                       "verdict": ["reproduced", "reproduced", "not testable", "reproduced", "inconclusive",
                                   "not reproduced"]})


def test_verdict_chart_counts_claims_per_page_in_whole_numbers_with_the_legend_beside_the_bars():
    fig = plots.verdict_chart(CLAIMS)
    ax = fig.axes[0]
    assert sorted(round(bar.get_width()) for bar in bars(ax)) == [1, 1, 1, 1, 2]  # one bar per (page, verdict)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Registers", "Layer dependence", "Norm histogram"]
    ticks = whole_ticks(ax.xaxis)
    assert len(ticks) >= 2 and np.all(ticks == np.round(ticks)), f"count ticks {ticks} are not whole numbers"
    assert_legend_off_the_data(fig, ax.get_legend(), [ax])
    assert_no_text_overlaps(fig)


def test_verdict_chart_says_when_no_claim_was_judged():
    empty = plots.verdict_chart(CLAIMS.iloc[:0]).axes[0]
    assert [t.get_text() for t in empty.texts] == ["no claims judged in this run"]


DEPTH = pd.DataFrame({"block": np.arange(12),
                      "median_norm": [13, 10, 8, 8, 8, 9, 9, 12, 15, 17, 18, 20.0],
                      "p99_norm": [18, 13, 10, 10, 10, 12, 21, 521, 524, 525, 526, 518.0],
                      "max_norm": [21, 14, 11, 12, 12, 14, 28, 572, 575, 576, 577, 568.0],
                      "separated_mode": [False] * 6 + [True] * 6})


#: A model without outliers: its norms span less than a decade (matplotlib then labels the minor ticks too).
FLAT_DEPTH = DEPTH.assign(median_norm=np.linspace(5, 7, 12), p99_norm=np.linspace(7, 9, 12),
                          max_norm=np.linspace(8, 11, 12), separated_mode=False)


@pytest.mark.parametrize(("table", "onset", "expected"), [(DEPTH, 6, ["10", "20", "50", "100", "200", "500"]),
                                                          (FLAT_DEPTH, None, ["5", "7", "10"])])
def test_depth_norms_log_axis_has_plain_labels_that_do_not_overlap(table, onset, expected):
    fig = plots.depth_norms(table, onset)
    ax = fig.axes[0]
    drawn(fig)
    assert [t.get_text() for t in drawn_tick_labels(ax.yaxis)] == expected
    assert_legend_off_the_data(fig, ax.get_legend(), [ax])
    assert_no_text_overlaps(fig)


PROBES = pd.DataFrame({"probe": ["position top-1", "pixel L2 error", "position top-1", "pixel L2 error",
                                 "class accuracy", "class accuracy", "class accuracy"],
                       "token": ["normal", "normal", "high-norm", "high-norm", "CLS", "normal", "high-norm"],
                       "value": [0.52, 7.5, 0.74, 1.1, 0.71, 0.16, 0.69],
                       "low": [0.50, 7.4, 0.71, 0.8, 0.60, 0.10, 0.59],
                       "high": [0.54, 7.7, 0.76, 3.0, 0.79, 0.24, 0.78]})


def test_probe_bars_show_each_value_with_labels_that_do_not_overlap():
    fig = plots.probe_bars(PROBES)
    widths = {ax.get_xlabel().split("\n")[0]: sorted(round(b.get_width(), 2) for b in bars(ax)) for ax in fig.axes}
    assert widths == {"position": [52.0, 74.0], "pixel error": [1.1, 7.5], "class": [16.0, 69.0, 71.0]}
    assert_no_text_overlaps(fig)


# ---------------------------------------------------------------------------------------------
# The one-slide summary: its data from the results folder, five panels, each titled once.

def norm_rows(models, shares, registers=(np.nan, np.nan)) -> pd.DataFrame:
    return pd.DataFrame({"model": models, "random_weights": [m.startswith("random:") for m in models],
                         "outlier_share": shares, "outlier_share_low": [s * 0.8 for s in shares],
                         "outlier_share_high": [s * 1.2 for s in shares], "register_norm_median": list(registers),
                         "median_norm": [20.0, 19.0]})


def write_results(folder, registers: bool = True):
    norm_rows([PLAIN, RANDOM], [0.02, 0.0]).to_parquet(folder / "norm_histogram.parquet")
    DEPTH.assign(model=PLAIN).to_parquet(folder / "layer_dependence.parquet")
    PROBES.to_parquet(folder / "information_probes.parquet")
    if registers:  # the page writes the plain model first; the table is ordered by having registers, not rows
        norm_rows([WITH, WITHOUT], [0.0004, 0.021], registers=(310.0, np.nan)).to_parquet(folder / "registers.parquet")
    for page, group in CLAIMS.groupby("page"):
        group.assign(claim="a claim").to_parquet(folder / f"{page}_claims.parquet")


def slide_axes(fig, key):
    return [ax for ax in fig.get_axes() if ax.get_label() == key]


def test_slide_data_is_read_from_the_results_folder(tmp_path):
    write_results(tmp_path)
    data = slide.read(tmp_path)
    assert data.onset == 6
    assert list(data.registers.condition) == ["without registers", "with registers"]
    assert list(data.registers.model) == [WITHOUT, WITH]
    assert list(data.claims.page.unique()) == ["norm_histogram", "layer_dependence", "registers"]  # book order
    assert data.headlines["norm_histogram"] == "reproduced (1 not testable)"
    text = slide.caption(data)
    assert "2.10% (1.68% to 2.52%)" in text and "0.04%" in text and "from block 6 of 12" in text


def test_slide_is_one_figure_of_five_panels_each_titled_once_with_the_registers_values(tmp_path):
    write_results(tmp_path)
    fig = plots.summary_slide(slide.read(tmp_path))
    titles = [sub.get_suptitle() for row in fig.subfigs for sub in (row.subfigs or [row])]
    assert [t.split(".")[0] for t in titles] == ["a", "b", "c", "d", "e"]
    assert "verdict: reproduced (1 not testable)" in titles[0]
    for key in "abcde":
        assert all(ax.get_title() == "" for ax in slide_axes(fig, key)), f"panel {key} has a second title"
    registers, = slide_axes(fig, "d")
    assert [round(b.get_width(), 4) for b in bars(registers)] == [2.1, 0.04]
    assert [t.get_text().split("\n")[0] for t in registers.get_yticklabels()] == ["without registers",
                                                                                 "with registers"]
    depth, = slide_axes(fig, "b")
    renderer = drawn(fig)
    assert overlapping(drawn_tick_labels(depth.xaxis) + drawn_tick_labels(depth.yaxis), renderer) == []
    verdicts, = slide_axes(fig, "e")
    ticks = whole_ticks(verdicts.xaxis)
    assert np.all(ticks == np.round(ticks))
    assert_legend_off_the_data(fig, verdicts.get_legend(), [verdicts])
    for key, sub in zip("ab", [fig.subfigs[0].subfigs[0], fig.subfigs[0].subfigs[1]]):
        assert_legend_off_the_data(fig, sub.legends[0], slide_axes(fig, key))
    assert_no_text_overlaps(fig)


def test_slide_says_which_page_has_no_results(tmp_path):
    write_results(tmp_path, registers=False)
    data = slide.read(tmp_path)
    assert data.registers is None
    registers, = slide_axes(plots.summary_slide(data), "d")
    assert [t.get_text() for t in registers.texts] == ["no results: run the registers page"]


def test_slide_verdict_lines_wrap_between_items_and_titles_do_not_collide(tmp_path):
    """A long verdict line (the lite book's norm histogram) wraps between its list items inside its half of the
    slide: the titles of panels a and b, side by side, do not overlap, and every title stays inside the figure."""
    assert plots._wrap_list("verdict: 1 not reproduced, 3 inconclusive, 1 not testable", 44) == (
        "verdict: 1 not reproduced, 3 inconclusive,\n  1 not testable")
    assert plots._wrap_list("verdict: reproduced", 44) == "verdict: reproduced"
    write_results(tmp_path)
    data = slide.read(tmp_path)
    long = "1 not reproduced, 3 inconclusive, 1 not testable"
    data.headlines.update({"norm_histogram": long, "layer_dependence": long})
    fig = plots.summary_slide(data)
    renderer = drawn(fig)
    a, b = (sub._suptitle for sub in fig.subfigs[0].subfigs)
    box_a, box_b = a.get_window_extent(renderer), b.get_window_extent(renderer)
    assert not box_a.overlaps(box_b) and "\n  1 not testable" in a.get_text()
    figure_box = fig.bbox
    for sub in [*fig.subfigs[0].subfigs, *fig.subfigs[1].subfigs]:
        box = sub._suptitle.get_window_extent(renderer)
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1


def test_a_probe_panel_without_values_has_one_plain_tick():
    import matplotlib.pyplot as plt

    table = pd.DataFrame({"probe": ["class accuracy"] * 2, "token": ["normal", "high-norm"], "value": [np.nan] * 2,
                          "low": [np.nan] * 2, "high": [np.nan] * 2})
    fig, axes = plt.subplots(1, 3, sharey=True)
    plots._probe_bars(axes, table)
    drawn(fig)
    assert [t.get_text() for t in drawn_tick_labels(axes[2].xaxis)] == ["0"]
