"""The course as a website, in a real browser: `make site`'s pages, both editions.

The site is built once for the module as `make site` builds it (`bgcourse site` from
.venv-site, executing every chapter on this environment's interpreter into a cache in the test's
folder), served over HTTP on loopback, and read in headless Chromium (Debian's `chromium`,
driven by Playwright with `executable_path`). Every page of both editions is opened at 1400 px and
at 390 px (a phone): no console errors, every image loaded, no sideways scroll on the phone
outside code blocks; every internal link and anchor leads somewhere; the quiz answers and the
reference solutions are folded and open on a click; search finds `BackgroundTasks` and chapter
6's own phrases in each edition, from one search field or button in view, and its excerpts quote
the article and never a fold; the language switch leads to the same chapter in the other
edition. Screenshots are kept in `$BROWSER_ARTIFACTS/site` if set, else in the test's folder.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from bgcourse.website import FOLDED, RUN_NOTE

ROOT = Path(__file__).resolve().parents[2]
SITE_BGCOURSE = ROOT / ".venv-site" / "bin" / "bgcourse"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
# Executing the 14 notebooks takes about 6 minutes on 2 idle cores; this only ends a hung build.
BUILD_TIMEOUT_S = 3600
STEP_TIMEOUT_MS = 120_000
WIDTHS = {"desktop": 1400, "phone": 390}
EDITIONS = {"en": "", "zh-CN": "zh-CN/"}
CHAPTERS = sorted(path.stem for path in (ROOT / "notebooks").glob("ch*.ipynb"))

pytestmark = pytest.mark.browser


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The test reads the pages, not the server's log."""


@dataclass
class Site:
    folder: Path
    url: str
    build_log: str
    cache: Path
    screenshots: Path
    pages: list[str] = field(default_factory=list)  # every HTML page, relative to the site's root


def _build_environment(home: Path) -> dict[str, str]:
    """The build's kernels keep their settings and history in the test's folder.

    TMPDIR stays the system's, as for nbval's runs of the notebooks: chapter 3 starts a PostgreSQL
    server there, which runs as the `postgres` user when the tests run as root and could not reach
    a folder under pytest's private tmp_path. What the chapters put there they delete.
    """
    env = {**os.environ, "IPYTHONDIR": str(home / "ipython")}
    env.update(JUPYTER_CONFIG_DIR=str(home / "jupyter"), JUPYTER_DATA_DIR=str(home / "data"))
    env.update(JUPYTER_RUNTIME_DIR=str(home / "rt"), MPLCONFIGDIR=str(home / "mpl"))
    return env


