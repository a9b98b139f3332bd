"""The lecturer's layer: learning goals, exercises with glued answers, a takeaway and a "Next" link on every finding
page, a glossary for every term the pages link, and the sentences of :mod:`analysis.lecture` in each state a run can
leave them in (a value, not measured, too few images, no outliers, a random-init control)."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import claims, lecture, run
from analysis.stats import NOT_MEASURED, Interval, too_few
from test_pages import MAX_VISIBLE_CODE_LINES, visible_code_lines

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
#: The finding pages, in the paper's order.
FINDINGS = list(lecture.READING_ORDER[:10])
#: Every page whose Markdown the lecturer's layer writes.
TAUGHT = FINDINGS + ["census", "your_image"]
#: Keys ``page.publish`` glues whatever it is given.
ALWAYS_GLUED = {"headline", "confidence"}

TERM = re.compile(r"\{term\}`([^`]+)`")
GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
DOC = re.compile(r"\{doc\}`([^`]+)`")
EXERCISE = re.compile(r"^```\{exercise\}[^\n]*\n:label: (\S+)", re.M)
SOLUTION = re.compile(r"^```\{solution\} (\S+)", re.M)


def notebook(page: str):
    return nbformat.read(BOOK / f"{page}.ipynb", as_version=4)


def markdown(page: str) -> list[str]:
    return [c.source for c in notebook(page).cells if c.cell_type == "markdown"]


def published(page: str) -> set[str]:
    """The keywords of the page's ``page.publish(...)`` call (read with ``ast``), and what publish always glues."""
    source = next(c.source for c in notebook(page).cells if c.cell_type == "code" and "page.publish(" in c.source)
    call = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute) and node.func.attr == "publish")
    assert all(keyword.arg for keyword in call.keywords), f"{page}: publish(**…) hides its keys"
    return {keyword.arg for keyword in call.keywords} | ALWAYS_GLUED


def glossary_terms() -> set[str]:
    """Every term the glossary defines (a term line: unindented, inside the ``{glossary}`` fence), lowercased as
    Sphinx resolves ``{term}`` references."""
    text = (BOOK / "glossary.md").read_text()
    body = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    return {line.strip().lower() for line in body.splitlines()
            if line.strip() and not line.startswith((" ", "\t", ":"))}


def term_target(reference: str) -> str:
    """``high-norm tokens <high-norm token>`` → ``high-norm token``."""
    match = re.search(r"<([^>]+)>\s*$", reference)
    return (match[1] if match else reference).strip().lower()


# --- the pages ------------------------------------------------------------------------------------------------------


def test_the_reading_order_covers_every_finding_page_of_the_book():
    non_findings = {"census", "claims", "summary", "your_image", "validation", "quality"}
    assert FINDINGS == [p for p in run.PAGES if p not in non_findings]
    assert lecture.READING_ORDER[-2:] == ("census", "claims")
    assert lecture.next_page("attention_maps") == "norm_histogram" and lecture.next_page("claims") is None


@pytest.mark.parametrize("page", FINDINGS + ["census"])
def test_a_page_opens_with_learning_goals(page):
    first = markdown(page)[0]
    match = re.search(r"```\{admonition\} Learning goals\n(?::class: \w+\n)?(?P<body>.*?)\n```", first, re.S)
    assert match, f"{page}: no learning-goals admonition in its first cell"
    assert "```{admonition} Learning goals" in first.splitlines()[:4], page  # right under the title
    bullets = [line for line in match["body"].splitlines() if line.startswith("- ")]
    assert 2 <= len(bullets) <= 4, (page, bullets)


@pytest.mark.parametrize("page", FINDINGS)
def test_a_finding_page_has_exercises_each_with_a_glued_solution(page):
    text = "\n".join(markdown(page))
    labels = EXERCISE.findall(text)
    assert len(labels) >= 2, (page, labels)
    assert sorted(SOLUTION.findall(text)) == sorted(labels), page
    for label in labels:  # every solution answers from this run's numbers, never typed ones
        solution = re.search(rf"```\{{solution\}} {re.escape(label)}\n(.*?)\n```", text, re.S)[1]
        assert "{glue" in solution, (page, label, solution)


