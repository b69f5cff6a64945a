"""The built book as a reader sees it: headless Chromium with the network off (scripts/browser_check.py).

Static checks first (fast, no browser): the prose pages in ``book/`` paste only values that the
chapters glue, and every chapter opens with what the reader will learn and ends with two to four
exercises with folded solutions, one of which asks to rerun it. The checker is then shown to catch
each kind of broken page on a small synthetic site, so that a passing book check means something.
Finally every page of the book is checked: ``_build/html`` when it is newer than every source of
the book (after ``make book``), otherwise the smoke-profile book that ``tests/conftest.py`` builds
from ``_build/smoke``. Screenshots of the book's pages go to ``_build/screenshots/``. The browser
tests are skipped, with the reason, when Chromium is missing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import browser_check  # noqa: E402

_NO_CHROMIUM = ("Chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver; "
                "scripts/setup.sh installs them when run as root)")


def browser_test(function):
    """Mark a test as a browser test that needs Chromium."""
    function = pytest.mark.skipif(browser_check.find_chromium() is None, reason=_NO_CHROMIUM)(function)
    return pytest.mark.browser(function)


MATHJAX = REPO / "book" / "_vendor" / "mathjax" / "tex-mml-chtml.js"
# A 2x1 PNG (one red, one blue pixel), small enough to inline.
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000020000000108020000007b40e8dd"
    "0000000d49444154789c63f8cf0004ff01070001ffe2239e590000000049454e44ae426082"
)


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory) -> Path:
    """A site with one clean page and one page that breaks every rule once."""
    site = tmp_path_factory.mktemp("site")
    (site / "figure.png").write_bytes(PNG_BYTES)
    mathjax_head = ""
    if MATHJAX.exists():
        mathjax_head = (
            "<script>window.MathJax = {options: {processHtmlClass: 'math'}};</script>"
            f"<script defer src='{MATHJAX.as_uri()}'></script>"
        )
    clean = _page(
        "<article><h1 id='top'>clean</h1>"
        "<figure><img src='figure.png' alt='ok'><figcaption>Two pixels.</figcaption></figure>"
        "<a href='clean.html#top'>self</a>"
        + ("<p><span class='math'>\\(e^{i\\pi} + 1 = 0\\)</span></p>" if MATHJAX.exists() else "")
        + "</article>",
        mathjax_head,
    )
    (site / "index.html").write_text(clean)
    (site / "clean.html").write_text(clean)
    (site / "broken.html").write_text(_page(
        "<article><h1>broken</h1>"
        "<figure><img src='missing.png' alt='missing'><figcaption>Gone.</figcaption></figure>"
        "<img src='figure.png' alt='no caption'>"
        "<p><span class='math'>\\(x^2\\)</span></p>"
        "<div class='cell tag_injected-parameters'>profile = 'smoke'</div>"
        "<a href='clean.html#top'>fine</a> <a href='nothere.html'>gone</a> <a href='clean.html#nope'>bad anchor</a>"
        "</article><script>throw new Error('deliberate failure');</script>",
        "<script src='https://cdn.example.org/library.js'></script>",
    ))
    return site


@pytest.fixture(scope="module")
def synthetic_reports(synthetic_site, tmp_path_factory) -> dict[str, browser_check.PageReport]:
    shots = tmp_path_factory.mktemp("shots")
    reports = browser_check.check_book(synthetic_site, shots, pages=["clean.html", "broken.html"])
    return {report.page: report for report in reports}


@browser_test
def test_checker_passes_a_clean_page(synthetic_reports):
    report = synthetic_reports["clean.html"]
    assert report.problems == []
    assert report.images == 1 and not report.broken_images
    if MATHJAX.exists():  # the vendored MathJax typesets from file:// with the network off
        assert report.math_elements == report.math_typeset == 1
    assert report.screenshot is not None and report.screenshot.stat().st_size > 0


@browser_test
def test_checker_flags_each_kind_of_problem(synthetic_reports):
    report = synthetic_reports["broken.html"]
    assert report.external_requests == ["https://cdn.example.org/library.js"]
    assert any("deliberate failure" in message for message in report.console_errors)
    assert report.broken_images == ["missing.png"]
    assert report.uncaptioned_images == ["figure.png"]
    assert report.math_elements == 1 and report.math_typeset == 0
    assert report.injected_parameter_cells == 1
    assert report.broken_links == ["nothere.html", "clean.html#nope"]
    problems = "\n".join(report.problems)
    for expected in ("request to outside the book", "console error", "image did not load",
                     "not typeset by MathJax", "injected-parameters", "missing page or anchor",
                     "figure without a caption"):
        assert expected in problems


@browser_test
def test_checker_refuses_a_missing_book(tmp_path):
    with pytest.raises(FileNotFoundError, match="make book"):
        browser_check.check_book(tmp_path, None, pages=["index.html"])


def _book_sources() -> list[Path]:
    sources = [REPO / "_config.yml", REPO / "_toc.yml", *(REPO / "chapters").glob("*.ipynb"),
               REPO / "chapters" / "execution.md"]
    sources += [p for p in (REPO / "book").rglob("*") if p.is_file() and "_vendor" not in p.parts]
    return [p for p in sources if p.exists()]


def _fresh_book() -> Path | None:
    """``_build/html`` when it was built after every book source changed, else None."""
    index = REPO / "_build" / "html" / "index.html"
    if not index.exists():
        return None
    built = index.stat().st_mtime
    if any(source.stat().st_mtime > built for source in _book_sources()):
        return None
    if any(not (index.parent / page).exists() for page in browser_check.toc_pages()):
        return None
    return index.parent


@pytest.fixture(scope="module")
def book_html(request) -> Path:
    fresh = _fresh_book()
    return fresh if fresh is not None else request.getfixturevalue("smoke_book_html")


@browser_test
def test_every_page_reads_offline(book_html):
    screenshots = REPO / "_build" / "screenshots"
    reports = browser_check.check_book(book_html, screenshots)
    failures = {report.page: report.problems for report in reports if report.problems}
    assert not failures, f"pages of {book_html} that fail in the offline browser: {failures}"
    assert set(browser_check.toc_pages()) <= {report.page for report in reports}
    assert sum(report.images for report in reports) > 0, "the book shows no figure at all"
    for report in reports:
        assert report.screenshot is not None and report.screenshot.stat().st_size > 0


def test_api_reference_covers_every_module():
    """Each module of the package is documented on one API page (so a new module is not forgotten)."""
    modules = {p.stem for p in (REPO / "lib" / "sslgeom").glob("*.py") if p.stem != "__init__"}
    documented = re.findall(r"\.\. automodule:: sslgeom\.(\w+)", "".join(
        page.read_text() for page in (REPO / "book" / "api").glob("*.md")))
    assert sorted(documented) == sorted(set(documented)), "a module is documented twice"
    assert set(documented) == modules


@browser_test
def test_api_pages_are_built_from_the_docstrings(book_html):
    graphs = (book_html / "book" / "api" / "graphs.html").read_text()
    assert 'id="sslgeom.nnk.nnk_graph"' in graphs and "NNKResult" in graphs
    statistics = (book_html / "book" / "api" / "statistics.html").read_text()
    assert 'id="sslgeom.permanova.nested_permanova"' in statistics
    chapter = (book_html / "chapters" / "04_geometry_vs_paradigm.html").read_text()
    assert "book/api/statistics.html#sslgeom.geometry.geometry_table" in chapter  # chapters link their API


@browser_test
def test_result_tables_are_downloadable_from_their_chapter(book_html):
    chapter = (book_html / "chapters" / "05_transfer_prediction.html").read_text()
    links = re.findall(r'href="\.\./(_downloads/[^"]+/claim_scores\.csv)"', chapter)
    assert links, "chapter 05 links no claim_scores.csv"
    assert (book_html / links[0]).stat().st_size > 0


# `{glue:text}`../chapters/<stem>.ipynb::<key>:<format>`` in a prose page pastes a value from a chapter.
GLUE_FROM_CHAPTER = re.compile(r"\{glue(?::text)?\}`\.\./chapters/([\w-]+)\.ipynb::(\w+)")


def test_prose_pages_paste_only_glued_values():
    """A key renamed in a chapter fails here in a second, not at the end of a full book build."""
    pasted = [(page, stem, key) for page in sorted((REPO / "book").glob("*.md"))
              for stem, key in GLUE_FROM_CHAPTER.findall(page.read_text())]
    problems = []
    for page, stem, key in pasted:
        source = REPO / "notebooks" / f"{stem}.py"
        if not source.exists():
            problems.append(f"{page.name}: pastes from notebooks/{stem}.py, which does not exist")
        elif not re.search(rf"glue\(\s*[\"']{key}[\"']", source.read_text()):
            problems.append(f"{page.name}: pastes {key!r}, which notebooks/{stem}.py does not glue")
    assert not problems, "\n".join(problems)


def test_prose_pages_number_only_named_figures():
    """Every {numref} in a prose page names a figure that a chapter or page defines."""
    sources = [*(REPO / "notebooks").glob("*.py"), *(REPO / "book").glob("*.md")]
    names = {name for path in sources for name in re.findall(r':name:\s*"?([\w-]+)"?', path.read_text())}
    wanted = {(page.name, target) for page in (REPO / "book").glob("*.md")
              for target in re.findall(r"\{numref\}`(?:[^`<]*<)?([\w-]+)>?`", page.read_text())}
    missing = sorted(f"{page}: {target}" for page, target in wanted if target not in names)
    assert not missing, f"figures referenced but defined nowhere: {missing}"


# Pages that are not chapters: the landing page and the bibliography.
NOT_CHAPTERS = ("intro.md", "references.md")
FENCE = re.compile(r"^```\{(exercise|solution)\}[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _markdown_text(path: Path) -> str:
    """The page's markdown; for a py:percent notebook, its comment lines without the ``# ``."""
    text = path.read_text()
    if path.suffix == ".py":
        text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines()
                         if line.startswith("#"))
    return text


def test_every_chapter_teaches():
    """What you will learn first; two to four exercises, each with a folded solution; one asks to rerun."""
    chapters = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
    chapters += [p for p in sorted((REPO / "book").glob("*.md")) if p.name not in NOT_CHAPTERS]
    problems = []
    for path in chapters:
        name = path.relative_to(REPO).as_posix()
        text = _markdown_text(path)
        if "What you will learn" not in text[:3000]:
            problems.append(f"{name}: no 'What you will learn' at the start")
        blocks = FENCE.findall(text)
        exercises = [body for kind, body in blocks if kind == "exercise"]
        solutions = [body for kind, body in blocks if kind == "solution"]
        if not 2 <= len(exercises) <= 4:
            problems.append(f"{name}: {len(exercises)} exercises (2 to 4 wanted)")
        if len(solutions) != len(exercises) or not all(":class: dropdown" in body for body in solutions):
            problems.append(f"{name}: every exercise needs a solution folded with ':class: dropdown'")
        if not any(re.search(r"\b(re)?run\b", body, re.IGNORECASE) for body in exercises):
            problems.append(f"{name}: no exercise asks to rerun the chapter with other parameters")
    assert not problems, "\n".join(problems)
