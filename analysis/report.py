"""What a page publishes: its result table, claims and controls as parquet; its conclusions as cell outputs.

A notebook makes its measurement in visible cells and hands the results to a :class:`Page`, which
writes the tables (atomically: temporary file, then rename), glues every number for the page's prose
(the Method paragraphs of the built book), and shows the page's conclusions — the weights block, the
"what this run shows" sentence, the verdict — as *cell outputs*: each carries MyST (``text/markdown``, which
the built book renders, admonitions included), HTML (``text/html``, which Jupyter, JupyterLab, Colab and VS Code
show) and plain text, so a page executed by papermill alone and opened anywhere ends in its verdict too.
Nothing here measures anything.
"""

from __future__ import annotations

import html
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .claims import PAPER_MEDIAN_LINE, Claim, Control, Judgement, Verdict, claims_frame, control, headline
from .features import Features
from .models import Provenance
from .metrics import AdaptiveThreshold
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


def measured_and_why(measured: str, reason: str) -> str:
    """A claim's figure and reason, the figure said once: ``This run: {measured}. Why: {reason}.`` — but only
    ``Why: {reason}.`` when the reason *is* the figure (``needs two checkpoints``), and only ``This run: {reason}.``
    when the reason opens with the figure and goes on to say why (``onset 50% [50%, 58%] of 12 blocks (expanded
    BCa …)``): the two labels never say the same words twice (issue 25)."""
    measured, reason = measured.strip(), reason.strip()
    if reason == measured or not measured:
        return f"Why: {reason}."
    if measured and reason.startswith(measured):
        return f"This run: {reason}."
    return f"This run: {measured}. Why: {reason}."


def verdict_markdown(claims: list[Claim], controls: list[Control] = ()) -> str:
    """A MyST admonition: the page's headline, each claim with its kind, figure, interval and rule, the controls."""
    text = headline([c.verdict for c in claims])
    lines = [f"```{{admonition}} Verdict of this run: {text}", f":class: {headline_class(text)}", ""]
    for claim in claims:
        lines.append(
            f"- **{claim.verdict}** — *{claim.kind}*, {claim.model}: {claim.claim}  \n"
            f"  Paper: {claim.paper}. {measured_and_why(claim.measured, claim.reason)}  \n"
            f"  Rule: {claim.rule}."
        )
    if not claims:
        lines.append("- no claim could be evaluated with these parameters.")
    if controls:
        lines += ["", "Negative controls (random-init twins, not claims):", ""]
        lines += [f"- {_control_mark(c)} {c.line()}" for c in controls]
    lines.append("```")
    return "\n".join(lines)


def controls_markdown(controls: list[Control]) -> str:
    """The negative controls alone (a page without claims), as a MyST admonition."""
    failed = [c for c in controls if c.passed is False]
    unsure = [c for c in controls if c.passed is None]
    title = (f"{len(failed)} FAILED" if failed else f"the detector cannot tell for {len(unsure)}" if unsure
             else "all as expected")
    lines = [f"```{{admonition}} Negative controls: {title}",
             f":class: {'error' if failed else 'warning' if unsure else 'tip'}", ""]
    lines += [f"- {_control_mark(c)} {c.line()}" for c in controls] or ["- none in this run"]
    return "\n".join(lines + ["```"])


def _control_doubt(row) -> tuple[bool, str]:
    """Whether a summary row (:func:`~analysis.findings.norm_summary`) cannot show its model clean, and why: the
    detector is undecided, or its ``has_outliers`` is unknown (no mode, yet tokens above the paper's line matter)."""
    if getattr(row, "undecided", False) == True:  # noqa: E712 (NaN is not True)
        return True, str(getattr(row, "detector_reason", ""))
    has = getattr(row, "has_outliers", False)
    if has is None or (isinstance(has, float) and math.isnan(has)):
        return True, (f"no separated mode, yet tokens above {PAPER_MEDIAN_LINE:g}x their image's median matter, or too "
                      "few images to bound them")
    return False, ""