def _bgcourse_site(home: Path, output: Path) -> subprocess.CompletedProcess[str]:
    command = [str(SITE_BGCOURSE), "--course", str(ROOT), "site", "--output", str(output)]
    command += ["--cache", str(home / "cache"), "--work", str(home / "work"), "--python", sys.executable]
    return subprocess.run(
        command, capture_output=True, text=True, env=_build_environment(home), timeout=BUILD_TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    needs = [
        (CHROMIUM is None, "chromium is not installed (apt-get install chromium)"),
        (not SITE_BGCOURSE.exists(), "the site's environment is missing (make site-env)"),
    ]
    for missing, advice in needs:
        if missing and os.environ.get("CI") == "true":
            pytest.fail(f"{advice}: .ci/run installs chromium, and make test makes .venv-site")
        if missing:
            pytest.skip(advice)
    home = tmp_path_factory.mktemp("site")
    built = _bgcourse_site(home, home / "site")
    assert built.returncode == 0, f"bgcourse site failed ({built.returncode}):\n{built.stdout}\n{built.stderr}"
    folder = home / "site"
    screenshots = Path(os.environ.get("BROWSER_ARTIFACTS") or home / "screenshots") / "site"
    screenshots.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The theme's own templates in _static/ are no pages (nothing links to them).
        found = (path.relative_to(folder) for path in folder.rglob("*.html"))
        pages = sorted(str(path) for path in found if "_static" not in path.parts)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        yield Site(folder, url, built.stdout + built.stderr, home / "cache", screenshots, pages)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Visit:
    """What one page showed: its problems, its links and its anchors."""

    problems: list[str]
    links: list[str]  # absolute URLs of <a href> on the site
    ids: set[str]
    overflow: int  # how many pixels the page scrolls sideways


def _screenshot(site: Site, name: str, width: int) -> Path:
    """Where a page's screenshot at a width is kept: zh-CN/ch01.html at 390 px -> zh-CN-ch01-390.png."""
    return site.screenshots / f"{name.removesuffix('.html').replace('/', '-')}-{width}.png"


def _visit(browser: Browser, site: Site, name: str, width: int) -> Visit:
    tab = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
           if message.type in {"error", "warning"} else None)  # fmt: skip
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    tab.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
           if response.status >= 400 else None)  # fmt: skip
    try:
        tab.set_default_timeout(STEP_TIMEOUT_MS)
        tab.goto(site.url + name, wait_until="load")
        # Every image, also those below the fold, decoded; then how many did not load.
        broken = tab.evaluate(
            """async () => {
                const images = [...document.images];
                images.forEach((image) => { image.loading = "eager"; });
                await Promise.all(images.map((image) => image.decode().catch(() => null)));
                return images.filter((image) => image.naturalWidth === 0).map((image) => image.src);
            }"""
        )
        problems += [f"image not loaded: {source}" for source in broken]
        links = tab.evaluate("() => [...document.querySelectorAll('a[href]')].map((a) => a.href)")
        ids = set(tab.evaluate("() => [...document.querySelectorAll('[id]')].map((e) => e.id)"))
        overflow = tab.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        tab.screenshot(path=str(_screenshot(site, name, width)), full_page=True)
        return Visit(problems, [link for link in links if link.startswith(site.url)], ids, int(overflow))
    finally:
        tab.close()


@pytest.fixture(scope="module")
def visits(browser: Browser, site: Site) -> dict[tuple[str, str], Visit]:
    return {(name, kind): _visit(browser, site, name, width) for name in site.pages for kind, width in WIDTHS.items()}


def test_the_site_has_every_chapter_in_both_editions(site: Site) -> None:
    for root in EDITIONS.values():
        for name in ("index.html", "search.html", "run_locally.html", *(f"{slug}.html" for slug in CHAPTERS)):
            assert f"{root}{name}" in site.pages, f"{root}{name} is missing; the site has {site.pages}"
    assert "zh-CN/against_the_article.html" in site.pages
    # Published as it is: GitHub Pages must not run Jekyll (it drops _static/).
    assert (site.folder / ".nojekyll").exists()
    # No page falls back on the theme's placeholders ("By Author name not set" in its footer).
    placeholders = [name for name in site.pages if "Author name not set" in (site.folder / name).read_text("utf-8")]
    assert not placeholders, f"pages with a theme's placeholder text: {placeholders}"
    # The build says what it does and nothing else: no kernel or library warning in its log.
    warned = [line for line in site.build_log.splitlines() if "warning" in line.lower()]
    assert not warned, "\n".join(warned)


def test_every_page_loads_without_console_errors_and_with_every_image(visits: dict[tuple[str, str], Visit]) -> None:
    problems = [f"{name} ({kind}): {problem}" for (name, kind), visit in visits.items() for problem in visit.problems]
    assert not problems, "\n".join(problems)


def test_the_chapters_show_their_pictures(site: Site, visits: dict[tuple[str, str], Visit]) -> None:
    """The figures of the run are on the pages (the timelines of chapter 1, in both editions)."""
    for root in EDITIONS.values():
        html = (site.folder / f"{root}ch01_core_mechanics.html").read_text(encoding="utf-8")
        assert html.count("<img") >= 3, f"{root}ch01_core_mechanics.html shows {html.count('<img')} images"


