"""A page concludes wherever it runs: its weights, its "what this run shows" sentence and its verdict are cell
outputs (MyST for the built book, HTML for Jupyter and Colab, plain text), not glue that only Jupyter Book reads.

The fast tests check the filling of the sentences, the three forms of an output, every page's closing cells
against the numbers its ``publish`` call gives, and the book's configuration. The slow one executes a page, builds
a one-page site from it with warnings as errors, and counts each conclusion there once.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from analysis import claims, report, run
from analysis.report import MissingNumberError, Page, Shown, fill

ROOT = Path(__file__).resolve().parents[1]
#: Pages that end in a verdict of their own rules (the findings, and the rules against planted truth).
VERDICT_PAGES = [p for p in run.PAGES if p not in ("census", "claims", "summary", "your_image", "quality")]
#: Pages that state what their run shows.
FINDING_PAGES = [p for p in run.PAGES if p not in ("summary", "quality")]


# --- filling a sentence -------------------------------------------------------------------------------------------


def test_a_sentence_is_filled_from_the_published_numbers_with_their_formats():
    numbers = {"n_images": 8, "model": "ViT-Ti", "median": 19.87, "share": 0.0198, "confidence": 95.0}
    text = fill("On {n_images} images, {model}: median {median:.1f}, {share:.1%} ({confidence:.0f} %).", numbers)
    assert text == "On 8 images, ViT-Ti: median 19.9, 2.0% (95 %)."


def test_a_sentence_naming_a_number_that_was_not_published_says_which():
    with pytest.raises(MissingNumberError) as error:
        fill("On {n_images} images, {primary_modle} has {share}.", {"n_images": 8, "primary_model": "m"},
             "page 'norm_histogram'")
    message = str(error.value)
    assert "page 'norm_histogram'" in message and "'primary_modle'" in message and "'share'" in message
    assert "n_images, primary_model" in message  # what it was given
    assert isinstance(error.value, KeyError)


def test_a_positional_field_is_refused():
    with pytest.raises(ValueError, match="positional field"):
        fill("On {} images", {"n_images": 8})


def test_the_sentence_needs_the_numbers_published_first(tmp_path):
    page = Page("norm_histogram", results_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"call page.publish\(...\) before page.show_finding"):
        page.finding("On {n_images} images.")
    page.numbers = {"confidence": 95.0, "n_images": 8}  # what publish keeps
    assert page.finding("\nOn {n_images} images ({confidence:.0f} % interval).\n") == "On 8 images (95 % interval)."


# --- one output, three forms --------------------------------------------------------------------------------------


def a_verdict() -> str:
    claim = claims.Claim.of("AugReg ViT-Ti/16", "w", claims.judge_attention(False, True, claims.Interval(18.3, 13.1, 24.1, 8)))
    return report.verdict_markdown([claim], [claims.control("ctl (random init)", False, 0.0)])


def test_an_output_carries_myst_for_the_book_and_html_for_jupyter():
    myst = a_verdict()
    bundle = Shown(myst)._repr_mimebundle_()
    assert bundle["text/markdown"] == myst  # the book renders the MyST admonition
    html, plain = bundle["text/html"], bundle["text/plain"]
    assert "```" not in html and "{admonition}" not in html and ":class:" not in html
    assert re.search(r'class="admonition tip".*Verdict of this run: reproduced</p>', html, re.S)
    assert "18.3 [13.1, 24.1]" in html and "Rule:" in html and "<strong>reproduced</strong>" in html
    assert plain.startswith("Verdict of this run: reproduced\n") and "```" not in plain and "18.3 [13.1, 24.1]" in plain


def test_html_of_a_sentence_escapes_what_it_does_not_mean_as_html():
    html = Shown("median **19.9** for <patches> & more")._repr_mimebundle_()["text/html"]
    assert html.strip() == "<p>median <strong>19.9</strong> for &lt;patches&gt; &amp; more</p>"


def test_a_page_shows_each_conclusion_as_one_output(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **options: shown.extend(objects))
    page = Page("attention_maps", results_dir=tmp_path)
    page.numbers = {"confidence": 95.0, "n_images": 8}
    page.show_weights()
    page.show_finding("On {n_images} images.")
    page.show_verdict()
    page.show_controls()
    assert [type(s) for s in shown] == [Shown] * 4
    assert [s.myst.splitlines()[0] for s in shown] == [
        "```{admonition} Weights of this run", "On 8 images.", "```{admonition} Verdict of this run: no claim evaluated",
        "```{admonition} Negative controls: all as expected"]
    page.show_verdict("```{admonition} Rules against planted truth: all found\n:class: tip\n\n- a row\n```")
    assert shown[-1].myst.startswith("```{admonition} Rules against planted truth")  # a page's own verdict block


# --- every page's closing cells ----------------------------------------------------------------------------------


def cells(page: str) -> list:
    return nbformat.read(run.notebook_path(page), 4).cells


def published_names(page: str) -> set[str]:
    """The keywords of the page's ``page.publish(...)`` call, and ``confidence``, which publish adds."""
    source = next(c.source for c in cells(page) if c.cell_type == "code" and "page.publish(" in c.source)
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "publish"]
    return {keyword.arg for keyword in calls[0].keywords} | {"confidence"}


