"""The built site as a reader sees it, in headless Chromium driven by Playwright.

Builds the book with the ``ci`` set if ``_build/html`` is missing. Chromium is Debian's package
(``apt-get install chromium``; ``.ci/run`` installs it; Playwright drives it, no browser download): without
it these tests skip, except on CI where its absence is a failure. Every page is opened at 1280 px width,
checked, and screenshotted to ``_build/screenshots/<page>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.run import ROOT, build_book, toc_files, toc_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
#: Absolute paths of a build machine that must never show on a page.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|usr|opt)/[\w.-]+")
#: Console errors of the theme itself, not of this book: sphinx-thebe's inline script is emitted twice by
#: Jupyter Book 1.0.4 + sphinx-book-theme 1.3.0 (a redeclared const) even with thebe off. Anything else fails.
THEME_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

#: Measures, in the page, every table, figure and code block wider than the text column.
WIDTH_CHECK = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = article.getBoundingClientRect().width;
  const wide = [];
  for (const el of article.querySelectorAll('table, img, div.highlight pre, div.cell_output')) {
    const width = Math.max(el.getBoundingClientRect().width, el.scrollWidth);
    if (width > column + 2 && !el.closest('.hide-input, details:not([open])')) {
      wide.push(el.tagName + ' ' + Math.round(width) + 'px > ' + Math.round(column) + 'px: '
                + (el.getAttribute('src') || el.textContent.slice(0, 60)));
    }
  }
  const broken = [...article.querySelectorAll('img')].filter(i => !i.complete || i.naturalWidth === 0)
                 .map(i => i.getAttribute('src'));
  return {column, wide, broken};
}"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if not binary:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed on CI (.ci/run installs the Debian package)")
        pytest.skip("headless Chromium not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(weights_dir) -> Path:
    """The ci book, (re)built in _build: an unchanged page is not executed again."""
    build_book("ci", ROOT / "_build", str(weights_dir))
    return HTML


@pytest.mark.parametrize("page", toc_files())
def test_page_reads_well_at_1280px(page, site, browser):
    path = site / f"{page}.html"
    assert path.is_file(), f"{page} missing from the site"
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(path.as_uri(), wait_until="load")
    found = tab.evaluate(WIDTH_CHECK)
    text = tab.inner_text("article")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{page.split('/')[-1]}.png"), full_page=True)
    tab.close()
    errors = [e for e in errors if not e.startswith(THEME_ERRORS)]
    assert not errors, f"{page}: console errors {errors}"
    assert not found["broken"], f"{page}: images that do not load {found['broken']}"
    assert not found["wide"], f"{page}: wider than the text column: {found['wide']}"
    leaks = MACHINE_PATH.findall(path.read_text())
    assert not leaks, f"{page}: absolute paths of the build machine {sorted(set(leaks))[:5]}"
    assert "{glue" not in text and "glue_warning" not in path.read_text()
    name = page.split("/")[-1]
    if name in {p for p in toc_pages()} - {"census", "claims", "summary", "your_image", "validation", "quality"}:
        assert "Verdict of this run:" in text, f"{page}: no verdict"
        assert "Rule:" in text and "[" in text, f"{page}: the verdict shows no rule or interval"
    if name == "validation":  # the verdict block shows the rules against planted truth, misjudgements named
        from test_validation import KNOWN_MISJUDGED

        assert "Rules against planted truth:" in text, f"{page}: no validation verdict"
        assert all(twin in text for twin in KNOWN_MISJUDGED), f"{page}: a known misjudgement is not shown"


def test_plain_jupyter_book_build_at_the_root_stops_with_one_line(tmp_path):
    """The command a Jupyter Book user types first says at once how the book is built."""
    result = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT),
                             "--path-output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "make book" in result.stdout + result.stderr
    assert not (tmp_path / "_build" / "html" / "book" / "norm_histogram.html").exists()
