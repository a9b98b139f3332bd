"""Figures: tables and arrays in, matplotlib figures out. No figure computes a metric.

Figures are drawn 8 inches wide with 13-point text, so that scaled to the book's text column
(about 760 px at 1280 px window width) their text is as large as the body text. Model labels come
from :func:`short_name`; random-init models are labelled so in every legend and title. The weights'
full provenance is printed under each figure by the page (a caption), not inside the image.

What a reader compares is drawn so it can be compared: maps of one quantity share one colour scale
(:func:`norm_scale`, :func:`attention_scale`) with a labelled colour bar; every box and mark is named in a legend;
count axes tick at whole numbers; legends sit beside or below the data, never on it (constrained layout makes room).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .models import ModelSpec
from .stats import CONFIDENCE

if TYPE_CHECKING:
    from .slide import SlideData

sns.set_theme(context="notebook", style="whitegrid", rc={
    "font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "xtick.labelsize": 12, "ytick.labelsize": 12,
    "legend.fontsize": 11, "figure.titlesize": 14,
})

WIDTH = 8.0  # inches; see module docstring
RANDOM_COLOUR = "#b30000"
VERDICT_COLOURS = {"reproduced": "#1b7837", "not reproduced": "#b2182b", "inconclusive": "#e08214",
                   "not testable": "#8c8c8c"}


def short_name(spec: str) -> str:
    """Compact model label: ``random:vit_tiny_patch16_224.augreg…`` → ``AugReg ViT-Ti/16 (random init)``;
    ``name@path`` adds the weight file's name. A label that is no timm spec (no ``_``) is returned as it is."""
    if "_" not in spec:
        return spec
    parsed = ModelSpec.parse(spec)
    random_weights, name = parsed.random, parsed.name
    arch, _, tag = name.partition(".")
    sizes = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H", "giant": "g"}
    parts = arch.split("_")
    size = next((sizes[p] for p in parts if p in sizes), "?")
    patch = next((p.removeprefix("patch") for p in parts if p.startswith("patch")), "")
    family = ("DINOv2" if "dinov2" in name else "DINO" if tag == "dino" else "DeiT-III" if arch.startswith("deit3")
              else "OpenCLIP" if "clip" in arch else "AugReg" if "augreg" in tag else tag or arch)
    label = f"{family} ViT-{size}/{patch}" + (" +reg4" if "reg4" in arch else "")
    if size == "?":
        label = arch
    if parsed.weights_file:
        label += f" @ {Path(parsed.weights_file).name}"
    return f"{label} (random init)" if random_weights else label


#: What every interval drawn on a figure is.
INTERVAL = f"{CONFIDENCE * 100:.0f} % interval over images"
#: The words under a share axis whose bars carry that interval.
ERROR_BARS = f"error bars: {INTERVAL}"
#: Characters of a slide panel's verdict line before it wraps (half the slide's width at the title's size).
SLIDE_TITLE_WIDTH = 44
#: Colour-bar labels, with units: one shared scale per quantity wherever panels are compared.
NORM_LABEL = "token norm (L2, last block, before final LayerNorm)"
ATTENTION_LABEL = "CLS attention (share of the row, log scale)"
#: How a high-norm patch is marked on a map, and what the mark means (every map figure's legend says so).
OUTLIER_BOX_COLOUR = "cyan"
OUTLIER_BOX_LABEL = "box: high-norm patch (norm above its model's cutoff)"
#: Attention maps are coloured on a log scale reaching this many decades below the largest value shown
#: (lower values take the darkest colour): uniform attention (1 / patches) and the peaks both stay visible.
ATTENTION_DECADES = 3
#: Colour of bars for pretrained and random-init models, with the legend entries saying so.
PRETRAINED_COLOUR = "C0"
#: Token kinds: high-norm in purple (red means random init, orange inconclusive elsewhere in the book).
TOKEN_COLOURS = {"normal": "C0", "high-norm": "#762a83", "CLS": "0.45"}


def _caption_random(title: str, labels: list[str]) -> str:
    return title + ("\n(random-init models are negative controls)" if any("random" in l for l in labels) else "")