def test_exercise_labels_are_unique_across_the_book():
    labels = [label for page in run.PAGES for label in EXERCISE.findall("\n".join(markdown(page)))]
    assert len(labels) == len(set(labels)), labels


@pytest.mark.parametrize("page", FINDINGS + ["census"])
def test_a_page_ends_in_a_takeaway_without_numbers_and_a_next_link_in_the_papers_order(page):
    last = notebook(page).cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Takeaway"), page
    takeaway = re.search(r"```\{admonition\} In one line\n(?::class: \w+\n)?(?P<body>.*?)\n```", last.source, re.S)
    assert takeaway and len(takeaway["body"]) > 40, page
    assert not re.search(r"\d", takeaway["body"]), f"{page}: a takeaway types no number"
    links = re.findall(r"\*\*Next:\*\* \{doc\}`([^`]+)` — \S", last.source)
    assert links == [lecture.next_page(page)], (page, links)


def test_every_doc_link_of_the_pages_names_a_page_of_the_table_of_contents():
    pages = {Path(f).name for f in run.toc_files()}
    for page in TAUGHT:
        for target in DOC.findall("\n".join(markdown(page))):
            assert target in pages, (page, target)
    assert "book/glossary" in run.toc_files()


def test_every_linked_term_is_in_the_glossary():
    defined = glossary_terms()
    assert {"bca interval", "ashman's d", "bic", "roc auc", "residual stream", "prefix tokens", "autocast", "corloc",
            "lost", "register", "high-norm token", "mixture model", "bootstrap over images"} <= defined
    sources = {page: "\n".join(markdown(page)) for page in run.PAGES}
    sources |= {path.name: path.read_text() for path in BOOK.glob("*.md")}
    used = {(where, term_target(reference)) for where, text in sources.items() for reference in TERM.findall(text)}
    assert len(used) > 40
    missing = sorted((where, term) for where, term in used if term not in defined)
    assert not missing, missing


@pytest.mark.parametrize("page", TAUGHT)
def test_every_glued_key_in_a_pages_markdown_is_published_by_it(page):
    used = set(GLUE.findall("\n".join(markdown(page))))
    assert used <= published(page), (page, sorted(used - published(page)))
    answers = {key for key in published(page) if key.startswith("answer_")}
    assert answers <= used, f"{page}: published answers no solution shows: {sorted(answers - used)}"


@pytest.mark.parametrize("page", FINDINGS)
def test_a_page_still_shows_its_measurement_in_a_few_lines(page):
    assert visible_code_lines(notebook(page)) <= MAX_VISIBLE_CODE_LINES, page


def test_the_exercises_name_the_values_their_answers_compute_with():
    histogram = "\n".join(markdown("norm_histogram"))
    assert all(f"-p threshold {t:.0f}`" in histogram for t in lecture.HISTOGRAM_THRESHOLDS)
    assert f"-p threshold {lecture.STRICT_THRESHOLD:.0f}`" in "\n".join(markdown("redundancy"))
    training = "\n".join(markdown("training_time"))
    fractions = [f for f, _, _ in lecture.TRAINING_STEPS]
    assert f"training_fractions '[{', '.join(f'{f:g}' for f in fractions)}]'" in training
    assert f"{lecture.TRAINING_ADDED:.0%}".replace("%", " %") in training
    assert all(name in "\n".join(markdown("model_size")) for name in lecture.DISTILLED_SIZES)


def test_the_glossary_is_a_myst_glossary_with_an_entry_under_each_term():
    text = (BOOK / "glossary.md").read_text()
    assert text.startswith("# Glossary") and text.count("```{glossary}") == 1
    body = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    lines = [line for line in body.splitlines() if not line.startswith(":")]
    for index, line in enumerate(lines):  # a term line is followed by another term line or its indented definition
        if line.strip() and not line.startswith(" "):
            following = next(other for other in lines[index + 1:] if other.strip())
            assert following.startswith("  ") or not following.startswith(" "), line
    assert len(glossary_terms()) == len([1 for line in lines if line.strip() and not line.startswith(" ")])


