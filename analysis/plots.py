"""Figures: tidy frames in, matplotlib figures out. Every figure carries its weights' provenance.

No figure computes a metric; each takes the tables from :mod:`analysis.findings`.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .models import Provenance

sns.set_theme(context="notebook", style="whitegrid")

RANDOM_COLOUR = "#b30000"


def short_name(spec: str) -> str:
    """Compact model label: ``random:vit_tiny_patch16_224.augreg…`` → ``vit_tiny_patch16_224 (random)``."""
    random_weights = spec.startswith("random:")
    name = spec.removeprefix("random:").split(".")[0]
    return f"{name} (random)" if random_weights else name


def add_provenance(fig: plt.Figure, provenances: list[Provenance]) -> None:
    """Caption lines under the figure; random weights in red, stated as not testable."""
    lines = ["Weights: " + p.label() for p in provenances]
    if any(p.is_random for p in provenances):
        lines.append("RANDOM WEIGHTS in this figure: the paper's claim is NOT TESTABLE with them.")
    text = "\n".join(textwrap.fill(line, 150) for line in lines)
    colour = RANDOM_COLOUR if any(p.is_random for p in provenances) else "0.3"
    fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=8, color=colour)


def _title(ax: plt.Axes, title: str, provenances: list[Provenance]) -> None:
    if any(p.is_random for p in provenances):
        title += "\n(includes RANDOM-INIT weights: not testable)"
    ax.set_title(title)


def norm_histogram(
    norms: pd.DataFrame, summary: pd.DataFrame, positions: pd.DataFrame | None, provenances: list[Provenance]
) -> plt.Figure:
    """Log-count histogram of output patch norms per model, fixed and adaptive cutoffs; outlier positions.

    ``norms``: rows ``model, norm``; ``summary``: :func:`~analysis.findings.norm_summary`;
    ``positions``: share of images with an outlier at each grid cell (first pretrained model) or None.
    """
    with_map = positions is not None
    fig, axes = plt.subplots(1, 2 if with_map else 1, figsize=(13 if with_map else 8, 4.5),
                             gridspec_kw={"width_ratios": [2, 1]} if with_map else None)
    ax = axes[0] if with_map else axes
    palette = dict(zip(summary.model, sns.color_palette("colorblind", len(summary))))
    bins = np.linspace(0, max(norms.norm.max(), float(summary.threshold.iloc[0])) * 1.05, 80)
    for spec, group in norms.groupby("model", sort=False):
        ax.hist(group.norm, bins=bins, histtype="step", lw=1.8, color=palette[spec], label=short_name(spec))
    threshold = float(summary.threshold.iloc[0])
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"paper's cutoff ({threshold:g})")
    for row in summary.itertuples():
        if np.isfinite(row.adaptive_cutoff):
            ax.axvline(row.adaptive_cutoff, color=palette[row.model], ls=":", lw=1.5,
                       label=f"adaptive cutoff {short_name(row.model)} ({row.adaptive_cutoff:.0f})")
    ax.set_yscale("log")
    ax.set_xlabel("L2 norm of output patch token (before final LayerNorm)")
    ax.set_ylabel("number of patch tokens (log scale)")
    ax.legend(fontsize=8)
    _title(ax, "Output patch-token norms", provenances)
    if with_map:
        sns.heatmap(positions, ax=axes[1], cmap="rocket_r", vmin=0, vmax=1, square=True,
                    cbar_kws={"label": "share of images with a high-norm token"})
        axes[1].set_xlabel("patch column")
        axes[1].set_ylabel("patch row")
        axes[1].set_title("Where the high-norm tokens sit")
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def attention_maps(
    pictures: list[np.ndarray],
    maps: dict[str, list[np.ndarray]],
    outliers: dict[str, list[np.ndarray]],
    image_ids: list[str],
    provenances: list[Provenance],
) -> plt.Figure:
    """Rows = models, columns = images; last-layer CLS attention (head mean), high-norm patches boxed.

    ``pictures``: ``(H, W, 3)`` uint8 crops as the model saw them; ``maps[model][i]``: ``(h, w)``
    attention; ``outliers[model][i]``: ``(h, w)`` boolean mask.
    """
    rows, cols = len(maps) + 1, len(pictures)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for j, picture in enumerate(pictures):
        axes[0, j].imshow(picture)
        axes[0, j].set_title(image_ids[j], fontsize=9)
    for i, (spec, model_maps) in enumerate(maps.items(), start=1):
        for j, attention in enumerate(model_maps):
            ax = axes[i, j]
            ax.imshow(attention, cmap="inferno")
            for r, c in zip(*np.nonzero(outliers[spec][j])):
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="cyan", lw=1.2))
        axes[i, 0].set_ylabel(textwrap.fill(short_name(spec), 18), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Last-layer CLS attention (mean over heads); cyan boxes: high-norm patches"
                 + ("\nincludes RANDOM-INIT weights: not testable" if any(p.is_random for p in provenances) else ""))
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def layer_norms(table: pd.DataFrame, cutoff: float, first_layer: int | None, provenances: list[Provenance]) -> plt.Figure:
    """Per-block patch-norm median, 99th percentile and max (log scale), the cutoff and the onset block."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for column, style in (("median_norm", "-"), ("p99_norm", "--"), ("max_norm", "-")):
        ax.plot(table.layer, table[column], style, marker="o", ms=3, label=column.replace("_", " "))
    ax.plot(table.layer, table.cls_norm, ":", color="0.4", label="CLS token norm")
    if np.isfinite(cutoff):
        ax.axhline(cutoff, color="black", ls="--", lw=1, label=f"cutoff ({cutoff:.0f})")
    if first_layer is not None:
        ax.axvline(first_layer, color=RANDOM_COLOUR, lw=1, label=f"first block with outliers ({first_layer})")
    ax.set_yscale("log")
    ax.set_xlabel("block index (0 = first block)")
    ax.set_ylabel("patch-token L2 norm (log scale)")
    ax.legend(fontsize=8)
    _title(ax, "Patch-token norms through the depth of the model", provenances)
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def size_bars(summary: pd.DataFrame, provenances: list[Provenance]) -> plt.Figure:
    """Outlier share and max/median norm ratio per model size."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [short_name(m) for m in summary.model]
    colours = [RANDOM_COLOUR if r else "C0" for r in summary.random_weights]
    axes[0].bar(labels, 100 * summary.outlier_share, color=colours)
    axes[0].set_ylabel("high-norm output patch tokens (%)")
    axes[1].bar(labels, summary.max_over_median, color=colours)
    axes[1].set_ylabel("max / median output patch norm (ratio)")
    for ax in axes:
        ax.set_xlabel("model (small → large)")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    _title(axes[0], "Outlier share by model size", provenances)
    _title(axes[1], "Norm spread by model size", provenances)
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def training_curve(table: pd.DataFrame, provenances: list[Provenance]) -> plt.Figure:
    """High-norm share vs training progress (one point per checkpoint)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(100 * table.training_fraction, 100 * table.outlier_share, marker="o")
    for row in table.itertuples():
        ax.annotate(row.label, (100 * row.training_fraction, 100 * row.outlier_share), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("training progress (% of the run)")
    ax.set_ylabel("high-norm output patch tokens (%)")
    ax.set_xlim(-5, 105)
    _title(ax, "Outliers along training", provenances)
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def redundancy_density(table: pd.DataFrame, summary: dict, provenances: list[Provenance]) -> plt.Figure:
    """Distributions of neighbour cosine (after patch embedding) for high-norm vs normal patches."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    groups = table.assign(token=np.where(table.high_norm, "high-norm", "normal"))
    sns.histplot(groups, x="neighbour_cosine", hue="token", stat="density", common_norm=False,
                 element="step", bins=40, ax=ax, hue_order=["normal", "high-norm"])
    ax.set_xlabel("mean cosine similarity to the 4 grid neighbours (after patch embedding)")
    ax.set_ylabel("density (per group)")
    _title(ax, f"Redundancy of the patches that become outliers (AUC {summary['auc']:.2f})", provenances)
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def register_comparison(norms: pd.DataFrame, prefix: pd.DataFrame, provenances: list[Provenance]) -> plt.Figure:
    """Left: output patch-norm histograms with and without registers. Right: norms of CLS and each register."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), gridspec_kw={"width_ratios": [3, 2]})
    bins = np.linspace(0, norms.norm.max() * 1.05, 70)
    for spec, group in norms.groupby("model", sort=False):
        axes[0].hist(group.norm, bins=bins, histtype="step", lw=1.8, label=short_name(spec))
    axes[0].set_yscale("log")
    axes[0].set_xlabel("L2 norm of output patch token")
    axes[0].set_ylabel("number of patch tokens (log scale)")
    axes[0].legend(fontsize=8)
    _title(axes[0], "Patch norms with and without registers", provenances)
    if prefix.empty:
        axes[1].text(0.5, 0.5, "no register model in this run", ha="center", va="center")
    else:
        sns.boxplot(prefix, x="name", y="norm", hue="model", ax=axes[1])
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("prefix token")
    axes[1].set_ylabel("L2 norm at the last block")
    axes[1].set_title("Where the high norms went")
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"reproduced": "#1b7837", "not reproduced": "#b2182b", "not testable": "#8c8c8c"}


