"""The one-slide summary's data: the tidy tables :func:`analysis.plots.summary_slide` draws, read from the results
the finding pages of this run saved (``<page>.parquet`` and ``<page>_claims.parquet``), and the text that reads the
slide's numbers back to the student. Nothing here measures anything; a page without results leaves its panel empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .claims import headline

#: Finding pages, in the book's order: the order of the verdicts panel (pages not listed come after, by name).
FINDING_PAGES = ("attention_maps", "norm_histogram", "layer_dependence", "model_size", "training_time", "redundancy",
                 "information_probes", "registers", "test_time_registers", "object_discovery", "census")
#: The columns of the registers table.
REGISTER_COLUMNS = ["condition", "model", "random_weights", "outlier_share", "outlier_share_low",
                    "outlier_share_high", "register_norm_median", "median_norm"]


@dataclass
class SlideData:
    """What the slide shows; ``None`` where the page that makes a table has no results in the folder.

    ``norms``: ``norm_histogram.parquet`` (one row per model: ``model``, ``random_weights``, ``outlier_share`` and
    its ``_low``/``_high``); ``depth``: ``layer_dependence.parquet`` (one row per block) and ``onset``, the first
    block with a separated high-norm mode (``None``: none); ``probes``: ``information_probes.parquet`` (``probe``,
    ``token``, ``value``, ``low``, ``high``); ``registers``: :func:`register_table`; ``claims``: every page's
    claims, pages in book order; ``headlines``: ``{page: headline verdict}``.
    """

    norms: pd.DataFrame | None = None
    depth: pd.DataFrame | None = None
    onset: int | None = None
    probes: pd.DataFrame | None = None
    registers: pd.DataFrame | None = None
    claims: pd.DataFrame | None = None
    headlines: dict[str, str] = field(default_factory=dict)


def onset_block(depth: pd.DataFrame) -> int | None:
    """The first block with a separated high-norm mode (``None``: no block has one)."""
    separated = depth.block[depth.separated_mode.astype(bool)]
    return int(separated.min()) if len(separated) else None


def register_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The registers page's table (:func:`analysis.findings.norm_summary` of the pair) as two tidy rows, without
    then with registers: ``condition`` (``"without registers"``/``"with registers"``: a model with registers has a
    register norm), the model, whether it is random-init, its high-norm share with the interval, its median
    register and patch norms."""
    with_registers = summary.register_norm_median.notna()
    rows = summary.assign(condition=with_registers.map({False: "without registers", True: "with registers"}),
                          order=with_registers.astype(int))
    return rows.sort_values("order", kind="stable")[REGISTER_COLUMNS].reset_index(drop=True)


def _page_order(page: str) -> tuple[int, str]:
    return (FINDING_PAGES.index(page) if page in FINDING_PAGES else len(FINDING_PAGES), page)


def read(folder: str | Path) -> SlideData:
    """The slide's tables from the results ``folder`` (:func:`analysis.report.default_results_dir`)."""
    folder = Path(folder)

    def result(name: str) -> pd.DataFrame | None:
        path = folder / f"{name}.parquet"
        return pd.read_parquet(path) if path.is_file() else None

    depth = result("layer_dependence")
    registers = result("registers")
    pages = sorted((path.name.removesuffix("_claims.parquet") for path in folder.glob("*_claims.parquet")),
                   key=_page_order)
    frames = [frame for page in pages if not (frame := result(f"{page}_claims")).empty]
    claims = pd.concat(frames, ignore_index=True) if frames else None
    headlines = ({page: headline(list(group.verdict)) for page, group in claims.groupby("page", sort=False)}
                 if claims is not None else {})
    return SlideData(norms=result("norm_histogram"), depth=depth,
                     onset=onset_block(depth) if depth is not None else None, probes=result("information_probes"),
                     registers=register_table(registers) if registers is not None else None, claims=claims,
                     headlines=headlines)


def _share(row) -> str:
    """``1.98% (1.72% to 2.04%)``; the share alone where it has no interval."""
    low, high = row.outlier_share_low, row.outlier_share_high
    known = not (pd.isna(low) or pd.isna(high))
    return f"{row.outlier_share:.2%}" + (f" ({low:.2%} to {high:.2%})" if known else "")


def caption(data: SlideData) -> str:
    """What each panel of this run's slide shows, in words and with its numbers (Markdown, for under the figure)."""
    from .plots import short_name  # plots sets the figures' style; only a page showing the slide needs it
    from .stats import CONFIDENCE

    interval = f"{CONFIDENCE * 100:.0f} % interval over images"
    lines = [f"**How to read the slide.** Error bars, and the ranges in brackets below, are {interval}; red bars "
             "are random-init models, negative controls that must show no high-norm tokens."]
    if data.norms is not None and not data.norms.empty:
        shares = "; ".join(f"{short_name(r.model)} {_share(r)}" for r in data.norms.itertuples())
        lines.append(f"- **a.** The share of output patch tokens above each model's cutoff: {shares}.")
    if data.depth is not None and not data.depth.empty:
        blocks = len(data.depth)
        where = (f"from block {data.onset} of {blocks} (0 = first) on, a separate group of high-norm tokens appears "
                 f"(shaded) and the largest norm jumps away from the median" if data.onset is not None else
                 f"no block of the {blocks} has a separate group of high-norm tokens")
        lines.append(f"- **b.** Norms block by block, on a log scale: {where}.")
    if data.probes is not None and not data.probes.empty:
        value = {(r.probe, r.token): r.value for r in data.probes.itertuples()}

        def pct(key) -> str:
            return "not measured" if key not in value or math.isnan(value[key]) else f"{value[key]:.0%}"

        lines.append(
            "- **c.** Linear probes on single tokens of held-out images: position found for "
            f"{pct(('position top-1', 'normal'))} of normal and {pct(('position top-1', 'high-norm'))} of high-norm "
            "tokens (local information; pixel error: lower is better); image class from one token: "
            f"CLS {pct(('class accuracy', 'CLS'))}, normal {pct(('class accuracy', 'normal'))}, high-norm "
            f"{pct(('class accuracy', 'high-norm'))} (global information).")
    if data.registers is not None and not data.registers.empty:
        pair = "; ".join(f"{r.condition}, {short_name(r.model)}: {_share(r)}" for r in data.registers.itertuples())
        lines.append(f"- **d.** High-norm output patch tokens, each model on its own cutoff: {pair}.")
    if data.claims is not None and not data.claims.empty:
        counts = data.claims.verdict.value_counts()
        lines.append(f"- **e.** {len(data.claims)} claims judged, counted per page: "
                     + ", ".join(f"{int(n)} {verdict}" for verdict, n in counts.items()) + ". The claims page "
                     "lists each one with its rule.")
    return "\n".join(lines)
