"""The learner's path, in a real browser: `make lab`'s JupyterLab, chapter 1 of their own copy.

In each edition, English and Chinese: JupyterLab is started the way `make lab` (`make lab
LANGUAGE=zh-CN`) starts it, `bgcourse lab [--language zh-CN]`, on a copy of the course in
`tmp_path`, and opened through the link it prints, in headless Chromium (Debian's `chromium`,
driven by Playwright without a browser download of its own). The tests then do what a newcomer
does: look at the first screen, Run All, answer a quiz question wrongly and then rightly, and
read that edition's own feedback (the Chinese quiz file's hint and explanation). In the Chinese
edition the first screen must also be legible: the chapter's heading is drawn with a font that
has its characters, not as boxes, which on Linux takes a CJK font (`fonts-noto-cjk`). Each
edition has a JupyterLab and a browser of its own (module-scoped fixtures, one edition after the
other). The screenshots of each step are kept, one folder per edition (`en/`, `zh-CN/`): in
`$BROWSER_ARTIFACTS` if set, else in the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from bgcourse.helpers._feedback import COPY_MARKER
from bgcourse.lab._lab import FIRST_CHAPTER, LEARNER_FOLDER

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the machine's own browser tests start it: no sandbox as root, no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# An endless wait must end; no step is expected to take nearly this long.
STEP_TIMEOUT_MS = 600_000
LINK = re.compile(rf"http://127\.0\.0\.1:\d+/lab/tree/{re.escape(FIRST_CHAPTER)}\?token=\w+")
# Han characters and the CJK punctuation and full-width forms around them: what a CJK font draws.
CJK = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
# A code point that no font has a glyph for (the last of the private use plane 16): Chromium draws
# it as the box that stands for a missing glyph, in the font it would use for any missing glyph.
NO_GLYPH = "\U0010fffd"
# What a machine without a CJK font needs (README.zh-CN.md tells learners the same).
FONT_ADVICE = "install a CJK font: apt-get install fonts-noto-cjk (README.zh-CN.md, 安装说明: 中文字体)"

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Edition:
    """What one edition's learner sees: the command's option, their folder, chapter 1, its quiz file."""

    language: str
    folder: str  # the learner's own copy, inside the course
    title: str  # in chapter 1's first heading
    banner: str  # the practice copy's note at the top of every chapter
    quizzes: str  # the edition's quiz files, inside the course
    full_stop: str  # ends the explanation's first sentence
    colon: str  # ends the explanation's first clause

    @property
    def options(self) -> list[str]:
        return [] if self.language == "en" else ["--language", self.language]


EDITIONS = {
    "en": Edition("en", LEARNER_FOLDER, "Chapter 1: Core mechanics", "Your practice copy.", "quizzes", ".", ":"),
    "zh-CN": Edition("zh-CN", "my-course-zh-CN", "第 1 章：", "你的练习副本。", "quizzes/zh-CN", "。", "："),
}


@dataclass
class Lab:
    edition: Edition
    link: str
    log: Path
    course: Path
    screenshots: Path

    @property
    def folder(self) -> Path:
        return self.course / self.edition.folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A kernel's IPC sockets are files in the runtime folder, "kernel-<uuid>-ipc-4", and a socket's path
# has at most 107 bytes: longer, the kernel cannot start ("File name too long") and JupyterLab
# restarts it for ever. pytest-xdist's folders are long (".../pytest-21/popen-gw1/zh-CN0/").
_SOCKET_NAME = "kernel-00000000-0000-0000-0000-000000000000-ipc-4"
_MAX_SOCKET_PATH = 107


def _runtime_folder(home: Path) -> Path:
    folder = home / "rt"
    if len(str(folder / _SOCKET_NAME).encode()) > _MAX_SOCKET_PATH:
        pytest.fail(
            f"the kernel's sockets in {folder} would have paths over {_MAX_SOCKET_PATH} bytes: "
            "run pytest with a shorter --basetemp (or TMPDIR)"
        )
    return folder


@pytest.fixture(scope="module", params=list(EDITIONS))
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    edition = EDITIONS[request.param]
    home = tmp_path_factory.mktemp(edition.language)
    course = home / "course"
    for part in ("notebooks", "quizzes"):
        shutil.copytree(ROOT / part, course / part)
    screenshots = Path(os.environ.get("BROWSER_ARTIFACTS") or home / "screenshots") / edition.language
    screenshots.mkdir(parents=True, exist_ok=True)
    # The learner's Jupyter: settings, workspaces and runtime files in this test's folder, not ~.
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter")}
    env.update(JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(_runtime_folder(home)))
    env.update(JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), MPLCONFIGDIR=str(home / "mpl"))
    log = home / "lab.log"
    bgcourse = Path(sys.executable).with_name("bgcourse")
    command = [str(bgcourse), "--course", str(course), "lab", *edition.options]
    command += ["--no-browser", f"--port={_free_port()}"]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        deadline = time.monotonic() + 120
        while not (found := LINK.search(log.read_text(encoding="utf-8", errors="replace"))):
            assert server.poll() is None, f"bgcourse lab exited with {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no link to chapter 1 printed:\n{log.read_text()}"
            time.sleep(0.1)
        yield Lab(edition, found.group(0), log, course, screenshots)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def page(lab: Lab) -> Iterator[Page]:
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.set_default_timeout(STEP_TIMEOUT_MS)
            tab.goto(lab.link)
            yield tab
        finally:
            browser.close()


def _notebook(page: Page) -> Locator:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first


def _plain(markdown: str) -> str:
    """Text as the rendered Markdown shows it: `code` without its backticks."""
    return markdown.replace("`", "")


def _platform_fonts(page: Page, selector: str) -> list[dict[str, object]]:
    """The fonts that drew the text of the element ``selector`` finds, each with its glyph count."""
    session = page.context.new_cdp_session(page)
    try:
        session.send("DOM.enable")
        session.send("CSS.enable")
        document = session.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = session.send("DOM.querySelector", {"nodeId": document, "selector": selector})["nodeId"]
        assert node, f"nothing matches {selector}"
        fonts: list[dict[str, object]] = session.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        return fonts
    finally:
        session.detach()


def _assert_drawn_with_glyphs(page: Page, heading: Locator) -> None:
    """Every CJK character of ``heading`` is drawn by a font that has it, not as a box.

    Chromium reports the fonts that drew an element's text and how many glyphs each drew. A
    character that no font has is drawn too, as a box, by the font that draws every missing glyph:
    found here by drawing a code point that no font has in a copy of the heading (same place, same
    style). The glyphs drawn by the other fonts must cover the heading's CJK characters. (That font
    is the heading's own, JupyterLab's sans-serif, a Latin font here: were it a CJK font, the check
    would fail on a legible heading, never pass on boxes.)
    """
    text = heading.text_content() or ""
    wanted = len(CJK.findall(text))
    assert wanted, f"no CJK character in the heading {text!r}"
    heading.evaluate(
        """(heading, missing) => {
            heading.setAttribute('data-font-check', 'heading');
            const box = heading.cloneNode(false);
            box.removeAttribute('id');
            box.setAttribute('data-font-check', 'box');
            box.textContent = missing;
            heading.after(box);
        }""",
        NO_GLYPH,
    )
    try:
        fonts = _platform_fonts(page, '[data-font-check="heading"]')
        boxes = {font["familyName"] for font in _platform_fonts(page, '[data-font-check="box"]')}
    finally:
        heading.evaluate(
            """heading => {
                heading.removeAttribute('data-font-check');
                heading.parentElement.querySelector('[data-font-check="box"]')?.remove();
            }"""
        )
    drawn = sum(int(str(font["glyphCount"])) for font in fonts if font["familyName"] not in boxes)
    used = ", ".join(f"{font['familyName']} ({font['glyphCount']} glyphs)" for font in fonts)
    shown = text.strip().removesuffix("¶")  # JupyterLab's anchor link
    # A Japanese or Traditional Chinese face draws the hanzi too, in other forms than a Simplified Chinese reader's.
    families = [str(font["familyName"]) for font in fonts]
    other_forms = [family for family in families if re.search(r"\b(JP|KR|TC|HK)\b", family)]
    assert not other_forms, f"the Chinese heading was drawn with {used}: not a Simplified Chinese font"
    assert drawn >= wanted, (
        f"the Chinese chapter's first heading {shown!r} shows boxes, not characters: {wanted - drawn} of its "
        f"{wanted} CJK characters have no glyph in the fonts Chromium found (drawn with {used}; missing glyphs "
        f"are drawn by {', '.join(sorted(map(str, boxes)))}). To fix, {FONT_ADVICE}."
    )


def test_the_printed_link_opens_chapter_1_of_the_learners_copy(lab: Lab, page: Page) -> None:
    # bgcourse lab said where the learner's copy is, and JupyterLab serves that folder.
    terminal = lab.log.read_text(encoding="utf-8", errors="replace")
    assert f" into {lab.folder}." in terminal, terminal
    assert f"Serving notebooks from local directory: {lab.folder}\n" in terminal, terminal
    marker = json.loads((lab.folder / COPY_MARKER).read_text(encoding="utf-8"))
    assert marker.get("language", "en") == lab.edition.language, marker
    notebook = _notebook(page)
    expect(notebook).to_contain_text(lab.edition.title)
    expect(notebook).to_contain_text(lab.edition.banner)
    expect(page.locator('.lm-TabBar-tab.jp-mod-current[data-type="document-title"]')).to_contain_text(FIRST_CHAPTER)
    expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible()
    page.screenshot(path=lab.screenshots / "1-first-screen.png")
    if lab.edition.language != "en":
        _assert_drawn_with_glyphs(page, notebook.locator(".jp-RenderedMarkdown h1").first)
    # The file browser: the learner's chapters, each once (no jupytext twins), nothing else.
    listed = page.locator(".jp-DirListing-itemText").all_inner_texts()
    chapters = sorted(path.name for path in lab.folder.glob("ch*.ipynb"))
    assert sorted(name.strip() for name in listed) == chapters, listed
    # No pop-up (such as "get notified about official Jupyter news?"), and nothing marked modified.
    assert page.locator(".jp-Dialog").count() == 0
    assert page.locator(".jp-toast-message, .Toastify__toast").count() == 0
    assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0, "opening the notebook marked it modified"


def test_run_all_runs_every_cell_without_an_unexpected_error(lab: Lab, page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    prompts = _notebook(page).locator(".jp-CodeCell .jp-InputPrompt")
    # Counted in the file, not on the page: JupyterLab renders a long notebook's cells a few at a time.
    chapter = json.loads((lab.folder / FIRST_CHAPTER).read_text(encoding="utf-8"))
    code_cells = sum(cell["cell_type"] == "code" for cell in chapter["cells"])
    expect(_notebook(page).locator(".jp-CodeCell")).to_have_count(code_cells)
    # Done when every code cell shows an execution count: none is left waiting ("[ ]") or running ("[*]").
    expect(_notebook(page).locator(".jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))).to_have_count(
        code_cells
    )
    expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible()
    texts = prompts.all_text_contents()  # not innerText: cells scrolled out of view have none
    assert all(re.fullmatch(r"\[\d+\]:", text.strip()) for text in texts), texts
    page.screenshot(path=lab.screenshots / "2-after-run-all.png")
    # An error or a stderr stream would show as a stderr output; the practice copy has none.
    unexpected = _notebook(page).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert unexpected.count() == 0, unexpected.all_text_contents()[:3]
    # Each exercise's check cell (`checks.ex01(...)`) shows one verdict, as Markdown.
    verdicts = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')]
              .filter(cell => /checks\\.ex\\d+\\(/.test(cell.querySelector('.cm-content')?.textContent ?? ''))
              .map(cell => [...cell.querySelectorAll('.jp-OutputArea-output')].map(out => out.dataset.mimeType))"""
    )
    assert verdicts == [["text/markdown"]] * 3, verdicts
    if lab.edition.language == "en":
        verdicts = _notebook(page).locator(".jp-OutputArea-output", has_text="not attempted yet")
        assert verdicts.count() == 3, "each of the 3 exercise checks says it has not been attempted"