def test_no_page_scrolls_sideways_on_a_phone(visits: dict[tuple[str, str], Visit]) -> None:
    wide = {name: visit.overflow for (name, kind), visit in visits.items() if kind == "phone" and visit.overflow > 0}
    assert not wide, f"pages wider than a 390 px phone (pixels of sideways scroll): {wide}"


def test_every_internal_link_and_anchor_resolves(site: Site, visits: dict[tuple[str, str], Visit]) -> None:
    anchors = {name: visit.ids for (name, kind), visit in visits.items() if kind == "desktop"}
    broken = []
    for (name, kind), visit in visits.items():
        if kind != "desktop":
            continue
        for link in visit.links:
            parts = urlsplit(link)
            target = unquote(parts.path.removeprefix("/")) or "index.html"
            target = target + "index.html" if target.endswith("/") else target
            if not (site.folder / target).is_file():
                broken.append(f"{name}: {link} (no such file)")
            elif parts.fragment and target in anchors and unquote(parts.fragment) not in anchors[target]:
                broken.append(f"{name}: {link} (no such anchor)")
    assert not broken, "\n".join(sorted(set(broken)))


def _folded_grade_ids(edition_root: str, slug: str) -> list[str]:
    """What a reader must open: every reference solution and quiz answer, and every quiz check."""
    folder = ROOT / "notebooks" / (edition_root.rstrip("/") or ".")
    notebook = nbformat.read(folder / f"{slug}.ipynb", as_version=4)
    ids = [str(cell.metadata.get("nbgrader", {}).get("grade_id", "")) for cell in notebook.cells]
    return [grade_id for grade_id in ids if re.fullmatch(r"(ex|q)\d+_answer|q\d+", grade_id)]


@pytest.mark.parametrize("edition", list(EDITIONS))
def test_answers_and_solutions_are_folded_and_open_on_a_click(browser: Browser, site: Site, edition: str) -> None:
    root = EDITIONS[edition]
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        for slug in CHAPTERS:
            tab.goto(f"{site.url}{root}{slug}.html")
            folds = tab.locator(f".tag_{FOLDED}")
            expected = len(_folded_grade_ids(root, slug))
            # Each exercise's solution, each quiz answer and each quiz explanation: one fold apiece.
            assert folds.count() == expected, f"{root}{slug}: {folds.count()} folds, {expected} expected"
            for index in range(folds.count()):
                fold = folds.nth(index)
                details = fold.locator("details")
                assert details.count() == 1, f"{root}{slug}: fold {index} has no <details>"
                assert details.get_attribute("open") is None, f"{root}{slug}: fold {index} is open"
                hidden = fold.locator(".cell_input, .cell_output")
                assert hidden.count() >= 1
                assert not any(hidden.nth(i).is_visible() for i in range(hidden.count())), f"{root}{slug}: {index}"
            first = folds.first
            first.locator("summary").click()
            assert first.locator(".cell_input, .cell_output").first.is_visible()
            # Nothing else shows nbgrader's solution markers.
            assert "BEGIN SOLUTION" not in tab.content()
    finally:
        tab.close()


# Results appear one by one; the summary (empty until then) is written after the last.
_SEARCH_DONE = "() => document.querySelector('#search-results .search-summary')?.textContent.trim()"
# A page's excerpt comes later still: each result fetches its page and appends the excerpt when
# the page arrives, which may be after the summary (an empty excerpt failed a run beside a CPU hog).
# A result that names an object (a span after its link) gets no excerpt.
_EXCERPTS_DONE = """() => [...document.querySelectorAll('#search-results li')].every(
    (item) => item.querySelector('p.context, span'))"""