def test_the_table_of_contents_lists_the_glossary_once():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files.count("book/glossary") == 1


# --- the answers ----------------------------------------------------------------------------------------------------

TINY = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
RANDOM = f"random:{TINY}"


def interval(estimate: float, low: float, high: float, n: int = 8) -> Interval:
    return Interval(estimate, low, high, n)


FEW = too_few(19.7, 4)  # too few images for an interval


def test_reading_an_interval_against_a_margin_in_each_state():
    assert lecture.reading(interval(21.4, 14.8, 28.8), 2.0, ".1f", unit="×") == \
        "21.4 [14.8, 28.8], which lies wholly at or above 2.0×"
    assert lecture.reading(interval(0.3, 0.2, 0.4), 0.0, ".1f", strict=True) == \
        "0.3 [0.2, 0.4], which lies wholly above 0.0"
    assert lecture.side(interval(0.3, 0.0, 0.4), 0.0, ".1f", strict=True) == "straddles 0.0"  # 0 is not above 0
    assert lecture.side(interval(-0.3, -0.4, 0.0), 0.0, ".1f", strict=True) == "lies wholly at or below 0.0"
    assert lecture.side(interval(1.5, 1.2, 1.9), 2.0, ".1f") == "lies wholly below 2.0"
    assert lecture.side(interval(2.1, 1.5, 2.9), 2.0, ".1f") == "straddles 2.0"
    assert lecture.side(interval(1.0, 0.5, 1.5), 2.0, ".1f", above=False) == "lies wholly at or below 2.0"
    assert lecture.side(interval(3.0, 2.5, 3.5), 2.0, ".1f", above=False) == "lies wholly above 2.0"
    assert lecture.side(FEW, 2.0, ".1f", unit="×") == "has no interval to read against 2.0×"
    assert "too few images" in lecture.reading(FEW, 2.0, ".1f")
    assert lecture.against(interval(21.4, 14.8, 28.8), 2.0, ".1f", unit="×") == \
        "the whole interval lies at or above 2.0×"
    assert lecture.against(interval(2.1, 1.5, 2.9), 2.0, ".1f") == "the interval straddles 2.0"
    assert lecture.against(FEW, 2.0, ".1f") == "there is no interval to read against 2.0"
    assert lecture.against(NOT_MEASURED, 2.0) == "nothing was measured"
    assert lecture.reading(NOT_MEASURED, 2.0) == "not measured" and lecture.side(NOT_MEASURED, 2.0) == "is not measured"


def test_attention_answers():
    concentrated = lecture.attention_answer(TINY, interval(21.4, 14.8, 28.8), 0.0198)
    assert "1.98%" in concentrated and "far more" in concentrated
    assert "21.4× [14.8×, 28.8×] their area share" in concentrated  # the unit on each number, not after the text
    assert "cannot say" in lecture.attention_answer(TINY, interval(2.5, 1.1, 3.9), 0.02)
    assert "does not single them out" in lecture.attention_answer(TINY, interval(1.1, 0.9, 1.3), 0.02)
    assert "cannot say" in lecture.attention_answer(TINY, FEW, 0.02) and "too few images" in \
        lecture.attention_answer(TINY, FEW, 0.02)
    for share in (0.0, float("nan")):  # no outliers, a random-init control
        assert "not measured" in lecture.attention_answer(RANDOM, NOT_MEASURED, share)
    pinned = lecture.attention_position_answer(interval(4.9, 2.9, 7.1), True, True)
    assert "confounded by position" in pinned and "4.9 [2.9, 7.1]" in pinned
    assert "follows the outliers" in lecture.attention_position_answer(interval(4.9, 2.9, 7.1), False, True)
    assert "position explains" in lecture.attention_position_answer(interval(1.0, 0.8, 1.2), False, True)
    assert "cannot separate" in lecture.attention_position_answer(FEW, False, True)
    assert "not measured" in lecture.attention_position_answer(NOT_MEASURED, False, True)
    assert "nothing to compare" in lecture.attention_position_answer(NOT_MEASURED, False, False)


