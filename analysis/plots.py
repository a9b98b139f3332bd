"""Figures: tables and arrays in, matplotlib figures out. No figure computes a metric.

Figures are drawn 8 inches wide with 13-point text, so that scaled to the book's text column
(about 760 px at 1280 px window width) their text is as large as the body text. Model labels come
from :func:`short_name`; random-init models are labelled so in every legend and title. The weights'
full provenance is printed under each figure by the page (a caption), not inside the image.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .models import ModelSpec

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


def _caption_random(title: str, labels: list[str]) -> str:
    return title + ("\n(random-init models are negative controls)" if any("random" in l for l in labels) else "")


def _finished(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, title: str) -> plt.Figure:
    """Label one-panel ``fig``'s axes (with units), put the legend top left and lay it out."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def norm_histogram(norms: dict[str, np.ndarray], cutoffs: dict[str, float], threshold: float,
                   positions: np.ndarray | None) -> plt.Figure:
    """Log-count histogram of output patch norms per model with the fixed and adaptive cutoffs;
    below it, the share of images with a high-norm token at each grid position (``(h, w)``) or nothing.
    ``norms``: ``{model: (B, Np)}`` and ``cutoffs``: ``{model: cutoff}``, keyed by timm spec or label.
    """
    norms = {short_name(model): values for model, values in norms.items()}
    cutoffs = {short_name(model): cutoff for model, cutoff in cutoffs.items()}
    rows = 2 if positions is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(WIDTH, 4.6 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.1][:rows]})
    ax = axes[0, 0]
    palette = dict(zip(norms, sns.color_palette("colorblind", len(norms))))
    top = max(max(float(v.max()) for v in norms.values()), threshold) * 1.05
    bins = np.linspace(0, top, 80)
    for label, values in norms.items():
        ax.hist(np.ravel(values), bins=bins, histtype="step", lw=2, color=palette[label], label=label)
        if np.isfinite(cutoffs.get(label, np.inf)):
            ax.axvline(cutoffs[label], color=palette[label], ls=":", lw=2, label=f"adaptive cutoff ({cutoffs[label]:.0f})")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"paper's cutoff ({threshold:g})")
    ax.set_yscale("log")
    ax.set_xlabel("L2 norm of output patch token (before final LayerNorm)")
    ax.set_ylabel("patch tokens (log scale)")
    ax.legend(loc="upper right")
    ax.set_title(_caption_random("Output patch-token norms", list(norms)))
    if positions is not None:
        sns.heatmap(positions, ax=axes[1, 0], cmap="rocket_r", vmin=0, vmax=1, square=True,
                    cbar_kws={"label": "share of images"})
        axes[1, 0].set_xlabel("patch column")
        axes[1, 0].set_ylabel("patch row")
        axes[1, 0].set_title("Where the high-norm tokens sit (share of images)")
        axes[1, 0].tick_params(labelsize=9)
    fig.tight_layout()
    return fig