def _excerpts(browser: Browser, site: Site, root: str, query: str) -> dict[str, str]:
    """The pages a search lists (their names), each with its excerpt."""
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.set_default_timeout(STEP_TIMEOUT_MS)
        tab.goto(f"{site.url}{root}search.html?q={query}")
        tab.wait_for_function(_SEARCH_DONE)
        tab.wait_for_function(_EXCERPTS_DONE)
        listed: list[list[str]] = tab.evaluate(
            """() => [...document.querySelectorAll('#search-results li')].map(
                (item) => [item.querySelector('a').href, item.querySelector('p.context')?.textContent ?? ''])"""
        )
    finally:
        tab.close()
    return {urlsplit(href).path.rsplit("/", 1)[-1]: excerpt for href, excerpt in listed}


def _search(browser: Browser, site: Site, root: str, query: str) -> list[str]:
    """The pages a search lists (their names)."""
    return sorted(_excerpts(browser, site, root, query))


@pytest.mark.parametrize(
    ("edition", "query", "expected"),
    [
        ("en", "BackgroundTasks", "ch01_core_mechanics.html"),
        ("en", "No response returned", "ch06_troubleshooting.html"),
        ("zh-CN", "BackgroundTasks", "ch01_core_mechanics.html"),
        ("zh-CN", "后台任务", "ch01_core_mechanics.html"),
        ("zh-CN", "长轮询", "ch06_troubleshooting.html"),
        ("zh-CN", "客户端已经离开时", "ch06_troubleshooting.html"),
    ],
)
def test_search_finds_the_pages_that_say_it(
    browser: Browser, site: Site, edition: str, query: str, expected: str
) -> None:
    found = _search(browser, site, EDITIONS[edition], query)
    assert expected in found, f"searching {query!r} in {edition} listed {found}"


# The folded cells' text, and the rest of the page's: each edition's chapter 1 (the folds removed).
_TEXTS = """() => {
    const folded = [...document.querySelectorAll('.tag_FOLDED')];
    const hidden = folded.map((fold) => fold.textContent).join(' ');
    folded.forEach((fold) => fold.remove());
    return [hidden, document.body.textContent];
}"""


@pytest.mark.parametrize("edition", list(EDITIONS))
def test_search_does_not_lead_to_a_folded_answer(browser: Browser, site: Site, edition: str) -> None:
    """A name that only a folded cell writes (a reference solution's, an answer's) finds no chapter that folds it."""
    root, page = EDITIONS[edition], "ch01_core_mechanics.html"
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.goto(f"{site.url}{root}{page}")
        hidden, rest = tab.evaluate(_TEXTS.replace("FOLDED", FOLDED))
    finally:
        tab.close()
    shown = set(re.findall(r"\w+", rest))
    only_folded = sorted(set(re.findall(r"(?<!\w)[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+(?!\w)", hidden)) - shown)
    assert len(only_folded) >= 3, f"{root}{page}: too few names only its folds write: {only_folded}"
    for name in only_folded[:3]:
        found = _search(browser, site, root, name)
        assert page not in found, f"searching {name!r}, which only a fold of {root}{page} writes, listed {found}"


# A chapter's article as a search excerpt should see it (no fold, no heading's "#" link), read
# from the page's HTML as Sphinx's search fetches it (before scripts add their buttons' text); the
# same text with each fold between \x01 and \x02, to tell where a word first appears; and the text
# the search cuts its excerpts from.
_ARTICLE_TEXTS = """async () => {
    const html = await (await fetch(location.href)).text();
    const article = new DOMParser().parseFromString(html, 'text/html').querySelector('article.bd-article');
    article.querySelectorAll('.headerlink, script, style').forEach((element) => element.remove());
    const marked = article.cloneNode(true);
    marked.querySelectorAll('.tag_FOLDED').forEach((fold) => { fold.prepend('\\x01'); fold.append('\\x02'); });
    article.querySelectorAll('.tag_FOLDED').forEach((fold) => fold.remove());
    return [article.textContent, marked.textContent, Search.htmlToText(html)];
}"""


