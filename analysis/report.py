"""What a page publishes: its result table and claims as parquet, its numbers glued into the text.

Parquet files are written to a temporary name and renamed, so an interrupted run
never leaves a half-written table behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from .claims import Claim, Verdict, claims_frame
from .models import Provenance

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


def overall_verdict(claims: list[Claim]) -> Verdict:
    """A page's headline: not reproduced if any claim fails, reproduced if any passes, else not testable."""
    verdicts = {c.verdict for c in claims}
    if Verdict.NOT_REPRODUCED in verdicts:
        return Verdict.NOT_REPRODUCED
    if Verdict.REPRODUCED in verdicts:
        return Verdict.REPRODUCED
    return Verdict.NOT_TESTABLE


ADMONITION_CLASS = {Verdict.REPRODUCED: "tip", Verdict.NOT_REPRODUCED: "error", Verdict.NOT_TESTABLE: "warning"}


def verdict_markdown(claims: list[Claim]) -> str:
    """A MyST admonition listing each claim's verdict with this run's figure."""
    headline = overall_verdict(claims)
    lines = [f"```{{admonition}} Verdict of this run: {headline}", f":class: {ADMONITION_CLASS[headline]}", ""]
    for claim in claims:
        lines.append(
            f"- **{claim.verdict}**: {claim.claim} Paper: {claim.paper}. This run: {claim.measured}"
            f" ({claim.reason}). Weights: {claim.weights}."
        )
    if not claims:
        lines.append("- no claim could be evaluated with these parameters.")
    lines.append("```")
    return "\n".join(lines)


def weights_markdown(provenances: list[Provenance]) -> str:
    """The weights used, and a prominent warning when any of them is a random initialisation."""
    items = "\n".join(f"- {p.label()}" for p in provenances)
    if any(p.is_random for p in provenances):
        return (
            "```{danger} Random weights in this run\n"
            "Some models below are **randomly initialised**, not pretrained. Every claim that rests on them is "
            "**not testable** here: an untrained network cannot show what training does.\n\n"
            f"{items}\n```"
        )
    return f"```{{note}} Pretrained weights used in this run\n{items}\n```"


@dataclass
class PageResult:
    """Everything a finding page shows: one table, its claims, one figure, glued numbers."""

    page: str
    table: pd.DataFrame
    claims: list[Claim]
    figure: plt.Figure
    provenances: list[Provenance]
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return overall_verdict(self.claims)

    def figure_png(self, dpi: int = 110):
        """The figure as a PNG display object: renders the same under any matplotlib backend."""
        from io import BytesIO

        from IPython.display import Image

        buffer = BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        return Image(data=buffer.getvalue(), format="png")

    def save(self, results_dir: str | Path | None = None) -> Path:
        """Write ``<page>.parquet`` and ``<page>_claims.parquet``; return the folder."""
        folder = Path(results_dir) if results_dir else default_results_dir()
        write_parquet(self.table, folder / f"{self.page}.parquet")
        write_parquet(claims_frame(self.claims), folder / f"{self.page}_claims.parquet")
        return folder

    def publish(self, results_dir: str | Path | None = None) -> None:
        """Save the tables and glue ``verdict``, ``weights`` and every number for the page's text."""
        from IPython.display import Markdown
        from myst_nb import glue

        self.save(results_dir)
        glue("verdict", Markdown(verdict_markdown(self.claims)), display=False)
        glue("headline", Markdown(f"**{self.verdict}**"), display=False)
        glue("weights", Markdown(weights_markdown(self.provenances)), display=False)
        for key, value in self.numbers.items():
            # strings glue as markdown ({glue:md}`key`); numbers as values ({glue:text}`key:.2f`)
            glue(key, Markdown(value) if isinstance(value, str) else value, display=False)
        plt.close(self.figure)
