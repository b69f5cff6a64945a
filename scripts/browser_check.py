"""Open the built book in headless Chromium with the network off and check every page.

For the index, each page of ``_toc.yml`` and the search page this checks that

- the browser console shows no error (JavaScript exceptions, failed loads),
- nothing is requested from outside the book (any URL that is not ``file:``, ``data:``, ``blob:``
  or ``about:``), so the book reads offline,
- every math element was typeset by MathJax (an ``mjx-container`` inside each Sphinx ``.math``
  element) and MathJax reported no TeX error (``mjx-merror``),
- every ``<img>`` loaded (``naturalWidth > 0``), and every image in the text of a page sits in a
  ``<figure>`` with a non-empty caption,
- the cell papermill injects with the run's parameters is not shown,
- every link inside the book points to an existing page and, with ``#anchor``, to an existing
  element of it (cross-references between chapters resolve),

and saves a full-page screenshot of each page under ``_build/screenshots/``.

Usage::

    python scripts/browser_check.py                      # the book in _build/html
    python scripts/browser_check.py --html _build/smoke-book/html --screenshots /tmp/shots

Exit status 1 when a page fails a check (each problem is printed), 2 when Chromium or the book
is missing.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")
# How long a page may take to settle (MathJax typesetting, images) before it counts as failed.
PAGE_TIMEOUT_S = 20.0
SPHINX_PAGES = ("search.html", "genindex.html")
MAX_SCREENSHOT_HEIGHT = 20_000  # pixels; longer pages are cut (Chromium's texture limit is near 16k-32k)


@dataclass
class PageReport:
    """What one page showed in the browser."""

    page: str
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    math_elements: int = 0
    math_typeset: int = 0
    math_errors: list[str] = field(default_factory=list)
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    uncaptioned_images: list[str] = field(default_factory=list)
    injected_parameter_cells: int = 0
    broken_links: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        """Human-readable problems; empty when the page passed every check."""
        found = [f"console error: {message}" for message in self.console_errors]
        found += [f"request to outside the book: {url}" for url in self.external_requests]
        if self.math_typeset < self.math_elements:
            found.append(f"{self.math_elements - self.math_typeset} of {self.math_elements} math "
                         "elements were not typeset by MathJax (is book/_vendor/mathjax installed? "
                         "run `bash scripts/fetch_mathjax.sh`)")
        found += [f"MathJax error: {message}" for message in self.math_errors]
        found += [f"image did not load: {src}" for src in self.broken_images]
        found += [f"figure without a caption: {src}" for src in self.uncaptioned_images]
        found += [f"link to a missing page or anchor: {link}" for link in self.broken_links]
        if self.injected_parameter_cells:
            found.append(f"{self.injected_parameter_cells} papermill injected-parameters cell(s) shown")
        return found


def find_chromium() -> tuple[str, str] | None:
    """Paths of the Chromium binary and its WebDriver, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None
    return browser, driver


def toc_pages(toc_path: Path = REPO / "_toc.yml") -> list[str]:
    """HTML paths (relative to the book root) of the root page and every ``file`` in ``_toc.yml``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_notebooks import toc_files

    return ["index.html", *(entry + ".html" for entry in toc_files(toc_path))]


def start_browser(browser: str, driver_path: str, width: int = 1400, height: int = 1600):
    """Headless Chromium through Selenium, with the network cut three ways (DNS, proxy, DevTools)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-extensions", "--disable-default-apps",
        f"--window-size={width},{height}",
        # No name resolves and every proxied request goes to a closed port: nothing leaves the machine.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return driver


# Waits for the page, MathJax's first typesetting pass and every image, then reports what it saw.
INSPECT_PAGE_JS = """
const done = arguments[arguments.length - 1];
const timeoutMs = arguments[0];
const started = Date.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  while (document.readyState !== "complete" && Date.now() - started < timeoutMs) await sleep(50);
  const mathElements = Array.from(document.querySelectorAll(".math"));
  // Wait for MathJax only where the page loads it; a page with math and no MathJax fails at once.
  const loadsMathJax = Array.from(document.scripts).some((s) => /mathjax/i.test(s.src || ""));
  if (mathElements.length > 0 && loadsMathJax) {
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - started < timeoutMs) {
      await sleep(50);
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await Promise.race([MathJax.startup.promise, sleep(Math.max(0, timeoutMs - (Date.now() - started)))]);
    }
  }
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  while (images.some((img) => !img.complete) && Date.now() - started < timeoutMs) await sleep(50);
  done({
    mathElements: mathElements.length,
    mathTypeset: mathElements.filter((el) => el.querySelector("mjx-container") !== null).length,
    mathErrors: Array.from(document.querySelectorAll("mjx-merror")).map(
      (el) => el.getAttribute("data-mjx-error") || el.textContent),
    images: images.map((img) => {
      const figure = img.closest("figure");
      const caption = figure ? figure.querySelector("figcaption") : null;
      return {src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0,
              inContent: img.closest("article") !== null,
              captioned: caption !== null && caption.textContent.trim().length > 0};
    }),
    injectedCells: document.querySelectorAll(".tag_injected-parameters").length,
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href).filter((h) => h.startsWith("file:")),
    height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
  });
})();
"""


def external_requests(performance_log: list[dict]) -> list[str]:
    """URLs the page asked for that are not local to the book (from Chromium's performance log)."""
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(LOCAL_SCHEMES) and url not in urls:
                urls.append(url)
    return urls