def _squeezed(text: str) -> str:
    return " ".join(text.split())


# What the search looks for when it is asked for each word: the word's stem ("begins": "begin"), as
# the search page's own Stemmer makes it. An excerpt is cut around the stem's first appearance.
_STEMS = "(words) => words.map((word) => [...Search._parseQuery(word)[1]][0] ?? '')"


def _first_seen_in_a_fold(tab: Page, marked: str, visible: str) -> list[tuple[str, str]]:
    """Words, with their stems, whose stem the article shows outside its folds but first (any case) inside one."""
    lower, shown = marked.lower(), visible.lower()
    words = sorted(set(re.findall(r"(?<!\w)[A-Za-z]\w{5,}(?!\w)", marked)) & set(re.findall(r"\w+", visible)))
    stems: list[str] = tab.evaluate(_STEMS, words)
    found = []
    for word, stem in zip(words, stems, strict=True):
        at = lower.find(stem)
        if len(stem) >= 4 and stem in shown and marked.count("\x01", 0, at) > marked.count("\x02", 0, at):
            found.append((word, stem))
    return found


@pytest.mark.parametrize("edition", list(EDITIONS))
def test_search_excerpts_quote_the_article_and_no_fold(browser: Browser, site: Site, edition: str) -> None:
    """An excerpt is cut from the article a reader sees: not from the page's toolbar, and never from a fold.

    First on every chapter: the text Sphinx's search cuts excerpts from is the article's, without
    its folds. Then in the search page: excerpts for `BackgroundTasks`, and for words whose stem
    (what the search looks for: "begin" for "begins") first appears on their chapter's page inside
    a fold (a reference solution, say) and only later in the open, where an excerpt cut from the
    page's whole text would quote the fold.
    """
    root = EDITIONS[edition]
    visible: dict[str, str] = {}
    queries: list[tuple[str, str, str]] = [("BackgroundTasks", "backgroundtask", "ch01_core_mechanics.html")]
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        for slug in CHAPTERS:
            tab.goto(f"{site.url}{root}{slug}.html")
            text, marked, quoted = tab.evaluate(_ARTICLE_TEXTS.replace("FOLDED", FOLDED))
            visible[f"{slug}.html"] = _squeezed(text)
            assert marked.count("\x01") == len(_folded_grade_ids(root, slug)), f"{root}{slug}: folds not marked"
            assert _squeezed(quoted) == visible[f"{slug}.html"], f"{root}{slug}: search quotes more than the article"
            queries += [(word, stem, f"{slug}.html") for word, stem in _first_seen_in_a_fold(tab, marked, text)[:1]]
        assert tab.evaluate(_STEMS, ["BackgroundTasks"]) == ["backgroundtask"]
        assert len(queries) >= 2, f"{root}: no chapter has a word whose stem is first seen in a fold"
    finally:
        tab.close()
    for query, stem, page in queries[:4]:
        excerpts = _excerpts(browser, site, root, query)
        assert page in excerpts, f"searching {query!r} in {edition} listed {sorted(excerpts)}"
        excerpt = _squeezed(excerpts[page].removeprefix("...").removesuffix("..."))
        assert stem in excerpt.lower(), f"{root}{page}: the excerpt for {query!r} lacks {stem!r}: {excerpt!r}"
        assert excerpt in visible[page], f"{root}{page}: the excerpt for {query!r} is not the article's: {excerpt!r}"