def _control_mark(control: Control) -> str:
    return {True: "✓", False: "**✗ FAILED**", None: "**?**"}[control.passed]


def grouped_notes(notes: Iterable[str]) -> list[str]:
    """Image notes (``"<image>: <what was done>"``) grouped by what was done, each once with its images:
    ``["builtin:camera: L image converted to RGB", "builtin:grass: L image converted to RGB"]`` →
    ``["L image converted to RGB (2): camera, grass"]``. A note without an image name is kept as it is."""
    by_what: dict[str, list[str]] = {}
    for note in sorted(set(notes)):
        image, separator, what = note.partition(": ")
        if separator:
            by_what.setdefault(what, []).append(image.removeprefix("builtin:"))
        else:
            by_what.setdefault(note, [])
    return [f"{what} ({len(images)}): {', '.join(images)}" if images else what for what, images in by_what.items()]


def weights_markdown(provenances: Iterable[Provenance], notes: Iterable[str] = ()) -> str:
    """The weights used (random ones flagged as controls) and any image conversion notes."""
    provenances = list(provenances)
    items = "\n".join(f"- {p.label()}" for p in provenances)
    notes = grouped_notes(notes)
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


def styled(table: pd.DataFrame, formats: dict[str, str | Callable[[float], str]] | None = None):
    """A table for the page: index hidden, numbers formatted (``{"share": "{:.2%}"}``), nan as "–",
    column names with spaces instead of underscores (so headers wrap between words)."""
    readable = table.rename(columns=lambda name: str(name).replace("_", " "))
    formats = {str(name).replace("_", " "): fmt for name, fmt in (formats or {}).items()}
    return readable.style.hide(axis="index").format(formats, na_rep="–")


#: How a column is shown, read from the words in its name (first match wins): shares as percentages,
#: ratios with a times sign, cutoffs and largest norms as whole numbers (an infinite cutoff as :data:`NO_CUTOFF`),
#: other norms and means with one decimal.
COLUMN_FORMATS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("share", "corloc", "fraction", "accuracy", "boxes", "onset"), "{:.2%}"),
    (("enrichment", "matched", "ratio"), "{:.1f}×"),
    (("cutoff", "max_norm", "params_m"), "{:.0f}"),
    (("norm", "mean"), "{:.1f}"),
)


#: How a table shows an infinite cutoff: no separated high-norm mode, so no token is above it (the stored table
#: keeps ``inf``; only the page's display says it in a word).
NO_CUTOFF = "none"


def cutoff_cell(fmt: str) -> Callable[[float], str]:
    """A cell format for a cutoff column: ``fmt`` for a number, :data:`NO_CUTOFF` for ``inf`` (nan stays "–")."""
    def shown(value) -> str:
        return NO_CUTOFF if isinstance(value, (int, float)) and math.isinf(value) and value > 0 else fmt.format(value)

    return shown


def column_format(name: str, dtype) -> str | Callable[[float], str] | None:
    """The format of one column of :func:`table` (None: as pandas shows it); a cutoff column's shows an infinite
    cutoff as :data:`NO_CUTOFF`, never ``inf``."""
    if not pd.api.types.is_float_dtype(dtype):
        return None
    words = str(name).lower()
    for keys, fmt in COLUMN_FORMATS:
        if any(key in words for key in keys):
            return cutoff_cell(fmt) if "cutoff" in keys and "cutoff" in words else fmt
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