def test_a_wrong_then_a_right_quiz_answer(lab: Lab, page: Page) -> None:
    quiz_file = lab.course / lab.edition.quizzes / "ch01_core_mechanics.toml"
    question = tomllib.loads(quiz_file.read_text(encoding="utf-8"))["question"][0]
    wrong = next(letter for letter in question["choices"] if letter != question["answer"])
    hint = _plain(question["hint"].strip())  # Markdown: `code` shows as code
    explained = _plain(question["explanation"].split(lab.edition.colon)[0])
    # Locators are evaluated lazily, and typing changes the cell's text: find the cells by position.
    cells = _notebook(page).locator(".jp-Cell")
    position = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')]
              .findIndex(cell => cell.querySelector('.cm-content')?.textContent === 'answer_q01 = ...')"""
    )
    assert position >= 0, "no answer cell `answer_q01 = ...` in the learner's copy"
    answer_cell, check_cell = cells.nth(position), cells.nth(position + 1)
    # The English edition's verdict words; the Chinese edition's are its quiz file's hint and explanation.
    english = lab.edition.language == "en"
    for letter, expected in (
        (wrong, "Not yet." if english else hint),
        (question["answer"], "Right!" if english else explained),
    ):
        answer_cell.scroll_into_view_if_needed()
        answer_cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.type(f'answer_q01 = "{letter}"')
        page.keyboard.press("Shift+Enter")  # run the answer cell, move to the check cell
        page.keyboard.press("Shift+Enter")  # run the check cell
        output = check_cell.locator(".jp-OutputArea-output")
        expect(output).to_contain_text(expected)
        check_cell.scroll_into_view_if_needed()
        page.screenshot(path=lab.screenshots / f"3-quiz-{'right' if letter == question['answer'] else 'wrong'}.png")
        text = output.inner_text()
        if letter == wrong:
            if english:
                assert f"{wrong} is not right. Hint:" in text, text
            assert hint in text, text
            first_sentence = _plain(question["explanation"].split(lab.edition.full_stop)[0])
            assert first_sentence not in text, "the hint gave the explanation away"
            assert "Traceback" not in text
            assert "_quiz.py" not in text
            assert len(text.splitlines()) <= 3, text
        else:
            assert explained in text, text


def test_the_terminal_and_the_course_files_stay_clean(lab: Lab, page: Page) -> None:
    lines = lab.log.read_text(encoding="utf-8", errors="replace").splitlines()
    alarming = [
        number
        for number, line in enumerate(lines)
        if re.match(r"\[[WE] ", line)
        or any(
            phrase in line
            for phrase in ("not trusted", "eavesdropping", "Skipped non-installed", "websocket_ping", "Traceback")
        )
    ]
    # Each alarming line with the two before it (what a traceback was printed for, such as "Exception
    # in thread") and what follows it, up to the next line the server logs (a traceback's frames
    # and its error are the lines that say what went wrong).
    shown = []
    for number in alarming:
        end = next((n for n in range(number + 1, len(lines)) if lines[n].startswith("[")), len(lines))
        shown.append("\n".join(lines[max(number - 2, 0) : min(end, number + 60)]))
    assert not alarming, "\n---\n".join(shown)
    # Opening and running a notebook wrote nothing into the course (either edition's notebooks and
    # quiz files), and no jupytext twin anywhere.
    for part in ("notebooks", "quizzes"):
        for path in sorted((ROOT / part).rglob("*")):
            if path.is_file():
                name = path.relative_to(ROOT)
                assert (lab.course / name).read_bytes() == path.read_bytes(), f"{name} changed"
    assert not list(lab.folder.glob("*.py")), "a jupytext twin appeared in the learner's folder"
