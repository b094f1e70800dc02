"""Every learner gets a row, always: whatever a submission holds, the batch writes its gradebook.

Each case comes from a hostile review, where it either broke the whole batch, zeroed a whole
notebook for one odd cell, or graded what the learner had not written (a link to the master).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from bgcourse.instructor._grade import grade_assignment, protected_folders
from bgcourse.instructor._gradebook import write_gradebook
from bgcourse.instructor._isolation import TRUSTED, Isolation
from bgcourse.instructor._nbgrader import grade_id
from bgcourse.instructor._sandbox import Limits
from bgcourse.instructor._submissions import load_assignment, read_submission
from bgcourse.instructor._text import CUT, MAX_REASON_CHARS, shown_name

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "ch01_core_mechanics"
NOTEBOOK = f"{CHAPTER}.ipynb"
NON_UTF8 = os.fsdecode(b"l\xe9arner")  # a folder name that is not UTF-8, as os.listdir gives it
LINK = "a symbolic link is not graded: hand in the notebook file itself."
KILLED = (
    "Not graded: the grading process stopped (killed by signal 9) while running the code of this notebook: "
    "does your code end its parent process (os.kill, os.getppid)?"
)
Notebook = Any


def cell(notebook: Notebook, cell_id: str) -> Any:
    return next(each for each in notebook.cells if grade_id(each) == cell_id)


def save(folder: Path, notebook: Notebook, name: str = NOTEBOOK) -> Path:
    """Write ``notebook`` as JSON with ASCII escapes: that way a lone surrogate survives into the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(notebook), encoding="ascii")
    return path


def make_submissions(folder: Path, answered: Callable[..., Notebook]) -> None:
    folder.mkdir(parents=True)
    surrogates = answered()
    cell(surrogates, "ex01_answer").source += "\n# a lone surrogate: \ud800"
    cell(surrogates, "q01_answer").source += "  # and another \udcff"
    save(folder / "surrogates", surrogates)

    # A folder and a notebook name that are not UTF-8: the notebook is found by its cells.
    (folder / NON_UTF8).mkdir()
    save(folder / NON_UTF8, answered(), os.fsdecode(b"Untitled \xff.ipynb"))

    kills = answered()
    cell(kills, "ex02_answer").source = "import os\nos.kill(os.getppid(), 9)"
    save(folder / "kills_its_parent", kills)

    odd = answered()
    cell(odd, "q01_answer").source = 'answer_q01 = b"B"'
    cell(odd, "q02_answer").source = 'answer_q02 = ("B",)'
    cell(odd, "q03_answer").source = "answer_q03 = 1e999"
    cell(odd, "q04_answer").source = 'answer_q04 = f"B"'
    cell(odd, "q05_answer").source = "answer_q05 = ("
    save(folder / "odd_literals", odd)

    long = answered()
    cell(long, "q01_answer").source = "answer_q01 = '" + "Z" * 50_000 + "'"
    cell(long, "q02_answer").source = "answer_q02 = '" + "B" * 200_000 + "'"
    cell(long, "ex01_answer").source = "raise ValueError('x' * 50_000_000)"
    save(folder / "long_texts", long)

    damaged = answered()
    cell(damaged, "q01_answer").metadata.nbgrader["grade_id"] = 5
    cell(damaged, "q02_answer").metadata["nbgrader"] = "x"
    cell(damaged, "q03").metadata.nbgrader["points"] = "two"
    cell(damaged, "q04_answer")["metadata"] = []
    save(folder / "damaged_metadata", damaged)

    (folder / "notebook_link").mkdir()
    (folder / "notebook_link" / NOTEBOOK).symlink_to(ROOT / "notebooks" / NOTEBOOK)
    (folder / "folder_link").symlink_to("/")
    save(folder / ".dotted", answered())

    many = answered()
    wrong_copy = json.loads(json.dumps(cell(many, "q01_answer")))
    wrong_copy["source"] = 'answer_q01 = "C"'
    plain: dict[str, Any] = {
        "cell_type": "code",
        "metadata": {},
        "source": "x = 1",
        "outputs": [],
        "execution_count": None,
    }
    many.cells += [wrong_copy] * 3_000 + [plain] * 3_000
    save(folder / "many_cells", many)

    (folder / "fifo").mkdir()
    os.mkfifo(folder / "fifo" / NOTEBOOK)  # reading it would block the grader forever
    (folder / "too_big").mkdir()
    with (folder / "too_big" / NOTEBOOK).open("wb") as stream:
        stream.truncate(21 * 2**20)  # sparse: 21 MB that take no room


@pytest.fixture(scope="module")
def book(
    tmp_path_factory: pytest.TempPathFactory, answered: Callable[..., Notebook], grading_isolation: Isolation
) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    make_submissions(folder / "submissions", answered)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(folder))  # the workers' folders: removed again, checked below
        results = grade_assignment(
            ROOT, folder / "submissions", CHAPTER, limits=Limits(cell_timeout=30), workers=2, progress=False,
            protected=protected_folders(ROOT, folder / "submissions", folder / "gradebook"),
            isolation=grading_isolation,
        )  # fmt: skip
    write_gradebook(folder / "gradebook", load_assignment(ROOT, CHAPTER), results, isolation=grading_isolation.mode)
    assert sorted(path.name for path in folder.iterdir()) == ["gradebook", "submissions"], "a worker's folder is left"
    return folder / "gradebook"