class MissingNumberError(KeyError):
    """A sentence template names a number that :meth:`Page.publish` was not given."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def template_fields(template: str) -> list[str]:
    """The names a ``str.format`` template reads (``{n_images}``, ``{share:.1%}``, ``{row.model}`` -> ``row``)."""
    names = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        name = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ValueError(f"the sentence {template[:60]!r}… has a positional field {{{field_name}}}: "
                             "name the number it shows, e.g. {n_images}")
        names.append(name)
    return names


def fill(template: str, numbers: Mapping[str, Any], page: str = "this page") -> str:
    """``template`` with its format fields filled from ``numbers`` (``{primary_median:.1f}``, ``{share:.0%}``;
    strings are Markdown and go in as they are). A field that names no number raises
    :class:`MissingNumberError` naming it and the numbers there are."""
    missing = sorted(set(template_fields(template)) - set(numbers))
    if missing:
        raise MissingNumberError(
            f"{page}: the sentence names {', '.join(map(repr, missing))}, which page.publish() was not given "
            f"(it was given: {', '.join(sorted(numbers)) or 'nothing'})")
    return template.format_map(numbers)


#: Colours of the admonitions where no MyST stylesheet is (Jupyter, Colab): (border, background).
ADMONITION_COLOURS = {"tip": ("#2e7d32", "#edf7ed"), "error": ("#c62828", "#fdecea"), "danger": ("#c62828", "#fdecea"),
                      "warning": ("#ef6c00", "#fff4e5"), "note": ("#1565c0", "#e8f1fb")}
#: A MyST admonition as :func:`verdict_markdown`, :func:`controls_markdown` and :func:`weights_markdown` write it.
ADMONITION = re.compile(r"^```\{admonition\}[ \t]*(?P<title>[^\n]*)\n(?::class:[ \t]*(?P<cls>[\w-]+)[ \t]*\n)?"
                        r"(?P<body>.*?)\n```[ \t]*$", re.S | re.M)


def _commonmark(text: str, inline: bool = False) -> str:
    from markdown_it import MarkdownIt  # a dependency of myst-nb, installed wherever the study is

    renderer = MarkdownIt("commonmark", {"html": False})  # raw HTML in a sentence is shown, not run
    return renderer.renderInline(text) if inline else renderer.render(text)


def markdown_html(text: str) -> str:
    """The page's MyST as HTML for hosts that do not read MyST: each admonition a coloured box with its title,
    the rest CommonMark."""
    parts, end = [], 0
    for match in ADMONITION.finditer(text):
        parts.append(_commonmark(text[end:match.start()]))
        cls = match["cls"] or "note"
        border, background = ADMONITION_COLOURS.get(cls, ADMONITION_COLOURS["note"])
        parts.append(
            f'<div class="admonition {html.escape(cls)}" style="border-left: 4px solid {border}; background: '
            f'{background}; padding: 0.3em 0.9em; margin: 0.6em 0;">'
            f'<p class="admonition-title" style="font-weight: bold; margin: 0.4em 0;">'
            f"{_commonmark(match['title'].strip(), inline=True)}</p>{_commonmark(match['body'].strip())}</div>")
        end = match.end()
    parts.append(_commonmark(text[end:]))
    return "".join(part for part in parts if part.strip())


def markdown_text(text: str) -> str:
    """The page's MyST as plain text (a terminal, ``nbconvert --to script``): admonition fences and classes left out."""
    def unfence(match: re.Match) -> str:
        return f"{match['title'].strip()}\n\n{match['body'].strip()}"

    return ADMONITION.sub(unfence, text).strip()


class Shown:
    """One block of a page's conclusions as a cell output: MyST for the built book, HTML for Jupyter and Colab,
    plain text elsewhere (the book is configured to prefer ``text/markdown``, Jupyter prefers ``text/html``)."""

    def __init__(self, myst: str):
        self.myst = myst

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/markdown": self.myst, "text/html": markdown_html(self.myst), "text/plain": markdown_text(self.myst)}

    def __repr__(self) -> str:
        return markdown_text(self.myst)


def show(myst: str) -> None:
    """Display ``myst`` (MyST Markdown, admonitions allowed) as one cell output, see :class:`Shown`."""
    from IPython.display import display

    display(Shown(myst))