def verdict_chart(claims: pd.DataFrame) -> plt.Figure:
    """Count of verdicts per page."""
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * max(claims.page.nunique(), 1)))
    counts = claims.groupby(["page", "verdict"], sort=False).size().unstack(fill_value=0)
    counts = counts.iloc[::-1]  # barh draws bottom-up: keep the book's page order top-down
    counts = counts.reindex(columns=[v for v in VERDICT_COLOURS if v in counts.columns])
    counts.plot.barh(stacked=True, ax=ax, color=[VERDICT_COLOURS[v] for v in counts.columns])
    ax.set_xlabel("number of claims")
    ax.set_ylabel("page")
    ax.set_title("Verdicts of this run, per page")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def benchmark(ratios: pd.DataFrame, throughput: pd.DataFrame) -> plt.Figure:
    """Left: each measured ratio against its target. Right: images/s per model (measured or estimated)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    if ratios.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "not measured in this build\n(run `make bench`)", ha="center", va="center")
            ax.set_xticks([])
            ax.set_yticks([])
        return fig
    colours = ["#1b7837" if ok else "#b2182b" for ok in ratios.passed]
    axes[0].barh(ratios.metric, ratios.value, color=colours)
    for y, target in enumerate(ratios.target):
        axes[0].plot([target, target], [y - 0.4, y + 0.4], color="black", lw=2)
    axes[0].set_xlabel("measured ratio (black tick: target, lower is better)")
    axes[0].set_title("Benchmark ratios (green: target met)")
    labels = [short_name(m) for m in throughput.model]
    axes[1].barh(labels, throughput.images_per_s, color=["C0" if m else "0.7" for m in throughput.measured])
    axes[1].set_xscale("log")
    axes[1].set_xlabel("images per second on this CPU (log scale; grey: estimated from parameter count)")
    axes[1].set_title("Throughput of one hooked pass at the paper resolution")
    fig.tight_layout()
    return fig


def probe_bars(table: pd.DataFrame, provenances: list[Provenance]) -> plt.Figure:
    """Three panels: position top-1, pixel error, class accuracy — normal vs high-norm tokens (and CLS)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = [("position top-1", "position top-1 accuracy (%)", 100),
              ("pixel L2 error", "pixel reconstruction L2 error (normalised units)", 1),
              ("class accuracy", "image-class accuracy (%)", 100)]
    colours = {"normal": "C0", "normal patch": "C0", "high-norm": "C3", "high-norm patch": "C3", "CLS": "0.4"}
    for ax, (probe, label, scale) in zip(axes, panels):
        rows = table[table.probe == probe]
        ax.bar(rows.token, scale * rows.value, color=[colours[t] for t in rows.token])
        ax.set_ylabel(label)
        ax.set_xlabel("token probed")
        ax.set_title(probe)
    _title(axes[0], "position top-1", provenances)
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def single_image(picture: np.ndarray, norm_maps: dict[str, np.ndarray], attention: dict[str, list[np.ndarray]],
                 outliers: dict[str, list[np.ndarray]], provenances: list[Provenance]) -> plt.Figure:
    """One image: per model (rows) the output-norm map and the CLS attention map, high-norm patches boxed."""
    rows = len(norm_maps)
    fig, axes = plt.subplots(rows, 3, figsize=(10, 3.2 * rows), squeeze=False)
    for i, spec in enumerate(norm_maps):
        axes[i, 0].imshow(picture)
        axes[i, 0].set_ylabel(textwrap.fill(short_name(spec), 20), fontsize=8)
        shown = axes[i, 1].imshow(norm_maps[spec], cmap="viridis")
        fig.colorbar(shown, ax=axes[i, 1], label="output patch norm")
        axes[i, 2].imshow(attention[spec][0], cmap="inferno")
        for ax in axes[i, 1:]:
            for r, c in zip(*np.nonzero(outliers[spec][0])):
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.2))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image (as the model sees it)")
    axes[0, 1].set_title("token norms (red: high-norm)")
    axes[0, 2].set_title("last-layer CLS attention")
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def slide(panels: list[np.ndarray], titles: list[str], provenances: list[Provenance]) -> plt.Figure:
    """A 2x2 grid of already rendered figures (RGBA arrays) for a one-page summary."""
    fig, axes = plt.subplots(2, 2, figsize=(16, 11))
    for ax, panel, title in zip(axes.flat, panels, titles):
        ax.imshow(panel)
        ax.set_title(title, fontsize=14, loc="left")
        ax.axis("off")
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig


def discovery_examples(pictures: list, truth: list[list[tuple]], predicted: dict[str, list[tuple]],
                       table: pd.DataFrame, provenances: list[Provenance]) -> plt.Figure:
    """Example images with true boxes (green, dashed) and LOST boxes per condition; CorLoc bars."""
    columns = max(len(pictures), 1)
    fig = plt.figure(figsize=(3.2 * columns, 3.4 + 0.45 * len(table) + 1.2))
    grid = fig.add_gridspec(2, columns, height_ratios=[3.2, 0.45 * len(table) + 0.8])
    axes = [fig.add_subplot(grid[0, j]) for j in range(len(pictures))] + [fig.add_subplot(grid[1, :])]
    colours = dict(zip(predicted, ["red", "cyan", "orange", "magenta", "yellow", "white"] * 4))
    for ax, picture, boxes, i in zip(axes, pictures, truth, range(len(pictures))):
        ax.imshow(picture)
        for x0, y0, x1, y1 in boxes:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=2, ls="--"))
        for name, found in predicted.items():
            x0, y0, x1, y1 = found[i]
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colours[name], lw=1.5))
        ax.set_xticks([])
        ax.set_yticks([])
    labels = [f"{short_name(m)}, {c}" for m, c in zip(table.model, table.condition)]
    axes[-1].barh(labels, 100 * table.corloc, color=[colours.get(label, "0.5") for label in labels])
    axes[-1].set_xlabel("CorLoc (% of images, IoU >= 0.5)")
    axes[-1].set_xlim(0, 100)
    axes[-1].tick_params(axis="y", labelsize=9)
    fig.suptitle("LOST object discovery: true boxes dashed green, found boxes solid"
                 + ("\nincludes RANDOM-INIT weights: not testable" if any(p.is_random for p in provenances) else ""))
    add_provenance(fig, provenances)
    fig.tight_layout()
    return fig