def broken_links(links: list[str], html_dir: Path) -> list[str]:
    """Local links whose file is missing, or whose ``#anchor`` is not an ``id`` in that file.

    Links that leave the book's folder are ignored (the checks are about the book itself).
    """
    from urllib.parse import unquote, urlsplit

    root = html_dir.resolve()
    texts: dict[Path, str | None] = {}
    broken = []
    for link in dict.fromkeys(links):
        parts = urlsplit(link)
        target = Path(unquote(parts.path))
        if root not in target.parents and target != root:
            continue
        if target.is_dir():
            target = target / "index.html"
        if target not in texts:
            texts[target] = target.read_text(errors="replace") if target.is_file() else None
        text = texts[target]
        relative = target.relative_to(root).as_posix() + (f"#{parts.fragment}" if parts.fragment else "")
        if text is None:
            broken.append(relative)
        elif parts.fragment and target.suffix == ".html":
            anchor = unquote(parts.fragment)
            if f'id="{anchor}"' not in text and f"id='{anchor}'" not in text and f'name="{anchor}"' not in text:
                broken.append(relative)
    return broken


def save_screenshot(driver, path: Path, width: int, height: int) -> Path:
    """A PNG of the whole page (not only the window), cut at ``MAX_SCREENSHOT_HEIGHT``."""
    height = min(int(height), MAX_SCREENSHOT_HEIGHT)
    # Make the viewport as tall as the page, so the page is laid out exactly as a reader scrolls it.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        time.sleep(0.3)  # let the layout settle at the new height
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_page(driver, html_dir: Path, page: str, screenshot_dir: Path | None, width: int = 1400) -> PageReport:
    """Load one page of the book and collect everything the checks need."""
    report = PageReport(page=page)
    driver.get_log("browser")  # drop messages left over from the previous page
    driver.get_log("performance")
    driver.get((html_dir / page).resolve().as_uri())
    seen = driver.execute_async_script(INSPECT_PAGE_JS, int(PAGE_TIMEOUT_S * 1000))
    time.sleep(0.2)  # let late console messages arrive
    report.console_errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    report.external_requests = external_requests(driver.get_log("performance"))
    report.math_elements = seen["mathElements"]
    report.math_typeset = seen["mathTypeset"]
    report.math_errors = seen["mathErrors"]
    report.images = len(seen["images"])
    report.broken_images = [image["src"] for image in seen["images"] if not image["ok"]]
    # Images in the page's text (not the theme's logo or icons) are figures and need a caption.
    report.uncaptioned_images = [image["src"] for image in seen["images"]
                                 if image["inContent"] and not image["captioned"]]
    report.injected_parameter_cells = seen["injectedCells"]
    report.broken_links = broken_links(seen["links"], html_dir)
    if screenshot_dir is not None:
        name = page.removesuffix(".html").replace("/", "__") + ".png"
        report.screenshot = save_screenshot(driver, screenshot_dir / name, width, seen["height"])
    return report


def check_book(html_dir: Path, screenshot_dir: Path | None = REPO / "_build" / "screenshots",
               pages: list[str] | None = None, toc_path: Path = REPO / "_toc.yml") -> list[PageReport]:
    """Check ``pages`` of the HTML book in ``html_dir``; return one report per page.

    The default pages are the index, every page of ``toc_path``, and Sphinx's search and general
    index pages. Screenshots go to ``screenshot_dir`` (none when it is None); PNG files left there
    by an earlier check are removed first when the folder is inside the repository's ``_build``.

    Raises
    ------
    FileNotFoundError
        When ``html_dir`` holds no built book, a listed page is missing, or Chromium is missing.
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"no built book in {html_dir} (index.html missing): run `make book` first")
    if pages is None:  # the toc's pages plus Sphinx's own search and index pages
        pages = toc_pages(toc_path) + [page for page in SPHINX_PAGES if (html_dir / page).exists()]
    missing = [page for page in pages if not (html_dir / page).exists()]
    if missing:
        raise FileNotFoundError(f"pages missing from {html_dir}: {missing}; rebuild the book (`make book`)")
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium or chromedriver not found: install the Debian packages "
                                "`chromium` and `chromium-driver` (scripts/setup.sh does it as root)")
    build_dir = (REPO / "_build").resolve()
    if screenshot_dir is not None and build_dir in Path(screenshot_dir).resolve().parents:
        for old_shot in Path(screenshot_dir).glob("*.png"):  # shots of removed pages must not linger
            old_shot.unlink()
    driver = start_browser(*chromium)
    try:
        return [check_page(driver, html_dir, page, screenshot_dir) for page in pages]
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the built book in headless Chromium, offline.")
    parser.add_argument("--html", type=Path, default=REPO / "_build" / "html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", type=Path, default=REPO / "_build" / "screenshots",
                        help="where page screenshots go (default: _build/screenshots)")
    parser.add_argument("--toc", type=Path, default=REPO / "_toc.yml",
                        help="the table of contents that lists the pages to open (default: _toc.yml)")
    args = parser.parse_args(argv)
    try:
        reports = check_book(args.html, args.screenshots, toc_path=args.toc)
    except FileNotFoundError as error:
        print(f"[browser_check] {error}", file=sys.stderr)
        return 2
    failed = 0
    for report in reports:
        problems = report.problems
        failed += bool(problems)
        status = "ok" if not problems else "FAILED"
        print(f"[browser_check] {report.page}: {status} (math {report.math_typeset}/{report.math_elements} typeset, "
              f"{report.images - len(report.broken_images)}/{report.images} images)")
        for problem in problems:
            print(f"    {problem}")
    print(f"[browser_check] {len(reports) - failed}/{len(reports)} pages passed; screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
