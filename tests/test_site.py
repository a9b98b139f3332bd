"""The built site as a reader sees it, in headless Chromium.

Builds the book with the ``ci`` set if ``_build/html`` is missing. Chromium is a Debian package
(``apt-get install chromium``; ``.ci/run`` installs it): without it these tests skip, except on CI
where its absence is a failure. Screenshots of the landing page and one finding page are saved
under ``_build/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from analysis.run import ROOT, build_book

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HTML = ROOT / "_build" / "html"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed on CI (.ci/run installs the Debian package)")
        pytest.skip("headless Chromium not installed: apt-get install chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*arguments: str) -> str:
        result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return run


@pytest.fixture(scope="module")
def site(weights_dir) -> Path:
    if not (HTML / "index.html").is_file():
        build_book("ci", ROOT / "_build", str(weights_dir))
    return HTML


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def parse(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("page", toc_pages())
def test_page_loads_with_figures_links_and_glue(page, site, chromium):
    path = site / f"{page}.html"
    assert path.is_file(), f"{page} missing from the site"
    dom = chromium("--dump-dom", path.as_uri())
    assert "<article" in dom and "404" not in dom.split("<title>")[1].split("</title>")[0]
    found = parse(dom)
    for src in found.images:
        if src.startswith(("data:", "http")):
            continue
        image = (path.parent / unquote(urlparse(src).path)).resolve()
        assert image.is_file() and image.stat().st_size > 1000, f"{page}: figure {src} missing or empty"
    for href in found.links:
        url = urlparse(href)
        if url.scheme or href.startswith(("mailto:", "javascript:")):
            continue
        target = (path.parent / unquote(url.path)).resolve() if url.path else path
        assert target.exists(), f"{page}: broken link {href}"
        if url.fragment and target.suffix == ".html":
            ids = found.ids if target == path else parse(target.read_text()).ids
            assert url.fragment in ids, f"{page}: link {href} points to a missing anchor"
    assert "{glue" not in dom and "glue_warning" not in dom  # every glued value was found
    name = page.split("/")[-1]
    if name != "intro":
        assert found.images, f"{page}: no figure"
    if name not in ("intro", "claims", "quality", "summary", "your_image"):
        assert "Verdict of this run:" in dom, f"{page}: no verdict"


def test_screenshots_of_landing_and_finding_page(site, chromium):
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for page in ("book/intro", "book/norm_histogram"):
        target = shots / f"{page.split('/')[-1]}.png"
        target.unlink(missing_ok=True)
        chromium("--window-size=1280,2000", f"--screenshot={target}", (site / f"{page}.html").as_uri())
        assert target.is_file() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 20_000