def test_threshold_answer_says_whether_the_histogram_has_a_gap_between_the_thresholds():
    gap = np.r_[np.full(97, 20.0), np.full(3, 500.0)]
    text = lecture.threshold_answer(TINY, gap, 70.0)
    assert "None lies between" in text and "empty gap" in text and "3.00% above 400" in text and "sits at 70" in text
    filled = np.r_[np.full(90, 20.0), np.full(5, 200.0), np.full(5, 500.0)]
    text = lecture.threshold_answer(TINY, filled, 70.0)
    assert "5 of them (5.00%) lie between" in text and "no empty gap" in text
    random = lecture.threshold_answer(RANDOM, np.full(100, 8.0), math.inf)  # random init: tiny norms, no mode
    assert "0.00% lie above 50" in random and "finds no separated high-norm mode" in random
    assert "no output patch token" in lecture.threshold_answer(TINY, np.array([]), math.inf)


def test_positions_answer_in_each_state():
    pinned = {"outlier_tokens": 31, "distinct_positions": 4, "max_position_share": 1.0, "pinned": True}
    assert "They are pinned" in lecture.positions_answer(TINY, pinned, 8) and "100% of the 8 images" in \
        lecture.positions_answer(TINY, pinned, 8)
    moving = {"outlier_tokens": 12, "distinct_positions": 10, "max_position_share": 0.25, "pinned": False}
    assert "They move" in lecture.positions_answer(TINY, moving, 8)
    none = {"outlier_tokens": 0, "distinct_positions": 0, "max_position_share": 0.0, "pinned": False}
    assert "no high-norm tokens" in lecture.positions_answer(RANDOM, none, 8)


def test_onset_answer_in_each_state():
    inside = lecture.onset_answer(TINY, 6, 12, interval(0.5, 0.42, 0.58))
    assert "block 4.5" in inside and "block 6" in inside and "the whole interval lies inside" in inside
    assert "lies outside" in lecture.onset_answer(TINY, 11, 12, interval(0.92, 0.9, 0.95))
    assert "not wholly inside" in lecture.onset_answer(TINY, 6, 12, interval(0.5, 0.2, 0.9))
    assert "not wholly inside" in lecture.onset_answer(TINY, 6, 12, too_few(0.5, 4))
    assert "no onset" in lecture.onset_answer(TINY, None, 12, interval(float("nan"), 0.9, 1.0))
    assert "block 15 " in lecture.onset_answer("vit_giant_patch14_dinov2.lvd142m", 15, 40, interval(0.375, 0.3, 0.45))


def test_growth_answer():
    rng = np.random.default_rng(0)
    norms = np.concatenate([rng.uniform(1, 2, (4, 1, 50)), rng.uniform(10, 20, (4, 1, 50))], axis=1)
    text = lecture.growth_answer(norms, [False, False])
    assert "-fold from block 0 to block 1" in text and "100% of the last block" in text
    assert "no block of the 2 has a separated high-norm mode" in text
    assert "from block 1 on" in lecture.growth_answer(norms, [False, True])
    assert "grows from block 0" in lecture.growth_answer(np.zeros((2, 2, 4)), [False, False])  # no median to divide


def size_row(model, random_weights, has, share=0.02, low=0.01, high=0.03):
    from analysis.models import ModelSpec

    return {"model": model, "timm_name": ModelSpec.parse(model).name, "random_weights": random_weights,
            "has_outliers": has, "outlier_share": share, "outlier_share_low": low, "outlier_share_high": high,
            "images": 8}


