"""Sentences of the built pages that contradict themselves through glued text.

The pages' prose is assembled from pieces (a measured value, its interval, a reason, a label), and a piece put
where another belongs reads as a sentence that says two things at once. Three kinds were seen on real pages
(issue 25) and are caught here, each defined narrowly enough that the legitimate uses of the same words pass:

* :data:`STATE_AS_NUMBER` — a state where a number belongs: ``falls by not measured``, ``falls by nan``,
  ``is None``, ``is inf%``. A *state* is a state phrase (``not measured``, ``not measurable``) or a
  sentinel (``nan``, ``None``, ``inf``). It is flagged only directly after a word that wants a number
  (``by``, ``of``, ``to``, ``at``, ``from``, ``than``, ``=``, …; for a sentinel also ``is``/``was``/``[``/``,``)
  or directly before a unit (``%``, ``×``, ``times``, ``pp``, an interval ``[``). So ``position-matched: not
  measurable (fewer than 10 matched pairs)`` (a reason standing on its own), ``the enrichment is not
  measured`` (a predicate) and ``none of them`` (a word, not Python's ``None``) pass.
* :data:`DOUBLED_PHRASE` — a run of :data:`MIN_RUN` or more words said twice in a row within a sentence, or a
  whole clause said again by the adjacent sentence, under another label or none, however short it is
  (``This run: needs two checkpoints. Why: needs two checkpoints.``; ``This run: onset 50% [50%, 58%]. Why: onset
  50% [50%, 58%] (expanded BCa …).``). A run merely shared by two parts of a sentence or by two adjacent
  sentences is not flagged: that is parallel prose (``…: CorLoc 0% on 8 images; …: CorLoc 0% on 8 images``,
  ``which lies wholly at or below 0.0%; … which lies wholly at or below 0.00``), which the pages use throughout.
* :data:`BRACKET_IN_NUMBER` — a bracket nested in a number: a number's parenthetical followed by its unit
  (``19.7 (too few images for an interval: 4 of 8 needed)× their area share``), or by an interval or the end
  of an enclosing parenthetical (``(enrichment 19.7 (too few …))``), or an interval ``[a, b]`` that holds
  another bracket. ``4.9× [2.9, 7.1]``, ``[0.00 %, 3.06 %]`` and ``6.25% [6.25%, 6.25%] (every resample equal)``
  pass.

:func:`find_problems` reads a block of text; :func:`check_site` reads every page of a built site, its visible
prose only (no code, script, style, math, navigation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bs4 is imported where the site is read: find_problems needs nothing beyond the stdlib
    from bs4 import Tag

STATE_AS_NUMBER = "state word where a number belongs"
DOUBLED_PHRASE = "doubled phrase"
BRACKET_IN_NUMBER = "bracket nested in a number"
KINDS = (STATE_AS_NUMBER, DOUBLED_PHRASE, BRACKET_IN_NUMBER)

#: A run of this many words said twice in a row within a sentence is a glued piece ("the share of outliers the
#: share of outliers falls"); shorter runs repeat in sound prose ("very, very").
MIN_RUN = 4
#: A clause said again in full by the adjacent sentence is glued however short it is ("needs two checkpoints"),
#: but a one-word clause is not a phrase ("Method. Method of …").
MIN_CLAUSE = 2

# --- what a state is, and where a number belongs -------------------------------------------------------------------

#: Phrases the package writes instead of a value. Not "unknown"/"undefined": those are ordinary adjectives
#: ("at unknown positions", "60% of resamples undefined").
STATE_PHRASE = r"not\s+measured|not\s+measurable"
#: Python's and pandas' sentinels as str() prints them. Case matters: "None" is Python's, "none" is English.
SENTINEL = r"[-+]?(?:nan|NaN|inf|Inf|Infinity)|None|<NA>|NaT"
#: Words after which a number is expected. Not "is": "the enrichment is not measured" is a sound predicate.
NUMBER_WANTED = r"by|of|to|at|from|than|about|around|reaches|equals|=|≈|<=|>=|≤|≥|<|>"
#: For a sentinel, "is" also wants a number (nothing sound reads "is nan"), and so do an interval's "[" and ",".
SENTINEL_WANTED = NUMBER_WANTED + r"|is|was|are|were"
#: What follows a number: its unit or multiplier, or the interval that follows an estimate (a "[" opening on a
#: number, not a citation's "[Darcet et al., 2024]"). An "x" only glued on ("nanx"): a spaced one is a letter.
UNIT = r"\s*(?:%|×)|\s+(?:times|pp)\b|x\b|\s*\[\s*[-+−]?\d"
#: A number standing alone, not the digits closing a name ("ViT-Ti/16", "+reg4").
NUMBER = r"(?<![\w/.\-−])[-+−]?\d+(?:\.\d+)?"

_STATE_AFTER_WORD = re.compile(rf"(?<![\w-])(?:{NUMBER_WANTED})\s+(?:{STATE_PHRASE})\b")
#: A sentinel after a word that wants a number, after an interval's "[", or after its "," ("[3.0, nan]").
_SENTINEL_AFTER_WORD = re.compile(rf"(?:(?<![\w-])(?:{SENTINEL_WANTED})\s+|\[\s*|,\s*(?=\S+\s*\]))"
                                  rf"(?:{SENTINEL})(?![\w-])")
_STATE_BEFORE_UNIT = re.compile(rf"(?<![\w-])(?:{STATE_PHRASE}|{SENTINEL})(?:{UNIT})")

# --- brackets nested in a number -----------------------------------------------------------------------------------

#: A number (an estimate), then a parenthetical of its own (no nested bracket inside), then what belongs right
#: after the bare number (its unit, its interval), or the close of a parenthetical the number itself sits in.
_PAREN_IN_NUMBER = re.compile(rf"{NUMBER}[%×]?\s*\([^()\[\]]*\)(?:{UNIT}|\s*\))")
#: An interval: "[", a signed number, then anything up to its "]". The interval holds another bracket if an
#: opening bracket comes before that "]".
_INTERVAL_WITH_BRACKET = re.compile(r"\[\s*[-+−]?\d[^\]\[()]*[(\[][^\]]*\]")

# --- sentences and words -------------------------------------------------------------------------------------------

#: A sentence ends at . ! ? before a space and a capital (or a quote), not after an abbreviation the pages use;
#: a line break (a <br> or a new block) ends one too.
_SENTENCE_END = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bal\.)(?<!\bvs\.)(?<!\bFig\.)(?<!\bSec\.)(?<!\bEq\.)"
                           r"(?<=[.!?])\s+(?=[A-Z\"“‘'])|\n+")
#: A label that opens a sentence ("This run:", "Why:", "Paper:"): at most three words before a colon.
_LABEL = re.compile(r"^\s*(?:[\w’'-]+\s+){0,2}[\w’'-]+:\s+")
_CODE = re.compile(r"`[^`]*`")
_EDGE_PUNCTUATION = ".,;:!?()[]{}\"'“”‘’`"


@dataclass(frozen=True)
class Problem:
    """One self-contradicting sentence: its :data:`KINDS` kind, the sentence(s) it was seen in, and its page."""

    kind: str
    excerpt: str
    page: str = ""

    def __str__(self) -> str:
        where = f"{self.page}: " if self.page else ""
        return f"{where}[{self.kind}] {self.excerpt}"


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences, blank ones dropped (whitespace inside a sentence folded to one space)."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s and s.strip()]


def words(sentence: str) -> list[str]:
    """The words of ``sentence``, lowercased, without the punctuation at their edges (``"run:"`` -> ``"run"``)."""
    stripped = (w.strip(_EDGE_PUNCTUATION).lower() for w in sentence.split())
    return [w for w in stripped if w]


def _immediate_repeat(tokens: list[str]) -> list[str]:
    """The longest run of at least :data:`MIN_RUN` words said twice in a row ("… X X …"), or ``[]``."""
    for length in range(len(tokens) // 2, MIN_RUN - 1, -1):
        for start in range(len(tokens) - 2 * length + 1):
            if tokens[start:start + length] == tokens[start + length:start + 2 * length]:
                return tokens[start:start + length]
    return []


def clause(sentence: str) -> list[str]:
    """The words of ``sentence`` after its label, if it opens with one (``"Why: needs two checkpoints."`` ->
    ``["needs", "two", "checkpoints"]``)."""
    return words(_LABEL.sub("", sentence, count=1))


def _restated(first: str, second: str) -> list[str]:
    """The clause of one sentence that opens the clause of the other (``This run: X. Why: X, because …``), or ``[]``.

    Only a whole clause counts: two sentences that merely share a run of words are parallel prose ("on 8
    images; … on 8 images"), while a clause said again in full is one piece glued twice."""
    one, other = clause(first), clause(second)
    shorter, longer = sorted((one, other), key=len)
    return shorter if len(shorter) >= MIN_CLAUSE and longer[:len(shorter)] == shorter else []


def _without_code(sentence: str) -> str:
    """``sentence`` with its inline code (in backticks, as :func:`page_text` marks it) left out: code is literal,
    and ``threshold = None`` or ``scores[(i, j)]`` there say what they mean."""
    return _CODE.sub("`code`", sentence)


def _state_as_number(sentence: str) -> bool:
    prose_only = _without_code(sentence)
    return any(p.search(prose_only) for p in (_STATE_AFTER_WORD, _SENTINEL_AFTER_WORD, _STATE_BEFORE_UNIT))


def _bracket_in_number(sentence: str) -> bool:
    prose_only = _without_code(sentence)
    return bool(_PAREN_IN_NUMBER.search(prose_only) or _INTERVAL_WITH_BRACKET.search(prose_only))


def find_problems(text: str) -> list[Problem]:
    """Every self-contradicting sentence of ``text`` (one block of prose: a paragraph, a list item, a cell).

    A doubled phrase is looked for within each sentence and between each two adjacent ones; its excerpt is the
    sentence (or both sentences) followed by the repeated words (lowercased, without punctuation) in brackets.
    """
    found: list[Problem] = []
    cut = sentences(text)
    for index, sentence in enumerate(cut):
        if _state_as_number(sentence):
            found.append(Problem(STATE_AS_NUMBER, sentence))
        if _bracket_in_number(sentence):
            found.append(Problem(BRACKET_IN_NUMBER, sentence))
        if run := _immediate_repeat(words(sentence)):
            found.append(Problem(DOUBLED_PHRASE, f"{sentence} [repeated: {' '.join(run)}]"))
        if index + 1 < len(cut) and (run := _restated(sentence, cut[index + 1])):
            found.append(Problem(DOUBLED_PHRASE, f"{sentence} {cut[index + 1]} [repeated: {' '.join(run)}]"))
    return found


# --- the built pages ------------------------------------------------------------------------------------------------

#: What a reader does not read as prose: code and its highlighting, scripts, styles, math, navigation and the
#: theme's chrome, the pilcrow of each heading. (A cell's printed stream output is kept: it is shown as text.)
SKIPPED = ("script", "style", "nav", "header", "footer", "button", "math", "svg", ".cell_input", ".math",
           ".headerlink", ".bd-sidebar-primary", ".bd-sidebar-secondary", ".bd-header-article", ".prev-next-area",
           "mjx-container")
#: Elements that start a new block of text: sentences never run across them.
BLOCKS = frozenset({"p", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr",
                    "td", "th", "caption", "figcaption", "figure", "blockquote", "div", "section", "details",
                    "summary", "pre", "article", "main", "aside"})


def _text_blocks(root: Tag) -> Iterator[str]:
    """The visible text under ``root`` (a BeautifulSoup tag), one string per block; ``<br>`` a line break."""
    from bs4 import NavigableString, Tag  # noqa: PLC0415 - only the site check needs bs4 (a theme dependency)

    buffer: list[str] = []

    def walk(node: Tag, keep_lines: bool) -> Iterator[str]:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a comment, doctype, CDATA
                    # the HTML source wraps lines anywhere; only a <pre> means its line breaks
                    buffer.append(str(child) if keep_lines else re.sub(r"\s+", " ", str(child)))
            elif isinstance(child, Tag):
                if child.name == "br":
                    buffer.append("\n")
                elif child.name == "code" and not keep_lines:
                    # inline code is literal (``image = None`` names Python's None on purpose): in backticks, as
                    # Markdown writes it, so the checks can leave it out and an excerpt still shows it
                    buffer.append("`" + " ".join(child.get_text().split()) + "`")
                elif child.name in BLOCKS:
                    yield from flush()
                    yield from walk(child, keep_lines or child.name == "pre")
                    yield from flush()
                else:
                    yield from walk(child, keep_lines)

    def flush() -> Iterator[str]:
        text = "".join(buffer)
        buffer.clear()
        if text.strip():
            yield text

    yield from walk(root, False)
    yield from flush()


def _unwanted(tag: Tag) -> bool:
    """A highlighted block that is not a cell's printed stream (code of a page, a repr of a value)."""
    classes = tag.get("class") or []
    return any(c.startswith("highlight") for c in classes) and "stream" not in classes \
        and not tag.find_parent(class_="stream")


def page_text(html: str) -> list[str]:
    """The blocks of prose a reader sees in the article of one built page."""
    from bs4 import BeautifulSoup  # noqa: PLC0415

    soup = BeautifulSoup(html, "html.parser")
    root = soup.select_one("article.bd-article") or soup.find("main") or soup.body or soup
    for tag in root.select(", ".join(SKIPPED)):
        if not tag.decomposed:  # a skipped tag inside another one went with it
            tag.decompose()
    for tag in root.find_all(_unwanted):
        if not tag.decomposed:
            tag.decompose()
    return list(_text_blocks(root))


def check_site(html_dir: Path) -> list[Problem]:
    """Every self-contradicting sentence on the pages of a built book (``<html_dir>/**/*.html``; Sphinx's
    search and index pages aside), each with its page's path relative to ``html_dir`` without ``.html``."""
    html_dir = Path(html_dir)
    found: list[Problem] = []
    for path in sorted(html_dir.rglob("*.html")):
        if path.name in ("genindex.html", "search.html") or "_static" in path.parts or "_sources" in path.parts:
            continue
        page = path.relative_to(html_dir).with_suffix("").as_posix()
        for block in page_text(path.read_text(encoding="utf-8")):
            found += [Problem(p.kind, p.excerpt, page) for p in find_problems(block)]
    return found
