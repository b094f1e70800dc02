"""`make lab`'s learner folder: made from the practice release, updated as the course changes, never losing an edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from bgcourse.helpers._feedback import COPY_MARKER, copy_mode
from bgcourse.helpers._language import current_language
from bgcourse.helpers._quiz import find_quiz_file
from bgcourse.lab._lab import FIRST_CHAPTER, lab_arguments, prepare_lab
from bgcourse.lab._workspace import UPDATED_SUFFIX, prepare_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def course(tmp_path: Path) -> Path:
    copy = tmp_path / "course"
    shutil.copytree(ROOT / "quizzes", copy / "quizzes")
    (copy / "notebooks").mkdir()
    for slug in ("ch01_core_mechanics", "ch02_registration"):
        shutil.copy(ROOT / "notebooks" / f"{slug}.ipynb", copy / "notebooks")
    return copy


def change_chapter(course: Path, slug: str, text: str) -> None:
    """The course changes: a new markdown cell at the end of a chapter."""
    path = course / "notebooks" / f"{slug}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell(text, id=f"new-{len(notebook.cells)}"))
    nbformat.write(notebook, path)


def edit(path: Path) -> bytes:
    """The learner changes their copy."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].source += "\n\nMy own note."
    nbformat.write(notebook, path)
    return path.read_bytes()


def test_the_first_run_copies_every_practice_chapter_and_marks_the_folder(course: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-course"
    report = prepare_workspace(course, folder)
    assert report.created == ["ch01_core_mechanics.ipynb", "ch02_registration.ipynb"]
    assert sorted(path.name for path in folder.iterdir()) == [COPY_MARKER, *report.created]
    assert copy_mode(folder) == "practice"
    notebook = nbformat.read(folder / "ch01_core_mechanics.ipynb", as_version=4)
    assert "answer_q01 = ..." in [cell.source for cell in notebook.cells], "the practice copy, not the master"
    assert notebook.metadata.language_info["name"] == "python"
    assert report.lines() == [f"Copied ch01_core_mechanics.ipynb, ch02_registration.ipynb into {folder}."]
    assert prepare_workspace(course, folder).lines() == [], "a second run finds everything current"


def test_a_course_change_replaces_an_untouched_copy_and_is_offered_beside_an_edited_one(
    course: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "my-course"
    prepare_workspace(course, folder)
    mine = edit(folder / "ch01_core_mechanics.ipynb")
    change_chapter(course, "ch01_core_mechanics", "New in chapter 1.")
    change_chapter(course, "ch02_registration", "New in chapter 2.")
    report = prepare_workspace(course, folder)
    assert report.refreshed == ["ch02_registration.ipynb"]
    assert "New in chapter 2." in (folder / "ch02_registration.ipynb").read_text(encoding="utf-8")
    assert report.offered == ["ch01_core_mechanics.ipynb"]
    assert (folder / "ch01_core_mechanics.ipynb").read_bytes() == mine, "the learner's edit is never overwritten"
    beside = folder / f"ch01_core_mechanics{UPDATED_SUFFIX}"
    assert "New in chapter 1." in beside.read_text(encoding="utf-8")
    assert any("which you have edited: your copy is untouched" in line for line in report.lines())
    # Offered once: the next run leaves both files alone and says nothing.
    assert prepare_workspace(course, folder).lines() == []
    assert (folder / "ch01_core_mechanics.ipynb").read_bytes() == mine


def test_an_edited_offered_copy_is_kept_too(course: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-course"
    prepare_workspace(course, folder)
    edit(folder / "ch01_core_mechanics.ipynb")
    change_chapter(course, "ch01_core_mechanics", "First change.")
    prepare_workspace(course, folder)
    offered = edit(folder / f"ch01_core_mechanics{UPDATED_SUFFIX}")
    change_chapter(course, "ch01_core_mechanics", "Second change.")
    report = prepare_workspace(course, folder)
    assert report.blocked == [f"ch01_core_mechanics{UPDATED_SUFFIX}"]
    assert (folder / f"ch01_core_mechanics{UPDATED_SUFFIX}").read_bytes() == offered
    assert any("move it away" in line for line in report.lines())


def test_new_and_deleted_chapters_are_copied(course: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-course"
    prepare_workspace(course, folder)
    (folder / "ch02_registration.ipynb").unlink()
    shutil.copy(ROOT / "notebooks" / "ch03_db_compensation.ipynb", course / "notebooks")
    report = prepare_workspace(course, folder)
    assert report.restored == ["ch02_registration.ipynb"]
    assert report.created == ["ch03_db_compensation.ipynb"]


def test_a_lost_record_never_costs_an_edit(course: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-course"
    prepare_workspace(course, folder)
    mine = edit(folder / "ch01_core_mechanics.ipynb")
    (folder / COPY_MARKER).write_text("{ not json", encoding="utf-8")
    report = prepare_workspace(course, folder)
    assert (folder / "ch01_core_mechanics.ipynb").read_bytes() == mine
    assert report.offered == ["ch01_core_mechanics.ipynb"]
    assert json.loads((folder / COPY_MARKER).read_text(encoding="utf-8"))["mode"] == "practice"


def test_the_lab_serves_the_learners_folder_on_chapter_1_without_jupytext(course: Path) -> None:
    folder, said = prepare_lab(course)
    assert folder == course / "my-course"
    assert said[0].startswith("Copied ch01_core_mechanics.ipynb")
    arguments = lab_arguments(course, folder, extra=["--no-browser"])
    assert arguments[1] == "lab"
    assert f"--ServerApp.root_dir={folder}" in arguments
    assert f"--LabApp.default_url=/lab/tree/{FIRST_CHAPTER}" in arguments
    assert arguments[-1] == "--no-browser"
    settings = folder / ".jupyter"
    server = json.loads((settings / "jupyter_server_config.json").read_text(encoding="utf-8"))
    assert server["ServerApp"]["jpserver_extensions"] == {"jupyterlab_jupytext": False}
    assert server["LanguageServerManager"] == {"autodetect": False}
    page = json.loads((settings / "lab" / "page_config.json").read_text(encoding="utf-8"))
    assert page["disabledExtensions"] == ["jupyterlab-jupytext"]
    overrides = json.loads((settings / "lab" / "overrides.json").read_text(encoding="utf-8"))
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert (settings / "nbsignatures.db").is_file(), "the copies are signed: JupyterLab trusts them"


def test_the_chinese_edition_gets_a_copy_of_its_own_that_reads_its_own_quizzes(
    course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (course / "notebooks" / "zh-CN").mkdir()
    for suffix in (".ipynb", ".py"):
        shutil.copy(ROOT / "notebooks" / "zh-CN" / f"ch01_core_mechanics{suffix}", course / "notebooks" / "zh-CN")
    folder, said = prepare_lab(course, language="zh-CN")
    assert folder == course / "my-course-zh-CN"
    assert said == [f"Copied ch01_core_mechanics.ipynb into {folder}."]
    assert copy_mode(folder) == "practice"
    assert current_language(folder) == "zh-CN"
    notebook = nbformat.read(folder / "ch01_core_mechanics.ipynb", as_version=4)
    assert notebook.cells[1].source.startswith("> **你的练习副本。**"), "the banner in the learner's language"
    monkeypatch.chdir(folder)  # as a notebook's kernel runs
    assert find_quiz_file("ch01_core_mechanics") == course / "quizzes" / "zh-CN" / "ch01_core_mechanics.toml"
    assert not (course / "my-course").exists(), "the English copy is not touched"