def test_size_answer_in_each_state():
    controls = pd.DataFrame([size_row("random:vit_small_patch14_dinov2.lvd142m", True, False, 0, 0, 0),
                             size_row("random:vit_base_patch14_dinov2.lvd142m", True, False, 0, 0, 0)])
    text = lecture.size_answer(controls)
    assert text.count("negative control") == 2 and "controls, never evidence" in text
    distilled = pd.DataFrame([size_row("vit_small_patch14_dinov2.lvd142m", False, False, 0, 0, 0),
                              size_row("vit_base_patch14_dinov2.lvd142m", False, True),
                              size_row("vit_large_patch14_dinov2.lvd142m", False, None)])
    text = lecture.size_answer(distilled)
    assert "no high-norm tokens" in text and ": high-norm tokens (2.00% [1.00%, 3.00%])" in text
    assert "cannot tell" in text and "distilled from ViT-g" in text and "controls" not in text
    assert lecture.size_answer(distilled.iloc[:0]) == "This run measured no model."
    assert "*not testable*" in lecture.distilled_answer() and "distilled" in lecture.distilled_answer()


def test_training_answers():
    two = pd.DataFrame([{"label": "random", "training_fraction": 0.0, "random_weights": True, "has_outliers": False,
                         "outlier_share": 0.0, "outlier_share_low": 0.0, "outlier_share_high": 0.0, "images": 8},
                        {"label": "pretrained", "training_fraction": 1.0, "random_weights": False,
                         "has_outliers": True, "outlier_share": 0.02, "outlier_share_low": 0.017,
                         "outlier_share_high": 0.021, "images": 8}])
    text = lecture.training_answer(two)
    assert "2 checkpoint(s)" in text and "random weights" in text and "*not testable*" in text and "anywhere" in text
    three = pd.concat([two, two.iloc[[1]].assign(label="ckpt", training_fraction=0.3, has_outliers=None)])
    text = lecture.training_answer(three)
    assert "cannot tell" in text and "anywhere" not in text and "ckpt (30% of training)" in text
    assert lecture.training_answer(two.iloc[:0]) == "This run measured no checkpoint."
    rule = lecture.training_rule_answer()
    assert rule.startswith("The rule says *inconclusive*") and "between 10% and 50%" in rule
    assert "without outliers there, *reproduced*" in rule and "with outliers there, *inconclusive*" in rule


def test_auc_answers():
    assert "confounded by position" in lecture.auc_answer(interval(0.67, 0.55, 0.76), NOT_MEASURED, True, True)
    assert "more redundant patches" in lecture.auc_answer(interval(0.7, 0.6, 0.8), interval(0.8, 0.7, 0.9), False, True)
    assert "are not on more redundant" in lecture.auc_answer(interval(0.7, 0.6, 0.8), interval(0.4, 0.3, 0.5), False,
                                                             True)
    assert "cannot tell" in lecture.auc_answer(interval(0.7, 0.6, 0.8), too_few(0.7, 4), False, True)
    assert "cannot decide" in lecture.auc_answer(interval(0.7, 0.6, 0.8), NOT_MEASURED, False, True)
    assert "neither AUC" in lecture.auc_answer(NOT_MEASURED, NOT_MEASURED, False, False)


def test_strict_threshold_answer_recounts_the_auc():
    rng = np.random.default_rng(0)
    norms = rng.uniform(10, 30, (8, 16))
    norms[:, 3] = 500.0
    norms[::2, 5] = 200.0
    cosine = rng.uniform(0.2, 0.6, (8, 16))
    cosine[:, 3] = 0.9
    text = lecture.strict_threshold_answer(cosine, norms, 70.0, interval(0.9, 0.8, 1.0))
    assert "Above 300, 8 token(s) count as outliers" in text and "marks 12 token(s)" in text
    assert "intervals overlap" in text  # the same perfectly separated column either way
    assert "do not overlap" in lecture.strict_threshold_answer(cosine, norms, 70.0, interval(0.3, 0.2, 0.4))
    assert "cannot tell" in lecture.strict_threshold_answer(cosine, norms, 70.0, too_few(0.9, 4))
    assert "No output patch token" in lecture.strict_threshold_answer(cosine, norms / 10, 7.0, interval(0.9, 0.8, 1.0))
    assert "no separated mode" in lecture.strict_threshold_answer(cosine, norms / 10, math.inf, NOT_MEASURED)
    assert "no normal tokens" in lecture.strict_threshold_answer(cosine, norms + 400, 70.0, interval(0.5, 0.4, 0.6))


