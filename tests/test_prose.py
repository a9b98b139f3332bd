"""The check over the built pages for sentences that contradict themselves through glued text (analysis/prose.py).

Each kind is caught on the sentences seen on real pages (issue 25) and left alone on the near misses the pages use
on purpose; the slow test runs the check over the whole ci book.
"""

from __future__ import annotations

import pytest

from analysis import prose
from analysis.prose import BRACKET_IN_NUMBER, DOUBLED_PHRASE, STATE_AS_NUMBER
from analysis.run import ROOT


def kinds(text: str) -> list[str]:
    return [p.kind for p in prose.find_problems(text)]


# --- a state where a number belongs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "On the plain model's scale the share of outliers falls by not measured.",  # seen on the registers page
    "On the plain model's scale the share of outliers falls by nan.",
    "The register norm is None.",
    "The share of outliers is inf%.",
    "The onset is at not measurable of 12 blocks.",
    "The enrichment is 4.0 [3.0, nan].",
    "Attention on them is not measured× their area share.",
])
def test_a_state_where_a_number_belongs_is_caught(text):
    assert kinds(text) == [STATE_AS_NUMBER]


@pytest.mark.parametrize("text", [
    "position-matched: not measurable (fewer than 10 matched pairs)",  # a reason standing on its own
    "unmatched ROC AUC 0.67 [0.55, 0.76], position-matched not measurable (outliers pinned).",
    "This run: enrichment 21.4 [14.8, 28.8], position-matched not measured.",
    "In this run the model has no high-norm patches, so the enrichment is not measured: there is nothing to compare.",
    "The position-matched AUC is not measurable here: the outliers are pinned.",
    "None of them can count for or against the size claim.",  # English "none", not Python's None
    "In DINOv2 ViT-g the high-norm tokens appear from about block 15 on; the early blocks have none.",
    "has a few high-norm output tokens (or none, as stated)",
    "A model without such a group has no cutoff (it is infinite) and no high-norm tokens.",
    "Benchmark: not measured for this build (run make bench).",
    "With `image = None` the page uses the shipped photos.",  # inline code, as page_text marks it
])
def test_a_state_that_stands_on_its_own_passes(text):
    assert prose.find_problems(text) == []


# --- a doubled phrase -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "This run: needs two checkpoints. Why: needs two checkpoints.",  # the example, a 3-word clause
    "This run: onset 50% [50%, 58%] of 12 blocks. Why: onset 50% [50%, 58%] of 12 blocks (expanded BCa bootstrap "
    "over images, n=8).",  # the reason opens with the figure it restates
    "This run: random initialisation: an untrained network cannot show what training does. Why: random "
    "initialisation: an untrained network cannot show what training does.",
    "On the plain model's scale the share of outliers the share of outliers falls by 40%.",  # said twice in a row
])
def test_a_doubled_phrase_is_caught(text):
    assert kinds(text) == [DOUBLED_PHRASE]


def test_a_doubled_phrase_names_the_words_repeated():
    problem, = prose.find_problems("This run: needs two checkpoints. Why: needs two checkpoints.")
    assert problem.excerpt.endswith("[repeated: needs two checkpoints]")


@pytest.mark.parametrize("text", [
    # parallel prose: the same run in two parts of one sentence, each about another thing
    "AugReg ViT-Ti/16 (test-time register (held-out half)): CorLoc 0% on 8 images; AugReg ViT-Ti/16 (as released "
    "(held-out half)): CorLoc 0% on 8 images.",
    "The position probe's top-1 gap is -21.4% [-24.4%, -18.4%], which lies wholly at or below 0.0%; the pixel "
    "probe's error gap is -6.47 [-6.80, -5.37], which lies wholly at or below 0.00.",
    # adjacent sentences that share a run but not a whole clause: the claim, then the paper's figure for it
    "high-norm tokens appear only after about a third of training\nPaper: DINOv2 ViT-g, after about a third of "
    "training (Fig. 4b).",
    "The map is the head-mean attention of the CLS query. The enrichment reads the attention of the CLS query.",
    "Method. Method of moments is not used.",  # a one-word clause is no phrase
])
def test_parallel_prose_is_not_a_doubled_phrase(text):
    assert prose.find_problems(text) == []


# --- a bracket nested in a number -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "CLS attention on the former outlier patches is 19.7 (too few images for an interval: 4 of 8 needed)× their "
    "area share before.",  # seen on the test-time registers page
    "The CLS token gives the outlier patches 19.7 (too few images for an interval: 4 of 8 needed) times their area "
    "share.",
    "cannot tell whether CLS attention was concentrated on the outliers before the intervention (enrichment 19.7 "
    "(too few images for an interval: 4 of 8 needed))",
    "The reduction is 80% (no interval) [60%, 90%].",
    "The enrichment is 4.9 [2.9 (too few images), 7.1].",
])
def test_a_bracket_nested_in_a_number_is_caught(text):
    assert kinds(text) == [BRACKET_IN_NUMBER]


