"""The learner's path, in a real browser: `make lab`'s JupyterLab, chapter 1 of their own copy.

JupyterLab is started the way `make lab` starts it (`bgcourse lab`), on a copy of the course in
`tmp_path`, and opened through the link it prints, in headless Chromium (Debian's `chromium`,
driven by Playwright without a browser download of its own). The tests then do what a newcomer
does: look at the first screen, Run All, answer a quiz question wrongly and then rightly. The
screenshots of each step are kept: in `$BROWSER_ARTIFACTS` if set, else in the test's tmp folder.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.browser


@dataclass
class Lab:
    link: str
    log: Path
    course: Path
    screenshots: Path

    @property
    def folder(self) -> Path:
        return self.course / LEARNER_FOLDER


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    home = tmp_path_factory.mktemp("learner")
    course = home / "course"
    for part in ("notebooks", "quizzes"):
        shutil.copytree(ROOT / part, course / part)
    screenshots = Path(os.environ.get("BROWSER_ARTIFACTS") or home / "screenshots")
    screenshots.mkdir(parents=True, exist_ok=True)
    # The learner's Jupyter: settings, workspaces and runtime files in this test's folder, not ~.
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter")}
    env.update(JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    env.update(JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), MPLCONFIGDIR=str(home / "mpl"))
    log = home / "lab.log"
    bgcourse = Path(sys.executable).with_name("bgcourse")
    command = [str(bgcourse), "--course", str(course), "lab", "--no-browser", f"--port={_free_port()}"]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        deadline = time.monotonic() + 120
        while not (found := LINK.search(log.read_text(encoding="utf-8", errors="replace"))):
            assert server.poll() is None, f"bgcourse lab exited with {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no link to chapter 1 printed:\n{log.read_text()}"
            time.sleep(0.1)
        yield Lab(found.group(0), log, course, screenshots)
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


def test_the_printed_link_opens_chapter_1_of_the_learners_copy(lab: Lab, page: Page) -> None:
    notebook = _notebook(page)
    expect(notebook).to_contain_text("Chapter 1: Core mechanics")
    expect(notebook).to_contain_text("Your practice copy.")
    expect(page.locator('.lm-TabBar-tab.jp-mod-current[data-type="document-title"]')).to_contain_text(FIRST_CHAPTER)
    expect(page.locator(".jp-StatusBar-TextItem", has_text="Idle").first).to_be_visible()
    page.screenshot(path=lab.screenshots / "1-first-screen.png")
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
    code_cells = _notebook(page).locator(".jp-CodeCell").count()
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
    verdicts = _notebook(page).locator(".jp-OutputArea-output", has_text="not attempted yet")
    assert verdicts.count() == 3, "each of the 3 exercise checks says it has not been attempted"


def test_a_wrong_then_a_right_quiz_answer(lab: Lab, page: Page) -> None:
    question = tomllib.loads((lab.course / "quizzes" / "ch01_core_mechanics.toml").read_text())["question"][0]
    wrong = next(letter for letter in question["choices"] if letter != question["answer"])
    # Locators are evaluated lazily, and typing changes the cell's text: find the cells by position.
    cells = _notebook(page).locator(".jp-Cell")
    position = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')]
              .findIndex(cell => cell.querySelector('.cm-content')?.textContent === 'answer_q01 = ...')"""
    )
    assert position >= 0, "no answer cell `answer_q01 = ...` in the learner's copy"
    answer_cell, check_cell = cells.nth(position), cells.nth(position + 1)
    for letter, expected in ((wrong, "Not yet."), (question["answer"], "Right!")):
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
            assert f"{wrong} is not right. Hint:" in text, text
            assert question["hint"].replace("`", "") in text, text  # Markdown: `code` shows as code
            assert question["explanation"].split(".")[0] not in text, "the hint gave the explanation away"
            assert "Traceback" not in text
            assert "_quiz.py" not in text
            assert len(text.splitlines()) <= 3, text
        else:
            assert question["explanation"].split(":")[0] in text


def test_the_terminal_and_the_course_files_stay_clean(lab: Lab, page: Page) -> None:
    terminal = lab.log.read_text(encoding="utf-8", errors="replace")
    alarming = [
        line
        for line in terminal.splitlines()
        if re.match(r"\[[WE] ", line)
        or any(
            phrase in line
            for phrase in ("not trusted", "eavesdropping", "Skipped non-installed", "websocket_ping", "Traceback")
        )
    ]
    assert not alarming, "\n".join(alarming)
    # Opening and running a notebook wrote nothing into the course, and no jupytext twin anywhere.
    for part in ("notebooks", "quizzes"):
        for path in (ROOT / part).iterdir():
            if path.is_file():
                assert (lab.course / part / path.name).read_bytes() == path.read_bytes(), f"{part}/{path.name} changed"
    assert not list(lab.folder.glob("*.py")), "a jupytext twin appeared in the learner's folder"