def attention_maps(pictures: list[np.ndarray], maps: dict[str, np.ndarray], outliers: dict[str, np.ndarray],
                   image_ids: list[str], grids: tuple[int, int] | dict[str, tuple[int, int]]) -> plt.Figure:
    """Rows = models, columns = images; CLS attention (head mean) with high-norm patches boxed.

    ``pictures``: ``(H, W, 3)`` uint8 crops as the model saw them; ``maps[model]``: ``(n, Np)`` attention over
    the model's patch grid ``(h, w)`` (``grids``: one for all models, or one per model) and ``outliers[model]``:
    ``(n, Np)`` bool, for the first ``n`` pictures.
    """
    def as_grids(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {short_name(model): np.asarray(array)[: len(pictures)].reshape(
                    -1, *(grids[model] if isinstance(grids, dict) else grids)) for model, array in values.items()}

    maps, outliers = as_grids(maps), as_grids(outliers)
    rows, cols = len(maps) + 1, len(pictures)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, WIDTH / cols * rows + 0.8), squeeze=False)
    for j, picture in enumerate(pictures):
        axes[0, j].imshow(picture)
        axes[0, j].set_title(image_ids[j], fontsize=12)
    for i, (label, model_maps) in enumerate(maps.items(), start=1):
        for j, attention in enumerate(model_maps):
            axes[i, j].imshow(attention, cmap="inferno")
            for r, c in zip(*np.nonzero(outliers[label][j])):
                axes[i, j].add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="cyan", lw=1.5))
        axes[i, 0].set_ylabel(textwrap.fill(label, 16), fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(_caption_random("Last-layer CLS attention; cyan boxes: high-norm patches", list(maps)))
    fig.tight_layout()
    return fig


def depth_norms(table: pd.DataFrame, onset: int | None) -> plt.Figure:
    """Per-block median and max patch norm (log scale); blocks with a separated high-norm mode shaded."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.6))
    ax.plot(table.block, table.median_norm, "-o", ms=4, label="median patch norm")
    ax.plot(table.block, table.p99_norm, "--", label="99th percentile")
    ax.plot(table.block, table.max_norm, "-s", ms=4, label="largest patch norm")
    for block in table.block[table.separated_mode]:
        ax.axvspan(block - 0.5, block + 0.5, color="C3", alpha=0.12, lw=0)
    if onset is not None:
        ax.axvline(onset - 0.5, color="C3", lw=2, label=f"onset: block {onset}")
    ax.set_yscale("log")
    return _finished(fig, ax, "block index (0 = first); shaded: separated high-norm mode",
                     "patch-token L2 norm (log scale)", "Patch-token norms through the depth of the model")


def share_bars(summary: pd.DataFrame, title: str, xlabel: str = "model") -> plt.Figure:
    """High-norm share per model with its interval; random-init models in red."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    labels = [short_name(m) for m in summary.model]
    values = 100 * summary.outlier_share.to_numpy()
    low = 100 * summary.outlier_share_low.fillna(summary.outlier_share).to_numpy()
    high = 100 * summary.outlier_share_high.fillna(summary.outlier_share).to_numpy()
    colours = [RANDOM_COLOUR if r else "C0" for r in summary.random_weights]
    ax.barh(labels, values, xerr=[values - low, high - values], color=colours, capsize=4)
    ax.invert_yaxis()
    ax.set_xlabel("high-norm output patch tokens (%, 95% interval over images)")
    ax.set_ylabel(xlabel)
    ax.set_title(_caption_random(title, labels))
    fig.tight_layout()
    return fig


def training_curve(table: pd.DataFrame) -> plt.Figure:
    """High-norm share vs training progress (one point per checkpoint, with its interval)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    x, y = 100 * table.training_fraction, 100 * table.outlier_share
    ax.errorbar(x, y, yerr=[y - 100 * table.outlier_share_low, 100 * table.outlier_share_high - y], marker="o",
                capsize=4)
    for row in table.itertuples():
        ax.annotate(row.label, (100 * row.training_fraction, 100 * row.outlier_share), xytext=(6, 6),
                    textcoords="offset points")
    ax.axvline(100 / 3, color="0.5", ls=":", label="paper: about a third of training")
    ax.set_xlabel("training progress (% of the run)")
    ax.set_ylabel("high-norm output patch tokens (%)")
    ax.set_xlim(-5, 110)
    ax.legend()
    ax.set_title("Outliers along training")
    fig.tight_layout()
    return fig


def redundancy(table: pd.DataFrame) -> plt.Figure:
    """Neighbour cosine of high-norm vs normal patches: overall (left) and by number of neighbours (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    groups = table.assign(token=np.where(table.high_norm, "high-norm", "normal"))
    sns.histplot(groups, x="neighbour_cosine", hue="token", stat="density", common_norm=False, element="step",
                 bins=30, ax=axes[0], hue_order=["normal", "high-norm"])
    axes[0].set_xlabel("cosine to 4 neighbours\n(after patch embedding)")
    axes[0].set_ylabel("density (per group)")
    sns.stripplot(groups, x="neighbours", y="neighbour_cosine", hue="token", hue_order=["normal", "high-norm"],
                  dodge=True, size=2.5, alpha=0.5, ax=axes[1], legend=False)
    axes[1].set_xlabel("grid neighbours\n(2 corner, 3 border, 4 inside)")
    axes[1].set_ylabel("neighbour cosine")
    fig.suptitle("Are outlier patches redundant with their neighbours?")
    fig.tight_layout()
    return fig


def register_comparison(norms: dict[str, np.ndarray], prefix: pd.DataFrame) -> plt.Figure:
    """Top: output patch-norm histograms with and without registers (``{model: (B, Np)}``). Bottom: norms of
    CLS and each register (:func:`analysis.findings.prefix_norms`)."""
    norms = {short_name(model): values for model, values in norms.items()}
    prefix = prefix.assign(model=prefix.model.map(short_name))
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, 8))
    top = max(float(v.max()) for v in norms.values()) * 1.05
    for label, values in norms.items():
        axes[0].hist(np.ravel(values), bins=np.linspace(0, top, 70), histtype="step", lw=2, label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("L2 norm of output patch token")
    axes[0].set_ylabel("patch tokens (log scale)")
    axes[0].legend()
    axes[0].set_title(_caption_random("Patch norms with and without registers", list(norms)))
    sns.boxplot(prefix, x="name", y="norm", hue="model", ax=axes[1])
    axes[1].set_xlabel("prefix token")
    axes[1].set_ylabel("L2 norm at the last block")
    axes[1].set_title("Where the high norms went: CLS and register tokens")
    fig.tight_layout()
    return fig


def verdict_chart(claims: pd.DataFrame) -> plt.Figure:
    """Count of verdicts per page, coloured by verdict."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.8 + 0.5 * max(claims.page.nunique(), 1)))
    if claims.empty:  # e.g. every model was a random-init control: nothing was judged
        ax.text(0.5, 0.5, "no claims judged in this run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    counts = claims.groupby(["page", "verdict"], sort=False).size().unstack(fill_value=0).iloc[::-1]
    counts = counts.reindex(columns=[v for v in VERDICT_COLOURS if v in counts.columns])
    counts.plot.barh(stacked=True, ax=ax, color=[VERDICT_COLOURS[v] for v in counts.columns])
    ax.set_xlabel("number of claims")
    ax.set_ylabel("")
    ax.set_title("Verdicts of this run, per page")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def benchmark(ratios: pd.DataFrame) -> plt.Figure:
    """Each measured ratio against its target (black tick); green when met."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.9 + 0.6 * len(ratios)))
    ax.barh(ratios.metric, ratios.value, color=["#1b7837" if ok else "#b2182b" for ok in ratios.passed])
    for y, target in enumerate(ratios.target):
        ax.plot([target, target], [y - 0.4, y + 0.4], color="black", lw=3)
    ax.set_xlabel("measured ratio (black tick: target; lower is better)")
    ax.set_title("Benchmark ratios (green: target met)")
    fig.tight_layout()
    return fig


def probe_bars(table: pd.DataFrame) -> plt.Figure:
    """Three panels: position top-1, pixel error, class accuracy by token kind, with intervals."""
    panels = [("position top-1", "position top-1 (%)", 100), ("pixel L2 error", "pixel L2 error", 1),
              ("class accuracy", "class accuracy (%)", 100)]
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 4.2))
    colours = {"normal": "C0", "high-norm": "C3", "CLS": "0.45"}
    for ax, (probe, label, scale) in zip(axes, panels):
        rows = table[table.probe == probe]
        values = scale * rows.value.to_numpy()
        errors = [values - scale * rows.low.to_numpy(), scale * rows.high.to_numpy() - values]
        ax.bar(rows.token, values, yerr=np.nan_to_num(errors), capsize=4, color=[colours[t] for t in rows.token])
        ax.set_ylabel(label)
        ax.set_title(probe)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def single_image(picture: np.ndarray, norm_maps: dict[str, np.ndarray], attention: dict[str, np.ndarray],
                 outliers: dict[str, np.ndarray]) -> plt.Figure:
    """One image: per model (rows) the output-norm map and the CLS attention map (``(h, w)`` each, keyed by
    model), high-norm patches boxed."""
    norm_maps, attention, outliers = ({short_name(model): values for model, values in maps.items()}
                                      for maps in (norm_maps, attention, outliers))
    rows = len(norm_maps)
    fig, axes = plt.subplots(rows, 3, figsize=(WIDTH, 2.9 * rows + 0.6), squeeze=False)
    for i, label in enumerate(norm_maps):
        axes[i, 0].imshow(picture)
        axes[i, 0].set_ylabel(textwrap.fill(label, 16), fontsize=11)
        axes[i, 1].imshow(norm_maps[label], cmap="viridis")
        axes[i, 2].imshow(attention[label], cmap="inferno")
        for ax in axes[i, 1:]:
            for r, c in zip(*np.nonzero(outliers[label])):
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image (model's view)", fontsize=12)
    axes[0, 1].set_title("output norms", fontsize=12)
    axes[0, 2].set_title("CLS attention", fontsize=12)
    fig.tight_layout()
    return fig


def discovery_examples(pictures: list, truth: list[list[tuple]], predicted: dict[str, list[tuple]]) -> plt.Figure:
    """Example images with true boxes (green, dashed) and the boxes LOST found per condition (solid)."""
    predicted = {short_name(model): boxes for model, boxes in predicted.items()}
    columns = max(len(pictures), 1)
    fig, axes = plt.subplots(1, columns, figsize=(WIDTH, WIDTH / columns + 1.4), squeeze=False)
    colours = dict(zip(predicted, ["red", "cyan", "orange", "magenta", "yellow", "white"] * 4))
    for i, (ax, picture, boxes) in enumerate(zip(axes[0], pictures, truth)):
        ax.imshow(picture)
        for x0, y0, x1, y1 in boxes:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=2, ls="--"))
        for name, found in predicted.items():
            x0, y0, x1, y1 = found[i]
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colours[name], lw=2))
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], color=c, lw=2, label=n) for n, c in colours.items()]
    handles.append(plt.Line2D([], [], color="lime", lw=2, ls="--", label="true box"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=10, frameon=False)
    fig.suptitle("LOST object discovery")
    fig.tight_layout(rect=(0, 0.08 + 0.04 * (len(handles) // 2), 1, 1))
    return fig


#: Text scale of a slide's panels: each panel shows at half the text column's width, so its text is drawn larger;
#: 1.5, not 2, so that labels still fit the panels' axes.
SLIDE_TEXT_SCALE = 1.5


def slide_text():
    """A context in which figures are drawn with text :data:`SLIDE_TEXT_SCALE` times larger (for :func:`slide`)."""
    base = plt.rcParams["font.size"]
    return plt.rc_context({"font.size": base * SLIDE_TEXT_SCALE, "axes.titlesize": base * SLIDE_TEXT_SCALE,
                           "axes.labelsize": base * SLIDE_TEXT_SCALE, "legend.fontsize": base * SLIDE_TEXT_SCALE * 0.8,
                           "xtick.labelsize": base * SLIDE_TEXT_SCALE * 0.9,
                           "ytick.labelsize": base * SLIDE_TEXT_SCALE * 0.9})


def slide(panels: list[plt.Figure], titles: list[str]) -> plt.Figure:
    """A 2x2 grid of already drawn figures (rendered to images) for a one-page summary; draw the panels inside
    :func:`slide_text` so their labels read at the body text's size."""
    from io import BytesIO

    from PIL import Image

    fig, axes = plt.subplots(2, 2, figsize=(WIDTH * 1.6, WIDTH * 1.15))
    for ax, panel, title in zip(axes.flat, panels, titles):
        buffer = BytesIO()
        panel.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(panel)
        ax.imshow(np.asarray(Image.open(buffer)))
        ax.set_title(title, loc="left", fontsize=15)
        ax.axis("off")
    fig.tight_layout()
    return fig


def census(table: pd.DataFrame) -> plt.Figure:
    """High-norm share (with its interval) against model size, coloured by training recipe."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.8))
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
    return _finished(fig, ax, "parameters (millions, log scale)", "high-norm output patch tokens (%)",
                     "Which ViTs have high-norm tokens?")


def validation_grid(table: pd.DataFrame) -> plt.Figure:
    """Twins (rows) × checks (columns): each cell names the verdict the rule gave, green where it matches the
    twin's declared truth, red where it does not, blank where the check does not apply to that twin."""
    checks = list(dict.fromkeys(table.check))
    names = list(dict.fromkeys(table.twin))
    fig, ax = plt.subplots(figsize=(WIDTH, 2.6 + 0.6 * len(names)))
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
    ax.set_title(f"Rules against planted truth: {matched} of {len(table)} verdicts match")
    fig.tight_layout()
    return fig