@pytest.mark.parametrize("text", [
    "The share of outliers is 1.20 % [0.00 %, 3.06 %].",
    "The enrichment is 4.9× [2.9, 7.1] against a margin of 2.0×.",
    "CorLoc gain 0.0% [0.0%, 0.0%] (every resample equal), on 16 images of 224 px.",
    "1.98% (too few images for an interval: 1 of 8 needed) of the patches are high-norm.",
    "The paper's claim [Darcet et al., 2024]: the last-layer attention of the CLS token shows bright spots.",
    "✓ AugReg ViT-Ti/16 (random init): 0.0% high-norm tokens (random init has no high-norm tokens: as expected)",
    "The controls (AugReg ViT-Ti/16 (random init)) have none.",  # digits that close a name are no number
    "Rule: CLS attention on high-norm patches / their area share >= 2x (interval), and more.",
])
def test_numbers_with_their_units_and_intervals_pass(text):
    assert prose.find_problems(text) == []


# --- sentences and the built pages ----------------------------------------------------------------------------------

def test_sentences_end_at_a_full_stop_before_a_capital_and_at_a_line_break():
    text = "Paper: bright spots (Fig. 2, 5). This run: e.g. DINOv2 vs. DINO [Darcet et al., 2024]. Why: 3.06 %\nRule: x"
    assert prose.sentences(text) == ["Paper: bright spots (Fig. 2, 5).",
                                     "This run: e.g. DINOv2 vs. DINO [Darcet et al., 2024].", "Why: 3.06 %", "Rule: x"]


PAGE = """<html><head><style>p { color: red }</style><script>var x = "falls by nan";</script></head><body>
<div class="bd-sidebar-primary"><nav><p>The share falls by nan.</p></nav></div>
<main><article class="bd-article">
<h1>Registers<a class="headerlink" href="#r">#</a></h1>
<p>The share of outliers
falls by 40%. With <code class="docutils literal"><span class="pre">threshold = None</span></code>
the cutoff adapts.</p>
<div class="cell docutils container"><div class="cell_input docutils container"><div class="highlight"><pre>
share = falls by nan
</pre></div></div><div class="cell_output docutils container">
<div class="output stream highlight-myst-ansi notranslate"><div class="highlight"><pre>not measured for this build
the share is None
</pre></div></div>
<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre>{'cutoff': None}
</pre></div></div>
</div></div>
<p>Its norm is <span class="math notranslate nohighlight">\\(x = None\\)</span> large.</p>
<ul><li><p><strong>not testable</strong> — registers<br />
Paper: no outliers (Fig. 7). This run: needs two checkpoints. Why: needs two checkpoints.<br />
Rule: a rule.</p></li></ul>
</article></main></body></html>"""


def test_a_page_gives_its_visible_prose_block_by_block():
    blocks = prose.page_text(PAGE)
    assert blocks[0].strip() == "Registers"  # the heading, without its pilcrow
    # the source's line wrap is no sentence break; inline code is kept, marked as code
    assert prose.sentences(blocks[1]) == ["The share of outliers falls by 40%.",
                                          "With `threshold = None` the cutoff adapts."]
    text = "\n".join(blocks)
    assert "share = falls by nan" not in text and "var x" not in text and "color" not in text  # code, script, style
    assert "The share falls by nan" not in text  # the sidebar
    assert "'cutoff'" not in text and "x = None" not in text  # a value's repr, math
    assert "the share is None" in text  # a printed stream is text the reader reads


def test_the_site_check_names_the_page_and_reads_each_line_of_a_verdict(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "registers.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "search.html").write_text("<p>The share falls by nan.</p>", encoding="utf-8")  # Sphinx's, skipped
    found = prose.check_site(tmp_path)
    assert [(p.page, p.kind) for p in found] == [("book/registers", STATE_AS_NUMBER),  # "is None" printed
                                                 ("book/registers", DOUBLED_PHRASE)]
    assert "needs two checkpoints. Why: needs two checkpoints." in found[1].excerpt
    assert str(found[1]).startswith("book/registers: [doubled phrase] This run:")


@pytest.mark.slow
def test_built_pages_have_no_self_contradicting_sentences(ci_book):  # ci_book: tests/conftest.py
    problems = prose.check_site(ROOT / "_build" / "html")
    assert not problems, "\n".join(map(str, problems))