def rows(book: Path) -> dict[str, dict[str, str]]:
    with (book / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        return {row["learner"]: row for row in csv.DictReader(stream)}


def results(book: Path, learner: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((book / "learners" / learner / "results.json").read_text(encoding="utf-8"))
    return document


def reasons(book: Path, learner: str) -> dict[str, tuple[float, str]]:
    return {test["name"]: (test["score"], test["output"]) for test in results(book, learner)["tests"]}


def test_every_folder_gets_a_row(book: Path) -> None:
    assert sorted(rows(book)) == sorted(
        [".dotted", "damaged_metadata", "fifo", "folder_link", "kills_its_parent", "l\\xe9arner", "long_texts",
         "many_cells", "notebook_link", "odd_literals", "surrogates", "too_big"]
    )  # fmt: skip
    assert rows(book)[".dotted"]["total"] == "13", "a dot-folder is a learner like any other"


def test_lone_surrogates_are_replaced_and_the_answers_graded(book: Path) -> None:
    assert rows(book)["surrogates"]["total"] == "13"
    assert reasons(book, "surrogates")["ex01"] == (2, "Passed.")
    assert (
        "Your answer cell ex01_answer held characters that are not valid text (lone surrogates): "
        "each was replaced by U+FFFD (\ufffd) before grading."
    ) in results(book, "surrogates")["output"]


def test_a_name_that_is_not_utf8_is_shown_escaped(book: Path) -> None:
    assert shown_name(NON_UTF8) == "l\\xe9arner"
    assert shown_name("a\\xe9") == "a\\\\xe9", "a real backslash is doubled: no two folders share a name"
    row = rows(book)["l\\xe9arner"]
    assert (row["total"], row["problem"]) == ("13", "")
    feedback = (book / "learners" / "l\\xe9arner" / "feedback.md").read_text(encoding="utf-8")
    assert feedback.startswith(f"# {CHAPTER}: feedback for l\\xe9arner")
    assert f"Graded Untitled \\xff.ipynb: please hand in this notebook as {NOTEBOOK} next time." in feedback


def test_code_that_kills_its_parent_costs_only_the_code_items(book: Path, grading_isolation: Isolation) -> None:
    row, got = rows(book)["kills_its_parent"], reasons(book, "kills_its_parent")
    scores = [row[item] for item in ("ex01", "ex02", "ex03", "q01", "q02", "q03", "q04", "q05", "q06")]
    if grading_isolation.sandboxed:
        # In the sandbox the kernel's parent is the sandbox's own first process, which a signal from
        # inside cannot kill: nothing is lost but the answer that was replaced.
        assert scores == ["2", "0", "2", "1", "1", "1", "1", "1", "2"]
        assert got["ex02"] == (0, "The check failed: NameError: name 'audit_log' is not defined")
        return
    assert scores == ["0", "0", "0", "1", "1", "1", "1", "1", "0"]
    assert got["ex02"] == (0, KILLED)
    assert got["q06"] == (0, KILLED)


def test_without_a_sandbox_a_killed_worker_costs_only_the_code_items(
    tmp_path: Path, answered: Callable[..., Notebook]
) -> None:
    """--trusted-cohort: the kernel's parent is the grading worker, and the kill reaches it."""
    kills = answered()
    cell(kills, "ex02_answer").source = "import os\nos.kill(os.getppid(), 9)"
    save(tmp_path / "submissions" / "kills_its_parent", kills)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path))
        [result] = grade_assignment(
            ROOT, tmp_path / "submissions", CHAPTER, limits=Limits(cell_timeout=30), workers=2, progress=False,
            protected=protected_folders(ROOT, tmp_path / "submissions"), isolation=Isolation(TRUSTED),
        )  # fmt: skip
    scores = {item.grade_id: (item.score, item.feedback) for item in result.items}
    assert [scores[item][0] for item in ("ex01", "ex02", "ex03", "q01", "q06")] == [0, 0, 0, 1, 0]
    assert scores["ex02"] == (0, KILLED)


def test_odd_literals_cost_only_their_item(book: Path) -> None:
    row, got = rows(book)["odd_literals"], reasons(book, "odd_literals")
    assert (row["total"], row["ex01"], row["q06"]) == ("8", "2", "2")
    assert got["q01"] == (0, 'answer_q01 must be a letter in quotes, such as "B", not b"B".')
    assert got["q02"] == (0, 'answer_q02 must be a letter in quotes, such as "B", not ("B",).')
    assert got["q03"] == (0, 'answer_q03 must be a letter in quotes, such as "B", not 1e999.')
    assert got["q04"] == (0, 'answer_q04 must be a letter in quotes, such as "B", not f"B".')
    assert got["q05"] == (0, "Your answer cell for q05 is not valid Python ('(' was never closed, line 1).")


