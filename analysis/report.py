"""What a page publishes: its result table, claims and controls as parquet; its numbers glued into the text.

A notebook makes its measurement in visible cells and hands the results to a :class:`Page`, which
writes the tables (atomically: temporary file, then rename) and glues the verdict block, the
weights block and every number for the page's prose. Nothing here measures anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .claims import Claim, Control, Judgement, Verdict, claims_frame, control, headline
from .features import Features
from .models import Provenance
from .stats import CONFIDENCE

RESULTS_ENV = "REGISTERS_RESULTS"


def default_results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, Path.cwd() / "_build" / "results"))


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Atomic parquet write: temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


ADMONITION_CLASS = {"reproduced": "tip", "not reproduced": "error", "inconclusive": "warning",
                    "not testable": "note"}


def headline_class(text: str) -> str:
    """The admonition colour of a headline: its worst verdict (a pure "reproduced" headline is green)."""
    if text.startswith(str(Verdict.REPRODUCED)):
        return ADMONITION_CLASS["reproduced"]
    for verdict in (Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE):
        if str(verdict) in text:
            return ADMONITION_CLASS[str(verdict)]
    return "note"


def verdict_markdown(claims: list[Claim], controls: list[Control] = ()) -> str:
    """A MyST admonition: the page's headline, each claim with its kind, figure, interval and rule, the controls."""
    text = headline([c.verdict for c in claims])
    lines = [f"```{{admonition}} Verdict of this run: {text}", f":class: {headline_class(text)}", ""]
    for claim in claims:
        lines.append(
            f"- **{claim.verdict}** — *{claim.kind}*, {claim.model}: {claim.claim}  \n"
            f"  Paper: {claim.paper}. This run: {claim.measured}. Why: {claim.reason}.  \n"
            f"  Rule: {claim.rule}."
        )
    if not claims:
        lines.append("- no claim could be evaluated with these parameters.")
    if controls:
        lines += ["", "Negative controls (random-init twins, not claims):", ""]
        lines += [f"- {'✓' if c.passed else '**✗ FAILED**'} {c.line()}" for c in controls]
    lines.append("```")
    return "\n".join(lines)


def controls_markdown(controls: list[Control]) -> str:
    """The negative controls alone (a page without claims), as a MyST admonition."""
    failed = [c for c in controls if not c.passed]
    lines = [f"```{{admonition}} Negative controls: {'all as expected' if not failed else f'{len(failed)} FAILED'}",
             f":class: {'tip' if not failed else 'error'}", ""]
    lines += [f"- {'✓' if c.passed else '**✗ FAILED**'} {c.line()}" for c in controls] or ["- none in this run"]
    return "\n".join(lines + ["```"])


def weights_markdown(provenances: Iterable[Provenance], notes: Iterable[str] = ()) -> str:
    """The weights used (random ones flagged as controls) and any image conversion notes."""
    provenances = list(provenances)
    items = "\n".join(f"- {p.label()}" for p in provenances)
    notes = sorted(set(notes))
    note_text = ("\n\nImages: " + "; ".join(notes) + ".") if notes else ""
    if any(p.is_random for p in provenances):
        return ("```{admonition} Weights of this run (includes random initialisation)\n:class: danger\n"
                "Models marked RANDOM INIT are **not pretrained**: they are negative controls, never evidence "
                f"for or against the paper.\n\n{items}{note_text}\n```")
    return f"```{{admonition}} Weights of this run\n:class: note\n{items}{note_text}\n```"


def figure_png(figure: plt.Figure, dpi: int = 110):
    """The figure as a PNG display object (renders the same under any backend); closes the figure."""
    from io import BytesIO

    from IPython.display import Image

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return Image(data=buffer.getvalue(), format="png")


def styled(table: pd.DataFrame, formats: dict[str, str] | None = None):
    """A table for the page: index hidden, numbers formatted (``{"share": "{:.2%}"}``), nan as "–",
    column names with spaces instead of underscores (so headers wrap between words)."""
    readable = table.rename(columns=lambda name: str(name).replace("_", " "))
    formats = {str(name).replace("_", " "): fmt for name, fmt in (formats or {}).items()}
    return readable.style.hide(axis="index").format(formats, na_rep="–")


#: How a column is shown, read from the words in its name (first match wins): shares as percentages,
#: ratios with a times sign, cutoffs and largest norms as whole numbers, other norms and means with one decimal.
COLUMN_FORMATS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("share", "corloc", "fraction", "accuracy", "boxes", "onset"), "{:.2%}"),
    (("enrichment", "matched", "ratio"), "{:.1f}×"),
    (("cutoff", "max_norm", "params_m"), "{:.0f}"),
    (("norm", "mean"), "{:.1f}"),
)