def _legend_beside(ax: plt.Axes, handles=None, **kwargs):
    """The axes' legend to the right of its data area (never on the data); constrained layout makes room."""
    if handles is not None:
        kwargs["handles"] = handles
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def _finished(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """Label one-panel ``fig``'s axes (with units), put the legend beside the data and set the title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _legend_beside(ax)
    ax.set_title(title)
    return fig


def _figure(*shape: int, height: float, **kwargs) -> tuple[plt.Figure, np.ndarray | plt.Axes]:
    """``plt.subplots(*shape)`` ``WIDTH`` wide with constrained layout (it keeps outside legends and colour bars
    in the figure)."""
    return plt.subplots(*shape, figsize=(WIDTH, height), layout="constrained", **kwargs)


def _log_ticks(axis) -> None:
    """Plain-number ticks on a log ``axis`` (``10, 20, 50``, not ``2×10¹``), as many as fit: 1-2-3-5-7 steps
    within a decade, 1-2-5 steps over up to three decades, one per decade beyond; minor ticks unlabelled (their
    labels overlapped)."""
    low, high = sorted(axis.get_view_interval())
    decades = np.log10(high / low) if low > 0 else np.inf
    subs = (1.0, 2.0, 3.0, 5.0, 7.0) if decades <= 1 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _integer_ticks(axis) -> None:
    """Counts on ``axis``: ticks at whole numbers only."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, textwrap.fill(text, 40), ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _largest(maps: Iterable[np.ndarray]) -> float:
    """The largest finite value in any of ``maps`` (1 where there is none above 0: a scale still has a range)."""
    values = [np.asarray(m, dtype=float) for m in maps]
    finite = [float(v[np.isfinite(v)].max()) for v in values if np.isfinite(v).any()]
    top = max(finite, default=1.0)
    return top if top > 0 else 1.0


def norm_scale(maps: Iterable[np.ndarray]) -> Normalize:
    """One linear colour scale for norm maps compared side by side: 0 to the largest norm in any of them, so a
    random-init model whose largest norm is 8 looks as dim next to a pretrained one at 500 as it is."""
    top = _largest(maps)
    return Normalize(0.0, top)


def attention_scale(maps: Iterable[np.ndarray]) -> LogNorm:
    """One log colour scale for attention maps compared side by side: from the largest value in any of them down
    :data:`ATTENTION_DECADES` decades."""
    top = _largest(maps)
    return LogNorm(top / 10 ** ATTENTION_DECADES, top)


def _box_outliers(ax: plt.Axes, mask: np.ndarray) -> None:
    for r, c in zip(*np.nonzero(mask)):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec=OUTLIER_BOX_COLOUR, lw=1.5))


def _box_handle() -> Patch:
    return Patch(facecolor="none", edgecolor=OUTLIER_BOX_COLOUR, lw=1.5, label=OUTLIER_BOX_LABEL)


def _uniform_mark(colorbar, patches: int) -> Line2D:
    """A black triangle beside an attention colour bar at 1 / ``patches``, where a map with no preference sits;
    returns its legend entry."""
    vertical = colorbar.orientation == "vertical"
    ax = colorbar.ax
    if vertical:
        ax.plot([-0.25], [1 / patches], marker=">", ms=9, color="black", transform=ax.get_yaxis_transform(),
                clip_on=False)
    else:
        ax.plot([1 / patches], [1.3], marker="v", ms=9, color="black", transform=ax.get_xaxis_transform(),
                clip_on=False)
    return Line2D([], [], marker=">" if vertical else "v", ms=9, ls="", color="black",
                  label=f"triangle at the attention colour bar: uniform attention (1 / {patches} per patch)")


def norm_histogram(norms: dict[str, np.ndarray], cutoffs: dict[str, float], threshold: float,
                   positions: np.ndarray | None) -> plt.Figure:
    """Log-count histogram of output patch norms per model with the fixed and adaptive cutoffs;
    below it, the share of images with a high-norm token at each grid position (``(h, w)``) or nothing.
    ``norms``: ``{model: (B, Np)}`` and ``cutoffs``: ``{model: cutoff}``, keyed by timm spec or label.
    """
    norms = {short_name(model): values for model, values in norms.items()}
    cutoffs = {short_name(model): cutoff for model, cutoff in cutoffs.items()}
    rows = 2 if positions is not None else 1
    fig = plt.figure(figsize=(WIDTH, 4.6 * rows), layout="constrained")
    panels = fig.subfigures(rows, 1, height_ratios=[1, 1.1][:rows], squeeze=False)[:, 0]
    ax = panels[0].subplots()
    palette = dict(zip(norms, sns.color_palette("colorblind", len(norms))))
    top = max(max(float(v.max()) for v in norms.values()), threshold) * 1.05
    bins = np.linspace(0, top, 80)
    for label, values in norms.items():
        ax.hist(np.ravel(values), bins=bins, histtype="step", lw=2, color=palette[label],
                label=textwrap.fill(label, 22))
        if np.isfinite(cutoffs.get(label, np.inf)):
            ax.axvline(cutoffs[label], color=palette[label], ls=":", lw=2,
                       label=f"its adaptive cutoff ({cutoffs[label]:.0f})")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"paper's cutoff ({threshold:g})")
    ax.set_yscale("log")
    _log_ticks(ax.yaxis)
    ax.set_xlabel("L2 norm of output patch token (before final LayerNorm)")
    ax.set_ylabel("patch tokens (count, log scale)")
    _legend_beside(ax)
    ax.set_title(_caption_random("Output patch-token norms", list(norms)))
    if positions is not None:
        grid = panels[1].subplots()
        sns.heatmap(positions, ax=grid, cmap="rocket_r", vmin=0, vmax=1, square=True,
                    cbar_kws={"label": "share of images with a\nhigh-norm token here"})
        grid.set_xlabel("patch column")
        grid.set_ylabel("patch row")
        grid.set_title("Where the high-norm tokens sit")
        grid.tick_params(labelsize=9)
    return fig