def test_long_texts_are_capped(book: Path) -> None:
    row, got = rows(book)["long_texts"], reasons(book, "long_texts")
    assert (row["total"], row["ex01"], row["q01"], row["q02"]) == ("9", "0", "0", "0")
    score, quoted = got["q01"]
    assert score == 0
    assert quoted.startswith("Question q01: 'ZZZ")
    assert f"ZZZ{CUT} Explanation: The task runs in the same process" in quoted
    assert len(quoted) < MAX_REASON_CHARS
    assert got["q02"] == (
        0,
        "Your answer cell q02_answer is 200,015 characters long, over the limit of 100,000 for one cell: "
        "it was not graded.",
    )
    assert got["ex01"][1].startswith("Your answer cell raised ValueError: xxx")
    assert len(got["ex01"][1]) <= 800, "what the kernel sent was cut before it reached the grader"
    assert (book / "learners" / "long_texts" / "feedback.md").stat().st_size < 20_000


def test_damaged_metadata_costs_only_that_cell(book: Path) -> None:
    row, got = rows(book)["damaged_metadata"], reasons(book, "damaged_metadata")
    assert [row[item] for item in ("q01", "q02", "q03", "q04", "q05", "total")] == ["0", "0", "1", "0", "1", "10"]
    assert got["q01"] == (
        0,
        "Your notebook has no answer cell for q01 (cell q01_answer was deleted?). A cell of your notebook could "
        "not be matched to any question (its grade_id is 5, not text): was its nbgrader metadata edited? Copy "
        "your answer into a fresh copy of the notebook.",
    )
    notes = results(book, "damaged_metadata")["output"]
    assert "A cell's nbgrader metadata is damaged (its grade_id is 5, not text): it was not graded." in notes


@pytest.mark.parametrize(
    ("learner", "problem"),
    [
        ("notebook_link", f"{NOTEBOOK} is a symbolic link, and {LINK}"),
        ("folder_link", f"Your submission folder is a symbolic link, and {LINK}"),
        ("fifo", f"{NOTEBOOK} is not a regular file: hand in the notebook file itself"),
        ("too_big", f"{NOTEBOOK} is 21 MB, over the 20 MB limit for a notebook"),
    ],
)
def test_what_is_not_a_notebook_file_gets_a_row_with_the_reason(book: Path, learner: str, problem: str) -> None:
    row = rows(book)[learner]
    assert (row["total"], row["problem"]) == ("0", problem)
    assert {text for _, text in reasons(book, learner).values()} == {problem}


def test_thousands_of_cells_are_graded_with_bounded_notes(book: Path) -> None:
    assert rows(book)["many_cells"]["total"] == "13", "the first copy of q01_answer counts"
    notes = results(book, "many_cells")["output"].splitlines()
    assert "- Cell q01_answer appears more than once; the first copy was graded." in notes
    assert len(notes) < 10


def test_reading_counts_toward_the_deadline(tmp_path: Path, answered: Callable[..., Notebook]) -> None:
    save(tmp_path, answered())
    late = read_submission("someone", tmp_path, load_assignment(ROOT, CHAPTER), until=time.monotonic() - 1)
    assert late.problem == "Reading your submission took longer than this notebook's grading deadline."
    assert late.answers == {}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_grader_leaves_no_process_behind(
    tmp_path: Path, answered: Callable[..., Notebook], signum: signal.Signals, grading_isolation: Isolation
) -> None:
    sleeper = answered()
    cell(sleeper, "ex01_answer").source = "import subprocess, sys, time\n" + (
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\ntime.sleep(3600)"
    )
    save(tmp_path / "submissions" / "sleeper", sleeper)
    # The temporary folder is tmp_path itself: the kernel's socket paths, under it, must stay short.
    grader = subprocess.Popen(
        [sys.executable, "-m", "bgcourse", "--course", str(ROOT), "grade", str(tmp_path / "submissions"),
         "--no-progress", "--timeout", "3600", "--deadline", "7200",
         *([] if grading_isolation.sandboxed else ["--trusted-cohort"])],
        env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        watched = psutil.Process(grader.pid)
        started_by_the_kernel = _wait_for(lambda: _sleeping_children(watched), seconds=180)
        assert started_by_the_kernel, "the kernel never started the learner's process"
        descendants = watched.children(recursive=True)
        grader.send_signal(signum)
        grader.wait(timeout=60)
        _, alive = psutil.wait_procs(descendants, timeout=60)
        assert not alive, f"left behind: {[process.cmdline() for process in alive]}"
        emptied = _wait_for(lambda: {path.name for path in tmp_path.iterdir()} <= {"submissions"}, seconds=60)
        assert emptied, f"left behind: {sorted(tmp_path.iterdir())}"
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()


def _sleeping_children(grader: psutil.Process) -> list[psutil.Process]:
    """The learner's process: a Python child of the kernel that sleeps for an hour."""
    found = []
    for process in grader.children(recursive=True):
        try:
            if "time.sleep(3600)" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _wait_for(condition: Callable[[], object], seconds: float) -> object:
    """Poll ``condition`` until it holds or ``seconds`` have passed; return its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value