def column_format(name: str, dtype) -> str | None:
    """The format of one column of :func:`table` (None: as pandas shows it)."""
    if not pd.api.types.is_float_dtype(dtype):
        return None
    words = str(name).lower()
    for keys, fmt in COLUMN_FORMATS:
        if any(key in words for key in keys):
            return fmt
    return "{:.3g}"


def table(frame: pd.DataFrame, columns: list[str] | None = None):
    """``frame`` (or its ``columns``) as the page shows it: formatted by column names (:data:`COLUMN_FORMATS`),
    timm specs in a ``model`` column shortened to the figures' names, index hidden, nan as "–"."""
    from .plots import short_name  # plots imports matplotlib styles; only tables shown on a page need it

    shown = frame[columns] if columns else frame
    if "model" in shown:
        shown = shown.assign(model=shown.model.map(short_name))
    return styled(shown, {name: fmt for name, dtype in shown.dtypes.items()
                          if (fmt := column_format(name, dtype)) is not None})


def interval_words() -> str:
    """How prose names the study's intervals: "95 % interval over images"."""
    return f"{CONFIDENCE * 100:.0f} % interval over images"


def percent(value: float, digits: int = 1) -> str:
    """A share for prose; "not measured" instead of a sentinel when there is no value."""
    return "not measured" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}%}"


@dataclass
class Page:
    """Collects one page's results and publishes them (tables under ``results_dir``, glue for the text)."""

    name: str
    results_dir: str | Path | None = None
    claims: list[Claim] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    provenances: list[Provenance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.results_dir) if self.results_dir else default_results_dir()

    @property
    def headline(self) -> str:
        return headline([c.verdict for c in self.claims])

    def uses(self, *passes: Features | dict[str, Features]) -> None:
        """Record the weights and the image notes (conversions, skipped files) of the passes this page's numbers
        rest on: each argument is one :class:`~analysis.features.Features` or a ``{spec: Features}`` dict."""
        for item in passes:
            for feats in item.values() if isinstance(item, dict) else [item]:
                if feats.provenance not in self.provenances:
                    self.provenances.append(feats.provenance)
                self.notes += [note for note in feats.notes if note not in self.notes]

    def claim(self, model: str, weights: str, *judgements: Judgement) -> None:
        """Add one claim per judgement about ``model`` (a timm spec or a short name) run with ``weights``."""
        from .plots import short_name

        self.claims += [Claim.of(short_name(model), weights, judgement) for judgement in judgements]

    def control(self, model: str, bimodal: bool, outlier_share: float) -> None:
        """Add a random-init twin as a negative control: it must show no separated high-norm mode."""
        from .plots import short_name

        self.controls.append(control(short_name(model), bool(bimodal), float(outlier_share)))

    def controls_from(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Add every random-init row of a :func:`~analysis.findings.norm_summary` as a control; returns the
        pretrained rows, the ones the page judges."""
        for row in summary[summary.random_weights].itertuples():
            self.control(row.model, row.bimodal, row.outlier_share)
        return summary[~summary.random_weights]

    def save(self) -> Path:
        """Write ``<page>.parquet`` (the main table), ``<page>_<name>.parquet``, claims and controls."""
        for name, table in self.tables.items():
            write_parquet(table, self.folder / (f"{self.name}.parquet" if name == "main" else f"{self.name}_{name}.parquet"))
        if self.claims or self.controls:  # only finding pages judge; the claims page reads these files
            write_parquet(claims_frame(self.claims), self.folder / f"{self.name}_claims.parquet")
            controls = pd.DataFrame([{"page": self.name, **c.__dict__} for c in self.controls],
                                    columns=["page", "model", "expectation", "measured", "passed"])
            write_parquet(controls, self.folder / f"{self.name}_controls.parquet")
        return self.folder

    def publish(self, **numbers: Any) -> None:
        """Save the tables and glue ``verdict``, ``headline``, ``weights`` and every number given."""
        from IPython.display import Markdown
        from myst_nb import glue

        self.save()
        glue("verdict", Markdown(verdict_markdown(self.claims, self.controls)), display=False)
        glue("controls", Markdown(controls_markdown(self.controls)), display=False)
        glue("headline", Markdown(f"**{self.headline}**"), display=False)
        glue("weights", Markdown(weights_markdown(self.provenances, self.notes)), display=False)
        glue("confidence", CONFIDENCE * 100, display=False)  # the intervals' level, for the Method paragraphs
        for key, value in numbers.items():
            # strings glue as Markdown ({glue:md}`key`); numbers as values ({glue:text}`key:.2f`)
            glue(key, Markdown(value) if isinstance(value, str) else value, display=False)