def test_probe_answers():
    accuracies = {"CLS": 0.9, "normal": 0.5, "high-norm": 0.7}
    assert "as the paper says" in lecture.class_probe_answer(interval(0.2, 0.1, 0.3, 30), 30, accuracies)
    assert "no more image-level" in lecture.class_probe_answer(interval(-0.2, -0.3, -0.1, 30), 30, accuracies)
    assert "cannot order" in lecture.class_probe_answer(interval(0.1, -0.1, 0.3, 30), 30, accuracies)
    few = lecture.class_probe_answer(interval(0.2, 0.0, 0.4, 10), 10, {**accuracies, "CLS": None})
    assert "fewer than the 20 images" in few and "CLS not measured" in few
    assert "no outlier token" in lecture.class_probe_answer(NOT_MEASURED, 0, accuracies)
    pinned = lecture.local_probe_answer(interval(0.3, 0.2, 0.4), interval(0.1, 0.05, 0.2), True)
    assert "confounded by position" in pinned
    assert "have lost local" in lecture.local_probe_answer(interval(0.3, 0.2, 0.4), interval(0.1, 0.05, 0.2), False)
    assert "keep their local" in lecture.local_probe_answer(interval(-0.3, -0.4, -0.2), interval(0.1, 0.05, 0.2), False)
    assert "cannot tell" in lecture.local_probe_answer(interval(0.3, -0.1, 0.4), FEW, False)
    assert "nothing to compare" in lecture.local_probe_answer(NOT_MEASURED, NOT_MEASURED, False)


def test_register_answers():
    plain, reg = "vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m"
    assert "exceeds 5.0 times" in lecture.scale_answer(plain, reg, 40.0, 30.0, 5.0)
    assert "no cutoff to carry" in lecture.scale_answer(plain, reg, 40.0, 30.0, math.inf)
    assert "did not measure" in lecture.scale_answer(plain, reg, float("nan"), 30.0, 5.0)
    assert "*not testable*" in lecture.register_norm_answer(interval(0.0, 0.0, 0.0), math.inf, True)
    assert "they carry the high norm" in lecture.register_norm_answer(interval(8.0, 7.0, 9.0), 5.0, False)
    assert "would not count" in lecture.register_norm_answer(interval(1.0, 0.9, 1.1), 5.0, False)
    assert "cannot tell" in lecture.register_norm_answer(interval(5.0, 4.0, 6.0), 5.0, False)
    assert "no outlier cutoff" in lecture.register_norm_answer(interval(8.0, 7.0, 9.0), math.inf, False)
    assert "none" in lecture.register_norm_answer(NOT_MEASURED, 5.0, False)


def test_test_time_answers():
    units = pd.DataFrame([{"block": 9, "neuron": 512, "mean_at_outliers": 30.0, "mean_elsewhere": 0.1},
                          {"block": 10, "neuron": 7, "mean_at_outliers": 5.0, "mean_elsewhere": 0.2}])
    text = lecture.units_answer(units, 4, 0.0204, 0.0)
    assert "moved 2 unit(s)" in text and "block 9 unit 512" in text and "2.04% to 0.00%" in text and "top_k 1" in text
    assert "A single unit" in lecture.units_answer(units.iloc[:1], 4, 0.02, 0.0)
    assert "Some outliers are left" in lecture.units_answer(units, 4, 0.02, 0.01)
    assert "no outliers on the held-out" in lecture.units_answer(units, 4, 0.0, 0.0)
    assert "nothing was moved" in lecture.units_answer(units.iloc[:0], 4, 0.0, 0.0)
    assert "cannot tell whether attention was concentrated" in lecture.cleanup_answer(FEW, too_few(13.6, 4))
    assert "cleans up" in lecture.cleanup_answer(interval(20, 15, 25), interval(1.0, 0.8, 1.2))
    assert "stays on them" in lecture.cleanup_answer(interval(20, 15, 25), interval(10, 8, 12))
    assert "cannot tell whether the map" in lecture.cleanup_answer(interval(20, 15, 25), interval(2, 1, 3))
    assert "nothing to clean up" in lecture.cleanup_answer(interval(1.0, 0.8, 1.2), interval(1.0, 0.8, 1.2))
    assert "nothing to clean up" in lecture.cleanup_answer(NOT_MEASURED, NOT_MEASURED)



