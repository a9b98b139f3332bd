"""Why a verdict is *inconclusive* or *not testable*, in plain words, and what would settle it.

Every rule in :mod:`analysis.claims` says why it decided as it did (``Judgement.reason``). This module sorts the
reasons of the undecided verdicts into a few causes a reader can act on — the weights cannot speak to the claim,
the outliers are pinned to fixed positions, too few images, LOST at its floor, … — and names for each what would
settle it with this study: another parameter set, more images, other weights. The claims page shows the result
("Why these verdicts"), computed from the claims of the run, so it is never typed by hand.

``cause_of(reason)`` is the single place that reads a reason; each cause is tested against the reason a real rule
produces (tests/test_why.py), so a rule whose wording changes cannot fall through to "other" unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from .claims import NO_STATEMENT, RANDOM, UNDECIDED

UNDECIDED_VERDICTS = ("inconclusive", "not testable")


@dataclass(frozen=True)
class Cause:
    """One reason why claims stay undecided: its name, plain words, and what would settle it per parameter set."""

    key: str
    words: str
    settle: dict[str, str]  # parameter set ("ci", "lite", "paper", "*" for any) -> what would settle it

    def remedy(self, parameter_set: str) -> str:
        return self.settle.get(parameter_set) or self.settle["*"]


SETS_WITH_PAPER_MODELS = ("the `lite` set (`make book PARAMS=lite`: real DINO, DINOv2 ViT-S/B with and without "
                          "registers, DeiT-III, OpenCLIP) or the `paper` set (DINOv2 ViT-g)")

CAUSES: tuple[Cause, ...] = (
    Cause("random", "the model has random weights: an untrained network cannot show what training does",
          {"*": "pretrained weights: " + SETS_WITH_PAPER_MODELS + "; random-init models are negative controls"}),
    Cause("no_statement", "the paper says nothing about this model (or pair), so its claim about named models "
                          "cannot be judged on it",
          {"ci": "the paper's own models: " + SETS_WITH_PAPER_MODELS,
           "lite": "the paper's own models: the `paper` set (DINOv2 ViT-g with and without registers)",
           "*": "a run on the models the paper names (its Fig. 3, 4 and 7)"}),
    Cause("pinned", "the outliers sit on the same few grid positions in every image, so position alone could "
                    "produce the number (the offline ViT-Ti's outliers sit on 4 fixed corners)",
          {"ci": "a model whose outliers move with the content: the `lite` set (DINOv2 ViT-B, DeiT-III, OpenCLIP) "
                 "or the `paper` set",
           "*": "a model whose outliers move with the content, or more varied images (`-p image_source DIR`)"}),
    Cause("too_few", "too few images (or tokens) to compute an interval that could decide",
          {"ci": "more images: a folder of photos (`-p image_source DIR`, or Imagenette via `make images`) with a "
                 "larger `n_images` (or `n_discovery`, `per_class`)",
           "lite": "more images than the shipped photos: Imagenette (`make images`, `-p image_source imagenette "
                   "-p n_images 100`), VOC 2007 for object discovery (`make voc`)",
           "*": "more images: raise `n_images` (or `n_discovery`, `per_class`) on the page"}),
    Cause("straddles", "the interval straddles the rule's margin: the effect may be there, but this sample "
                       "cannot tell",
          {"lite": "more images than the shipped photos (Imagenette: `make images`, `-p image_source imagenette`; "
                   "the reason names about how many would likely settle it)",
           "*": "more images (the reason names about how many would likely settle it)"}),
    Cause("definitions", "the study's adaptive cutoff and the paper's own cutoff disagree about this model",
          {"*": "more images, and a look at the norm histogram: which cutoff sits between the modes"}),
    Cause("undecided_outliers", "a high-norm mode was found, but too weakly to say the model has outliers",
          {"*": "more images, so that the share interval clears 0 (or does not)"}),
    Cause("no_outliers", "the model has no high-norm tokens here, so a claim about what outliers do has nothing "
                         "to act on",
          {"ci": "a model with outliers that move with the content: the `lite` set (DINOv2 ViT-B, DeiT-III, "
                 "OpenCLIP) or the `paper` set",
           "lite": "larger models or inputs: the `paper` set (DINOv2 ViT-g), or `-p resolution 448`",
           "*": "another model with outliers, or higher resolution (`-p resolution 448`)"}),
    Cause("floor", "LOST is at its floor: every pair of keys correlates positively, so the box is the whole "
                   "image with or without any intervention",
          {"*": "a model with outliers whose keys still separate objects from the background (the positive control "
                "on the page shows that LOST itself boxes a separable object), on VOC 2007 (`make voc`)"}),
    Cause("not_public", "the checkpoints the claim needs are not public (the paper's size series, or checkpoints "
                        "from the middle of one training run)",
          {"*": "no public weights can settle it; a run on such checkpoints would (`-p checkpoints ...`)"}),
    Cause("bracket", "the checkpoints bracket the onset too loosely to say 'about a third of training'",
          {"*": "more checkpoints of one training run around a third of it (not public: `-p checkpoints ...`)"}),
    Cause("not_applicable", "the model lacks what the claim is about (for example a CLS token)",
          {"*": "a model that has it"}),
    Cause("attention_before", "CLS attention was not (or not clearly) concentrated on the outliers before the "
                              "intervention, so there is no clean-up to judge",
          {"*": "a model whose CLS attention is drawn to its outliers (the attention maps page shows which), and "
                "enough held-out images (`n_images`) for the attention interval before the intervention to decide"}),
    Cause("band", "the interval leaves the rule's band on one side only",
          {"*": "more images, to narrow the interval"}),
    Cause("other", "another reason (see the claim's own reason on its page)", {"*": "see the page"}),
)
BY_KEY = {cause.key: cause for cause in CAUSES}

#: Reason fragments, in the order they are tried (first match wins): each names a cause of :data:`CAUSES`.
PATTERNS: tuple[tuple[str, str], ...] = (
    (re.escape(RANDOM), "random"),
    (re.escape(NO_STATEMENT), "no_statement"),
    (r"^confounded by position", "pinned"),
    (re.escape(UNDECIDED), "undecided_outliers"),
    (r"LOST is at its floor", "floor"),
    (r"distilled from ViT-g|paper's series|checkpoints of one training run|paper's are not public", "not_public"),
    (r"^not applicable", "not_applicable"),
    (r"cannot tell whether CLS attention was concentrated|CLS attention was not concentrated", "attention_before"),
    (r"two definitions disagree|definitions disagree", "definitions"),
    (r"bracket is wider", "bracket"),
    (r"every resample gave the same value", "too_few"),
    (r"position-matched reading does not clear", "straddles"),
    (r"no block has a separated", "no_outliers"),
    (r"too few images|^only \d+ .*\(need \d+\)|no interval could be computed|no interval: |not measurable", "too_few"),
    (r"straddles", "straddles"),
    (r"no outliers|no high-norm|no separated high-norm mode|moved no outlier|no outlier cutoff|"
     r"nothing to (attend to|clean up|compare)|no grid position holds", "no_outliers"),
    (r"leaves the band", "band"),
)


def cause_of(reason: str) -> Cause:
    """The cause of one undecided verdict, read from its rule's ``reason``."""
    for pattern, key in PATTERNS:
        if re.search(pattern, str(reason)):
            return BY_KEY[key]
    return BY_KEY["other"]