@dataclass
class Page:
    """Collects one page's results and publishes them (tables under ``results_dir``, glue for the text), and shows
    its conclusions as cell outputs (:meth:`show_weights`, :meth:`show_finding`, :meth:`show_verdict`)."""

    name: str
    results_dir: str | Path | None = None
    claims: list[Claim] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    provenances: list[Provenance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: What :meth:`publish` was given (and ``confidence``): the fields of :meth:`show_finding`'s sentence.
    numbers: dict[str, Any] | None = None

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

    def control(self, model: str, bimodal: bool, outlier_share: float, undecided: bool = False,
                reason: str = "") -> None:
        """Add a random-init twin as a negative control: it must show no separated high-norm mode (``undecided``:
        the detector cannot tell, with its ``reason``)."""
        from .plots import short_name

        self.controls.append(control(short_name(model), bool(bimodal), float(outlier_share), bool(undecided), reason))

    def control_of_fit(self, model: str, fit: AdaptiveThreshold, outlier_share: float) -> None:
        """:meth:`control` from the detector's answer on the model's norms (its mode, or that it cannot tell)."""
        self.control(model, fit.bimodal, outlier_share, fit.undecided, fit.reason)

    def controls_from(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Add every random-init row of a :func:`~analysis.findings.norm_summary` as a control; returns the
        pretrained rows, the ones the page judges."""
        for row in summary[summary.random_weights].itertuples():
            self.control(row.model, row.bimodal, row.outlier_share, *_control_doubt(row))
        return summary[~summary.random_weights]

    def save(self) -> Path:
        """Write ``<page>.parquet`` (the main table), ``<page>_<name>.parquet``, claims and controls."""
        for name, table in self.tables.items():
            write_parquet(table, self.folder / (f"{self.name}.parquet" if name == "main" else f"{self.name}_{name}.parquet"))
        if self.claims or self.controls:  # only finding pages judge; the claims page reads these files
            write_parquet(claims_frame(self.claims), self.folder / f"{self.name}_claims.parquet")
            controls = pd.DataFrame([{"page": self.name, **c.__dict__, "result": c.result} for c in self.controls],
                                    columns=["page", "model", "expectation", "measured", "passed", "result"])
            write_parquet(controls, self.folder / f"{self.name}_controls.parquet")
        return self.folder

    def publish(self, **numbers: Any) -> None:
        """Save the tables, glue ``headline``, ``confidence`` and every number given (for the prose of the built
        book), and keep the numbers for :meth:`show_finding`."""
        from IPython.display import Markdown
        from myst_nb import glue

        self.save()
        self.numbers = {"confidence": CONFIDENCE * 100, **numbers}
        glue("headline", Markdown(f"**{self.headline}**"), display=False)
        glue("confidence", CONFIDENCE * 100, display=False)  # the intervals' level, for the Method paragraphs
        for key, value in numbers.items():
            # strings glue as Markdown ({glue:md}`key`); numbers as values ({glue:text}`key:.2f`)
            glue(key, Markdown(value) if isinstance(value, str) else value, display=False)

    def finding(self, template: str) -> str:
        """The "what this run shows" sentence: ``template`` filled from the numbers given to :meth:`publish`
        (``{n_images}``, ``{primary_median:.1f}``, ``{confidence:.0f}``; strings are Markdown)."""
        if self.numbers is None:
            raise RuntimeError(f"page {self.name!r}: call page.publish(...) before page.show_finding(...), "
                               "which reads the numbers published")
        return fill(template.strip(), self.numbers, f"page {self.name!r}")

    def show_finding(self, template: str) -> None:
        """Show the "what this run shows" sentence (:meth:`finding`) as a cell output."""
        show(self.finding(template))

    def show_verdict(self, markdown: str | None = None) -> None:
        """Show the verdict block (:func:`verdict_markdown` of the page's claims and controls, or ``markdown``, a
        page's own verdict admonition) as a cell output."""
        show(verdict_markdown(self.claims, self.controls) if markdown is None else markdown)

    def show_controls(self) -> None:
        """Show the negative controls alone (a page without claims) as a cell output."""
        show(controls_markdown(self.controls))

    def show_weights(self) -> None:
        """Show the weights this page's numbers rest on, and any image notes, as a cell output."""
        show(weights_markdown(self.provenances, self.notes))