def attention_maps(pictures: list[np.ndarray], maps: dict[str, np.ndarray], outliers: dict[str, np.ndarray],
                   image_ids: list[str], grids: tuple[int, int] | dict[str, tuple[int, int]]) -> plt.Figure:
    """Rows = models, columns = images; CLS attention (head mean) with high-norm patches boxed.

    ``pictures``: ``(H, W, 3)`` uint8 crops as the model saw them; ``maps[model]``: ``(n, Np)`` attention over
    the model's patch grid ``(h, w)`` (``grids``: one for all models, or one per model) and ``outliers[model]``:
    ``(n, Np)`` bool, for the first ``n`` pictures. All maps share one colour scale (:func:`attention_scale`)
    with one labelled colour bar; the legend says what the boxes and the bar's dashed line mean.
    """
    def as_grids(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {short_name(model): np.asarray(array)[: len(pictures)].reshape(
                    -1, *(grids[model] if isinstance(grids, dict) else grids)) for model, array in values.items()}

    maps, outliers = as_grids(maps), as_grids(outliers)
    scale = attention_scale(maps.values())
    rows, cols = len(maps) + 1, len(pictures)
    fig, axes = _figure(rows, cols, height=(WIDTH - 2.0) / cols * rows + 1.6, squeeze=False)
    for j, picture in enumerate(pictures):
        axes[0, j].imshow(picture)
        axes[0, j].set_title(image_ids[j], fontsize=12)
    image = None
    for i, (label, model_maps) in enumerate(maps.items(), start=1):
        for j, attention in enumerate(model_maps):
            image = axes[i, j].imshow(attention, cmap="inferno", norm=scale)
            _box_outliers(axes[i, j], outliers[label][j])
        axes[i, 0].set_ylabel(textwrap.fill(label, 16), fontsize=11)
    axes[0, 0].set_ylabel("image\n(model's view)", fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    handles = [_box_handle()]
    if image is not None:
        colorbar = fig.colorbar(image, ax=axes[1:, :], shrink=0.9, label=textwrap.fill(ATTENTION_LABEL, 24))
        patches = {int(np.prod(m.shape[1:])) for m in maps.values()}
        if len(patches) == 1:
            handles.append(_uniform_mark(colorbar, patches.pop()))
    fig.legend(handles=handles, loc="outside lower center", ncol=1, frameon=False)
    fig.suptitle(_caption_random("Last-layer CLS attention over the patches (one colour scale)", list(maps)))
    return fig


def _depth_norms(ax: plt.Axes, table: pd.DataFrame, onset: int | None) -> list:
    """Draw :func:`depth_norms` into ``ax``; returns the legend handles."""
    ax.plot(table.block, table.median_norm, "-o", ms=4, label="median patch norm")
    ax.plot(table.block, table.p99_norm, "--", label="99th percentile")
    ax.plot(table.block, table.max_norm, "-s", ms=4, label="largest patch norm")
    for block in table.block[table.separated_mode]:
        ax.axvspan(block - 0.5, block + 0.5, color="C3", alpha=0.12, lw=0)
    if onset is not None:
        ax.axvline(onset - 0.5, color="C3", lw=2, label=f"onset: block {onset}")
    ax.set_yscale("log")
    _log_ticks(ax.yaxis)
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("block (0 = first)")
    ax.set_ylabel("patch-token norm\n(L2, log scale)")
    handles, _ = ax.get_legend_handles_labels()
    if table.separated_mode.any():
        handles.append(Patch(color="C3", alpha=0.12, label="shaded: separated high-norm mode"))
    return handles


def depth_norms(table: pd.DataFrame, onset: int | None) -> plt.Figure:
    """Per-block median and max patch norm (log scale); blocks with a separated high-norm mode shaded."""
    fig, ax = _figure(height=4.6)
    _legend_beside(ax, _depth_norms(ax, table, onset))
    ax.set_title("Patch-token norms through the depth of the model")
    return fig


def _colour_handles(random_weights: pd.Series) -> list:
    """Legend entries for the bar colours shown: pretrained, random init."""
    shown = set(random_weights.astype(bool))
    return ([Patch(color=PRETRAINED_COLOUR, label="pretrained")] if False in shown else []) + (
        [Patch(color=RANDOM_COLOUR, label="random init (negative control)")] if True in shown else [])


def _percent_axis(ax: plt.Axes, high: np.ndarray, values: np.ndarray | None = None) -> None:
    """A share axis from 0 with room for the bars' intervals (at least 0 to 0.5 %, so an all-zero panel has a
    scale), each bar's value written beside its interval when ``values`` are given."""
    ax.set_xlim(0, max(float(np.nanmax(high, initial=0)), 0.5 / 1.45) * 1.45)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    if values is not None:
        for y, (value, end) in enumerate(zip(values, high)):
            ax.annotate(f"{value:.2f} %", (end, y), xytext=(6, 0), textcoords="offset points", va="center",
                        fontsize=11)


def _share_bars(ax: plt.Axes, summary: pd.DataFrame, ylabel: str, wrap: int = 40) -> list:
    """Draw :func:`share_bars` into ``ax``; returns the legend handles (pretrained / random init)."""
    labels = [textwrap.fill(short_name(m), wrap) for m in summary.model]
    values = 100 * summary.outlier_share.to_numpy()
    low = 100 * summary.outlier_share_low.fillna(summary.outlier_share).to_numpy()
    high = 100 * summary.outlier_share_high.fillna(summary.outlier_share).to_numpy()
    colours = [RANDOM_COLOUR if r else PRETRAINED_COLOUR for r in summary.random_weights]
    ax.barh(labels, values, xerr=[np.maximum(values - low, 0), np.maximum(high - values, 0)], color=colours,
            capsize=4)
    _percent_axis(ax, high, values)
    ax.invert_yaxis()
    ax.set_xlabel(f"high-norm output patch tokens (%)\n{ERROR_BARS}")
    ax.set_ylabel(ylabel)
    return _colour_handles(summary.random_weights)


def share_bars(summary: pd.DataFrame, title: str, xlabel: str = "model") -> plt.Figure:
    """High-norm share per model with its interval; random-init models in red (the legend says so).
    ``xlabel`` names the model axis (the vertical one: bars are horizontal)."""
    fig, ax = _figure(height=4.2)
    fig.legend(handles=_share_bars(ax, summary, xlabel), loc="outside lower center", ncol=2, frameon=False)
    ax.set_title(title)
    return fig


def training_curve(table: pd.DataFrame) -> plt.Figure:
    """High-norm share vs training progress (one point per checkpoint, with its interval)."""
    fig, ax = _figure(height=4.2)
    x, y = 100 * table.training_fraction, 100 * table.outlier_share
    ax.errorbar(x, y, yerr=[y - 100 * table.outlier_share_low, 100 * table.outlier_share_high - y], marker="o",
                capsize=4, label=f"checkpoint ({ERROR_BARS})")
    for row in table.itertuples():
        ax.annotate(row.label, (100 * row.training_fraction, 100 * row.outlier_share), xytext=(6, 6),
                    textcoords="offset points")
    ax.axvline(100 / 3, color="0.5", ls=":", label="paper: about a third of training")
    ax.set_xlabel("training progress (% of the run)")
    ax.set_ylabel("high-norm output patch tokens (%)")
    ax.set_xlim(-5, 110)
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    ax.set_title("Outliers along training")
    return fig


def redundancy(table: pd.DataFrame) -> plt.Figure:
    """Neighbour cosine of high-norm vs normal patches: overall (left) and by number of neighbours (right)."""
    fig, axes = _figure(1, 2, height=4.6, gridspec_kw={"width_ratios": [3, 2]})
    groups = table.assign(token=np.where(table.high_norm, "high-norm", "normal"))
    order = ["normal", "high-norm"]
    palette = {kind: TOKEN_COLOURS[kind] for kind in order}
    sns.histplot(groups, x="neighbour_cosine", hue="token", stat="density", common_norm=False, element="step",
                 bins=30, ax=axes[0], hue_order=order, palette=palette, legend=False)
    axes[0].set_xlabel("cosine to 4 neighbours\n(after patch embedding)")
    axes[0].set_ylabel("density (per group)")
    sns.stripplot(groups, x="neighbours", y="neighbour_cosine", hue="token", hue_order=order, palette=palette,
                  dodge=True, size=2.5, alpha=0.5, ax=axes[1], legend=False)
    axes[1].set_xlabel("grid neighbours\n(2 corner, 3 border, 4 inside)")
    axes[1].set_ylabel("neighbour cosine")
    fig.legend(handles=[Patch(color=palette[kind], label=f"{kind} patches") for kind in order],
               loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle("Are outlier patches redundant with their neighbours?")
    return fig


def register_comparison(norms: dict[str, np.ndarray], prefix: pd.DataFrame) -> plt.Figure:
    """Top: output patch-norm histograms with and without registers (``{model: (B, Np)}``). Bottom: norms of
    CLS and each register (:func:`analysis.findings.prefix_norms`)."""
    norms = {short_name(model): values for model, values in norms.items()}
    prefix = prefix.assign(model=prefix.model.map(short_name))
    fig, axes = _figure(2, 1, height=8.4)
    top = max(float(v.max()) for v in norms.values()) * 1.05
    for label, values in norms.items():
        axes[0].hist(np.ravel(values), bins=np.linspace(0, top, 70), histtype="step", lw=2,
                     label=textwrap.fill(label, 22))
    axes[0].set_yscale("log")
    _log_ticks(axes[0].yaxis)
    axes[0].set_xlabel("L2 norm of output patch token (before final LayerNorm)")
    axes[0].set_ylabel("patch tokens (count, log scale)")
    _legend_beside(axes[0])
    axes[0].set_title(_caption_random("Patch norms with and without registers", list(norms)))
    sns.boxplot(prefix, x="name", y="norm", hue="model", ax=axes[1])
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, title=None,
                    labels=[textwrap.fill(t.get_text(), 22) for t in axes[1].get_legend().get_texts()])
    axes[1].set_xlabel("prefix token")
    axes[1].set_ylabel("L2 norm at the last block")
    axes[1].set_title("Where the high norms went: CLS and register tokens")
    return fig


def _page_title(page: str) -> str:
    """A page's name as the claims page titles it: ``norm_histogram`` → ``Norm histogram``."""
    return page.replace("_", " ").capitalize()


def _verdict_bars(ax: plt.Axes, claims: pd.DataFrame) -> list:
    """Draw :func:`verdict_chart` into ``ax``; returns the legend handles (one per verdict shown)."""
    counts = claims.groupby("page", sort=False).verdict.value_counts().unstack(fill_value=0).iloc[::-1]
    counts = counts.reindex(columns=[v for v in VERDICT_COLOURS if v in counts.columns])
    left = np.zeros(len(counts))
    labels = [_page_title(p) for p in counts.index]
    for verdict in counts.columns:
        ax.barh(labels, counts[verdict].to_numpy(), left=left, color=VERDICT_COLOURS[verdict], label=verdict)
        left += counts[verdict].to_numpy()
    _integer_ticks(ax.xaxis)
    ax.set_xlim(0, max(left.max(), 1) * 1.02)
    ax.set_xlabel("number of claims")
    ax.set_ylabel("")
    return [Patch(color=VERDICT_COLOURS[v], label=v) for v in counts.columns]


def verdict_chart(claims: pd.DataFrame) -> plt.Figure:
    """Count of verdicts per page (whole numbers on the count axis), coloured by verdict; the legend beside the
    bars."""
    fig, ax = _figure(height=1.4 + 0.5 * max(claims.page.nunique(), 1))
    if claims.empty:  # e.g. every model was a random-init control: nothing was judged
        _no_data(ax, "no claims judged in this run")
        return fig
    _legend_beside(ax, _verdict_bars(ax, claims), title="verdict")
    ax.set_title("Verdicts of this run, per page")
    return fig


def benchmark(ratios: pd.DataFrame) -> plt.Figure:
    """Each measured ratio against its target (black tick); green when met."""
    fig, ax = _figure(height=1.2 + 0.6 * len(ratios))
    ax.barh(ratios.metric, ratios.value, color=["#1b7837" if ok else "#b2182b" for ok in ratios.passed])
    for y, target in enumerate(ratios.target):
        ax.plot([target, target], [y - 0.4, y + 0.4], color="black", lw=3)
    ax.set_xlabel("measured ratio (black tick: target; lower is better)")
    ax.set_title("Benchmark ratios (green: target met)")
    return fig


#: The probe panels: (probe in the table, axis label with units, scale to those units).
PROBE_PANELS = (("position top-1", "position\ntop-1 (%)", 100),
                ("pixel L2 error", "pixel error\n(L2, lower\nis better)", 1),
                ("class accuracy", "class\naccuracy (%)", 100))


def _probe_bars(axes, table: pd.DataFrame) -> None:
    """Draw :func:`probe_bars` into three axes sharing the token axis (normal, high-norm, CLS from the top)."""
    tokens = [t for t in TOKEN_COLOURS if t in set(table.token)]
    for ax, (probe, label, scale) in zip(axes, PROBE_PANELS):
        rows = table[table.probe == probe].set_index("token")
        probed = set(rows.index)
        rows = rows.reindex(tokens)
        values = scale * rows.value.to_numpy(dtype=float)
        errors = np.nan_to_num([values - scale * rows.low.to_numpy(dtype=float),
                                scale * rows.high.to_numpy(dtype=float) - values])
        ax.barh(tokens, np.nan_to_num(values), xerr=np.maximum(errors, 0), capsize=4,
                color=[TOKEN_COLOURS[t] for t in tokens])
        for y, (token, value) in enumerate(zip(tokens, values)):
            if np.isnan(value):
                ax.text(0, y, " not probed" if token not in probed else " not measured", va="center", fontsize=10,
                        color="0.35")
        ax.set_xlabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
        if np.isnan(values).all():  # nothing measured: a plain axis from 0, not ticks crowded around it
            ax.set_xlim(0, 1)
            ax.set_xticks([0])
        ax.set_ylim(len(tokens) - 0.5, -0.5)
    axes[0].set_ylabel("token")


def probe_bars(table: pd.DataFrame) -> plt.Figure:
    """Three panels: position top-1, pixel error, class accuracy by token kind, with intervals."""
    fig, axes = _figure(1, 3, height=3.6, sharey=True)
    _probe_bars(axes, table)
    fig.suptitle(f"What one token knows\n(held-out images; {ERROR_BARS})")
    return fig


def single_image(picture: np.ndarray, norm_maps: dict[str, np.ndarray], attention: dict[str, np.ndarray],
                 outliers: dict[str, np.ndarray]) -> plt.Figure:
    """One image: per model (rows) the output-norm map and the CLS attention map (``(h, w)`` each, keyed by
    model), high-norm patches boxed. Norm maps share one colour scale (:func:`norm_scale`) and attention maps
    another (:func:`attention_scale`), each with a labelled colour bar; the legend explains the marks."""
    norm_maps, attention, outliers = ({short_name(model): values for model, values in maps.items()}
                                      for maps in (norm_maps, attention, outliers))
    norms, attentions = norm_scale(norm_maps.values()), attention_scale(attention.values())
    rows = len(norm_maps)
    fig, axes = _figure(rows, 3, height=2.7 * rows + 2.4, squeeze=False)
    norm_image = attention_image = None
    for i, label in enumerate(norm_maps):
        axes[i, 0].imshow(picture)
        axes[i, 0].set_ylabel(f"{textwrap.fill(label, 16)}\nlargest norm {float(np.max(norm_maps[label])):.0f}",
                              fontsize=11)
        norm_image = axes[i, 1].imshow(norm_maps[label], cmap="viridis", norm=norms)
        attention_image = axes[i, 2].imshow(attention[label], cmap="inferno", norm=attentions)
        for ax in axes[i, 1:]:
            _box_outliers(ax, outliers[label])
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    axes[0, 0].set_title("image (model's view)", fontsize=12)
    axes[0, 1].set_title("output norms", fontsize=12)
    axes[0, 2].set_title("CLS attention", fontsize=12)
    fig.colorbar(norm_image, ax=axes[:, 1], location="bottom", label=textwrap.fill(NORM_LABEL, 22))
    colorbar = fig.colorbar(attention_image, ax=axes[:, 2], location="bottom",
                            label=textwrap.fill(ATTENTION_LABEL, 22))
    handles = [_box_handle()]
    patches = {int(np.size(m)) for m in attention.values()}
    if len(patches) == 1:
        handles.append(_uniform_mark(colorbar, patches.pop()))
    fig.legend(handles=handles, loc="outside lower center", frameon=False)
    fig.suptitle(_caption_random("Output norms and last-layer CLS attention\n(one colour scale per quantity, "
                                 "shared by all models)", list(norm_maps)))
    return fig


def discovery_examples(pictures: list, truth: list[list[tuple]], predicted: dict[str, list[tuple]]) -> plt.Figure:
    """Example images with true boxes (green, dashed) and the boxes LOST found per condition (solid)."""
    predicted = {short_name(model): boxes for model, boxes in predicted.items()}
    columns = max(len(pictures), 1)
    fig, axes = _figure(1, columns, height=WIDTH / columns + 1.6, squeeze=False)
    colours = dict(zip(predicted, ["red", "cyan", "orange", "magenta", "yellow", "white"] * 4))
    for i, (ax, picture, boxes) in enumerate(zip(axes[0], pictures, truth)):
        ax.imshow(picture)
        for x0, y0, x1, y1 in boxes:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=2, ls="--"))
        for name, found in predicted.items():
            x0, y0, x1, y1 = found[i]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colours[name], lw=2))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    handles = [Line2D([], [], color=c, lw=2, label=f"box LOST found: {n}") for n, c in colours.items()]
    handles.append(Line2D([], [], color="lime", lw=2, ls="--", label="true box"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=10, frameon=False)
    fig.suptitle("LOST object discovery")
    return fig


def census(table: pd.DataFrame) -> plt.Figure:
    """High-norm share (with its interval) against model size, coloured by training recipe."""
    fig, ax = _figure(height=4.8)
    recipes = list(dict.fromkeys(table.recipe))
    palette = dict(zip(recipes, sns.color_palette("colorblind", len(recipes))))
    for row in table.itertuples():
        colour = RANDOM_COLOUR if row.random_weights else palette[row.recipe]
        y, low, high = 100 * row.outlier_share, 100 * row.outlier_share_low, 100 * row.outlier_share_high
        ax.errorbar(row.params_m, y, yerr=[[max(y - low, 0)], [max(high - y, 0)]], fmt="o", color=colour, capsize=4)
        ax.annotate(short_name(row.model), (row.params_m, y), xytext=(5, 5), textcoords="offset points", fontsize=10)
    for recipe in recipes:
        ax.scatter([], [], color=RANDOM_COLOUR if recipe.startswith("random") else palette[recipe], label=recipe)
    ax.set_xscale("log")
    _log_ticks(ax.xaxis)
    return _finished(fig, ax, "parameters (millions, log scale)", f"high-norm output patch tokens (%)\n{ERROR_BARS}",
                     "Which ViTs have high-norm tokens?")


def validation_grid(table: pd.DataFrame) -> plt.Figure:
    """Twins (rows) × checks (columns): each cell names the verdict the rule gave, green where it matches the
    twin's declared truth, red where it does not, blank where the check does not apply to that twin."""
    checks = list(dict.fromkeys(table.check))
    names = list(dict.fromkeys(table.twin))
    fig, ax = _figure(height=2.6 + 0.6 * len(names))
    colour = np.full((len(names), len(checks), 3), 1.0)
    for row in table.itertuples():
        i, j = names.index(row.twin), checks.index(row.check)
        colour[i, j] = (0.80, 0.92, 0.77) if row.matches else (0.96, 0.70, 0.70)
        ax.text(j, i, row.verdict.replace("not ", "not\n"), ha="center", va="center", fontsize=6.5)
    ax.imshow(colour, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(checks)), [textwrap.fill(c, 18) for c in checks], fontsize=8, rotation=40, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("check (the finding page whose rule it runs)")
    ax.set_ylabel("twin")
    matched = int(table.matches.sum())
    ax.set_title(f"Rules against planted truth: {matched} of {len(table)} verdicts match\n"
                 "(green: verdict matches the planted truth; red: it does not; blank: check does not apply)",
                 fontsize=12)
    return fig


# ---------------------------------------------------------------------------------------------
# The study on one slide: five panels drawn into one figure from :class:`analysis.slide.SlideData`.

#: The slide's panels, in reading order: (key, title, page whose headline verdict the title carries).
SLIDE_PANELS = (("a", "High-norm tokens per model", "norm_histogram"),
                ("b", "Norms through the depth", "layer_dependence"),
                ("c", "What one token knows", "information_probes"),
                ("d", "Without and with registers", "registers"),
                ("e", "Verdicts of this run, per page", None))


def _register_bars(ax: plt.Axes, registers: pd.DataFrame) -> list:
    """High-norm share without and with registers (rows of :attr:`analysis.slide.SlideData.registers`), each
    bar with its interval and its value written beside it; returns the legend handles."""
    labels = [f"{row.condition}\n{textwrap.fill(short_name(row.model), 22)}" for row in registers.itertuples()]
    values = 100 * registers.outlier_share.to_numpy(dtype=float)
    low = 100 * registers.outlier_share_low.fillna(registers.outlier_share).to_numpy(dtype=float)
    high = 100 * registers.outlier_share_high.fillna(registers.outlier_share).to_numpy(dtype=float)
    colours = [RANDOM_COLOUR if r else PRETRAINED_COLOUR for r in registers.random_weights]
    ax.barh(labels, values, xerr=[np.maximum(values - low, 0), np.maximum(high - values, 0)], color=colours,
            capsize=4)
    _percent_axis(ax, high, values)
    ax.invert_yaxis()
    ax.set_xlabel(f"high-norm output patch\ntokens (%)\n{textwrap.fill(ERROR_BARS, 24)}")
    return _colour_handles(registers.random_weights)


def _wrap_list(text: str, width: int) -> str:
    """``text`` wrapped at ``width`` characters between the items of its comma-separated list, never inside one
    ("1 not testable" stays on one line); later lines indented by two spaces."""
    unbroken = ", ".join(item.replace(" ", "\xa0") for item in text.split(", "))  # textwrap breaks at ASCII spaces only
    return textwrap.fill(unbroken, width, subsequent_indent="  ").replace("\xa0", " ")


def summary_slide(data: SlideData) -> plt.Figure:
    """The study on one slide, one figure of five panels (:data:`SLIDE_PANELS`), each titled once, its legend
    beside or below its data: (a) high-norm share per model, (b) norms through the depth, (c) what one token
    knows, (d) high-norm share without and with registers, (e) the verdicts of every page. ``data``:
    :func:`analysis.slide.read`. Each panel's axes carry its key as their label (``ax.get_label() == "a"``; panel
    c's three axes ``"c"``); a panel whose page has no results says so instead."""
    fig = plt.figure(figsize=(WIDTH * 1.25, WIDTH * 1.4), layout="constrained")
    rows = fig.subfigures(3, 1, height_ratios=[1, 1, 0.85], hspace=0.03)
    cells = [*rows[0].subfigures(1, 2, wspace=0.04), *rows[1].subfigures(1, 2, wspace=0.04), rows[2]]
    for cell, (key, title, page) in zip(cells, SLIDE_PANELS):
        # a long verdict line wraps inside its half of the slide instead of running into the next title
        verdict = "\n" + _wrap_list(f"verdict: {data.headlines[page]}", SLIDE_TITLE_WIDTH) if page in data.headlines else ""
        cell.suptitle(f"{key}. {title}{verdict}", x=0.02, ha="left", fontsize=14)
    a, b, c, d, e = cells

    ax = a.subplots()
    ax.set_label("a")
    if data.norms is None or data.norms.empty:
        _no_data(ax, "no results: run the norm_histogram page")
    else:
        a.legend(handles=_share_bars(ax, data.norms, "", wrap=16), loc="outside lower center", ncol=1,
                 frameon=False)

    ax = b.subplots()
    ax.set_label("b")
    if data.depth is None or data.depth.empty:
        _no_data(ax, "no results: run the layer_dependence page")
    else:
        handles = _depth_norms(ax, data.depth, data.onset)
        for handle in handles:  # two legend columns in half a slide: wrap the long labels
            handle.set_label(textwrap.fill(handle.get_label(), 20))
        b.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=10)

    axes = c.subplots(1, 3, sharey=True)
    for ax in axes:
        ax.set_label("c")
    if data.probes is None or data.probes.empty:
        for ax in axes:
            ax.set_axis_off()
        _no_data(axes[1], "no results: run the information_probes page")
    else:
        _probe_bars(axes, data.probes)
        c.supxlabel(ERROR_BARS.replace("images", "held-out images"), fontsize=11)

    ax = d.subplots()
    ax.set_label("d")
    if data.registers is None or data.registers.empty:
        _no_data(ax, "no results: run the registers page")
    else:
        d.legend(handles=_register_bars(ax, data.registers), loc="outside lower center", ncol=1, frameon=False)

    ax = e.subplots()
    ax.set_label("e")
    if data.claims is None or data.claims.empty:
        _no_data(ax, "no claims judged in this run")
    else:
        _legend_beside(ax, _verdict_bars(ax, data.claims), title="verdict")
    return fig