#: An interval in each state a run can leave it in: a value with its interval, every resample equal, too few images,
#: not measured.
STATES = [interval(19.7, 14.8, 28.8), Interval(3.0, 3.0, 3.0, 8, "every resample equal (zero width)"),
          too_few(19.7, 4), NOT_MEASURED]


def test_a_multiple_puts_its_unit_on_the_number():
    assert lecture.times(interval(19.7, 14.8, 28.8), "their area share") == "19.7× [14.8×, 28.8×] their area share"
    assert lecture.times(FEW, "their area share") == \
        "19.7× (too few images for an interval: 4 of 8 needed) their area share"
    assert lecture.times(NOT_MEASURED, "their area share") == "an unmeasured multiple of their area share"


@pytest.mark.parametrize("state", STATES, ids=["interval", "every equal", "too few", "not measured"])
def test_multiples_in_the_answers_read_well_in_each_state(state):
    """No answer glues "×" or "times" after an interval's text, where it followed "(too few images … needed)"
    (issue 25): the pages' prose check finds nothing in any state."""
    from analysis import prose

    answers = [lecture.attention_answer(TINY, state, 0.02), lecture.attention_position_answer(state, False, True),
               lecture.attention_position_answer(state, True, True), lecture.register_norm_answer(state, 5.0, False),
               lecture.register_norm_answer(state, 5.0, True), lecture.register_norm_answer(state, math.inf, False),
               lecture.cleanup_answer(state, state), lecture.cleanup_answer(interval(20, 15, 25), state)]
    for text in answers:
        assert prose.find_problems(text) == [], text
        assert ") times" not in text and ")×" not in text and "not measured×" not in text, text


def test_discovery_answers():
    from analysis.discovery import FLOOR_SHARE, MovedComparison

    table = pd.DataFrame([{"model": TINY, "condition": "as released", "images": 16, "corloc": 0.0,
                           "whole_image_boxes": 1.0},
                          {"model": RANDOM, "condition": "as released", "images": 16, "corloc": 0.06,
                           "whole_image_boxes": 0.75}])
    assert "Every row is at the floor" in lecture.floor_answer(table, FLOOR_SHARE)
    mixed = table.assign(whole_image_boxes=[1.0, 0.1])
    assert "1 of 2 rows are at the floor" in lecture.floor_answer(mixed, FLOOR_SHARE)
    assert "No row is at the floor" in lecture.floor_answer(table.assign(whole_image_boxes=0.0), FLOOR_SHARE)
    assert "not measured" in lecture.floor_answer(table.assign(corloc=float("nan")), FLOOR_SHARE)
    assert lecture.floor_answer(table.iloc[:0], FLOOR_SHARE) == "This run evaluated no model."
    assert "no pretrained model" in lecture.gain_answer({})
    gain = interval(0.25, 0.1, 0.4)
    assert "nothing was moved" in lecture.gain_answer({TINY: MovedComparison(gain, False, False, [])})
    assert "at its floor" in lecture.gain_answer({TINY: MovedComparison(gain, True, True, [])})
    assert "helps LOST" in lecture.gain_answer({TINY: MovedComparison(gain, True, False, [])})
    assert "does not help" in lecture.gain_answer({TINY: MovedComparison(interval(-0.3, -0.4, -0.1), True, False, [])})
    assert "cannot tell" in lecture.gain_answer({TINY: MovedComparison(too_few(0.25, 4), True, False, [])})


def test_every_answer_is_one_markdown_paragraph():
    """A ``{glue:md}`` role renders inline: an answer holds no line break, no admonition, no heading."""
    answers = [lecture.attention_answer(TINY, interval(21.4, 14.8, 28.8), 0.02), lecture.distilled_answer(),
               lecture.training_rule_answer(), lecture.threshold_answer(TINY, np.full(10, 5.0), math.inf)]
    for text in answers:
        assert "\n" not in text and "```" not in text and not text.startswith("#")