def undecided_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The inconclusive and not-testable rows of a claims frame (``page, model, claim, verdict, reason``), each
    with its ``cause`` key, in :data:`CAUSES` order then page order."""
    rows = claims[claims.verdict.isin(UNDECIDED_VERDICTS)].copy()
    rows["cause"] = [cause_of(reason).key for reason in rows.reason]
    order = {cause.key: i for i, cause in enumerate(CAUSES)}
    return rows.sort_values("cause", key=lambda keys: keys.map(order), kind="stable")


def _page_link(page: str) -> str:
    return f"{{doc}}`{page}`"


def markdown(claims: pd.DataFrame, parameter_set: str) -> str:
    """"Why these verdicts": one bullet per cause, with the claims it holds (page, model, claim) and what would
    settle them under ``parameter_set``; a sentence of its own when every claim was decided."""
    undecided = undecided_table(claims)
    if undecided.empty:
        return f"Every one of the {len(claims)} claims of this run was decided (reproduced or not reproduced)."
    lines = [f"{len(undecided)} of the {len(claims)} claims of this run are undecided "
             f"({(undecided.verdict == 'inconclusive').sum()} inconclusive, "
             f"{(undecided.verdict == 'not testable').sum()} not testable), for these reasons:", ""]
    for key, group in undecided.groupby("cause", sort=False):
        cause = BY_KEY[key]
        which = "; ".join(f"{_page_link(row.page)}: {row.model}, *{row.claim}* ({row.verdict})"
                          for row in group.itertuples())
        count = f"{len(group)} claim{'s' if len(group) > 1 else ''}"
        lines.append(f"- **{cause.words[0].upper() + cause.words[1:]}** — {count}: {which}.  \n"
                     f"  *What would settle it:* {cause.remedy(parameter_set)}.")
    return "\n".join(lines)