def closing_calls(page: str) -> dict[str, list[str]]:
    """The page's ``page.show_*`` cells by method, each with its source; each must be a remove-input cell."""
    found: dict[str, list[str]] = {}
    for cell in cells(page):
        for method in re.findall(r"page\.(show_\w+)\(", cell.source):
            assert cell.cell_type == "code" and "remove-input" in cell.metadata.get("tags", []), (page, method)
            found.setdefault(method, []).append(cell.source)
    return found


@pytest.mark.parametrize("page", FINDING_PAGES)
def test_every_page_shows_its_conclusions_as_outputs_and_no_glued_block(page):
    calls = closing_calls(page)
    assert len(calls.get("show_finding", [])) == 1, calls
    assert len(calls.get("show_weights", [])) == (page != "claims"), calls  # the claims page reads tables, no model
    assert len(calls.get("show_verdict", [])) == (page in VERDICT_PAGES), calls
    for cell in cells(page):
        if cell.cell_type == "markdown":
            assert "{glue:md} " not in cell.source, (page, cell.source)  # a block only the built book would show
            if cell.source.startswith(("## What this", "## Verdict", "## This run", "## Controls")):
                assert "{glue" not in cell.source, (page, cell.source)
    template = ast.literal_eval(calls["show_finding"][0].strip().removeprefix("page.show_finding(").removesuffix(")"))
    assert set(report.template_fields(template)) <= published_names(page), page  # every field is published
    assert fill(template, {name: 1.0 for name in published_names(page)})


def test_the_book_renders_the_myst_of_an_output_and_jupyter_its_html():
    from myst_nb.core.render import get_mime_priority

    settings = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert settings["nb_render_markdown_format"] == "myst"  # admonitions, not CommonMark code fences
    order = get_mime_priority("html", [tuple(o) for o in settings["nb_mime_priority_overrides"]])
    assert order.index("text/markdown") < order.index("text/html")


# --- a one-page site ----------------------------------------------------------------------------------------------


def one_page_site(build: Path, url: str | None) -> str:
    """The executed norm_histogram page built alone (and a bibliography page) with warnings as errors."""
    src = run.stage_sources(build, url)
    (src / "book" / "references.md").write_text("# References\n\n```{bibliography}\n```\n")
    (src / "book" / "layer_dependence.md").write_text("# Layer dependence\n")  # the page's "Next" link
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/norm_histogram\nchapters:\n  - file: book/references\n"
                                  "  - file: book/glossary\n  - file: book/layer_dependence\n")
    shutil.rmtree(build / "_build", ignore_errors=True)
    return (run.build_html(build) / "book" / "norm_histogram.html").read_text()


@pytest.mark.slow
def test_the_built_page_shows_each_conclusion_once(tmp_path, weights_dir, monkeypatch):
    monkeypatch.setattr(run, "repository_url", lambda *args, **kwargs: None)
    build = tmp_path / "_build"
    run.run_page("norm_histogram", {"n_images": 8}, build, str(weights_dir))
    page = one_page_site(build, None)
    assert page.count("Verdict of this run:") == 1 and page.count("Weights of this run") == 1
    assert len(re.findall(r"On 8 images, .{0,80} has \d+\.\d+% \[", page)) == 1
    # the MyST admonition, not the HTML copy made for Jupyter
    assert re.search(r'<div class="\w+ admonition">\s*<p class="admonition-title">Verdict of this run:', page)
    assert "border-left: 4px" not in page and "{glue" not in page and "```" not in page
    assert "colab.research.google.com" not in page and "mybinder.org/v2" not in page  # no address: no buttons
    page = one_page_site(build, "https://github.com/someone/registers")
    assert "https://colab.research.google.com/github/someone/registers/blob/main/book/norm_histogram.ipynb" in page
    assert 'href="https://github.com/someone/registers"' in page