@pytest.mark.parametrize("kind", list(WIDTHS))
def test_each_page_has_one_way_to_search_and_it_finds(browser: Browser, site: Site, kind: str) -> None:
    """One search field or button in view (the sidebar's on a desktop, the toolbar's on a phone); it searches."""
    tab = browser.new_page(viewport={"width": WIDTHS[kind], "height": 900})
    try:
        tab.set_default_timeout(STEP_TIMEOUT_MS)
        tab.goto(f"{site.url}ch02_registration.html")
        buttons = tab.locator(".search-button__button")
        shown = [buttons.nth(index) for index in range(buttons.count()) if buttons.nth(index).is_visible()]
        assert len(shown) == 1, f"{kind}: {len(shown)} search fields or buttons in view"
        shown[0].click()
        field = tab.locator("#pst-search-dialog input[name='q']")
        field.fill("BackgroundTasks")
        field.press("Enter")
        tab.wait_for_url("**/search.html?q=BackgroundTasks*")
        tab.wait_for_function(_SEARCH_DONE)
        hrefs: list[str] = tab.evaluate("() => [...document.querySelectorAll('#search-results li a')].map(a => a.href)")
        assert f"{site.url}ch01_core_mechanics.html" in hrefs, hrefs
    finally:
        tab.close()


def test_the_language_switch_leads_to_the_same_chapter(browser: Browser, site: Site) -> None:
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        tab.goto(f"{site.url}ch03_db_compensation.html")
        tab.locator("a.bgcourse-language-switch").click()
        tab.wait_for_url(f"{site.url}zh-CN/ch03_db_compensation.html")
        assert "第 3 章" in tab.locator("h1").first.inner_text()
        tab.locator("a.bgcourse-language-switch").click()
        tab.wait_for_url(f"{site.url}ch03_db_compensation.html")
        assert "Chapter 3" in tab.locator("h1").first.inner_text()
        # A page the English edition lacks: the switch leads to its front page.
        tab.goto(f"{site.url}zh-CN/against_the_article.html")
        tab.locator("a.bgcourse-language-switch").click()
        tab.wait_for_url(f"{site.url}index.html")
    finally:
        tab.close()


@pytest.mark.parametrize("edition", list(EDITIONS))
def test_each_chapter_says_how_it_ran_and_links_to_running_it(site: Site, browser: Browser, edition: str) -> None:
    root = EDITIONS[edition]
    fastapi = metadata.version("fastapi")
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        for slug in CHAPTERS:
            tab.goto(f"{site.url}{root}{slug}.html")
            note = tab.locator(f".{RUN_NOTE}")
            assert note.count() == 1, f"{root}{slug}: no note on its run"
            text = note.inner_text()
            assert f"fastapi {fastapi}" in text, text
            assert "UTC" in text, text
            assert note.locator("a[href='run_locally.html']").count() == 1, text
            download = note.locator("a.download")
            target = urljoin(tab.url, download.get_attribute("href") or "")
            file = site.folder / unquote(urlsplit(target).path.removeprefix("/"))
            practice = nbformat.read(file, as_version=4)
            assert file.name == f"{slug}.ipynb"
            # The learner's copy: stubs where the master has its solutions.
            assert "### BEGIN SOLUTION" not in json.dumps(practice)
    finally:
        tab.close()


def test_every_page_has_a_screenshot_at_both_widths(site: Site, visits: dict[tuple[str, str], Visit]) -> None:
    """Kept as artefacts (the whole page, as tall as it is) for a person to look at."""
    shots = [_screenshot(site, name, width) for name in site.pages for width in WIDTHS.values()]
    missing = [path.name for path in shots if not path.is_file() or path.stat().st_size == 0]
    assert not missing, f"no screenshot: {missing}"
    assert len(visits) == len(shots)


def test_a_second_build_executes_nothing_and_keeps_other_folders(site: Site, tmp_path: Path) -> None:
    """The cache is reused; and a folder the command did not make is never replaced."""
    home = site.cache.parent
    again = _bgcourse_site(home, tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to execute" in again.stdout, again.stdout
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine", encoding="utf-8")
    refused = _bgcourse_site(home, keep)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "is not a site this command built" in refused.stderr
    assert (keep / "notes.txt").read_text(encoding="utf-8") == "mine"
