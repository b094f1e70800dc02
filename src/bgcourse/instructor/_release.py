"""`bgcourse release`: the learners' copies of the chapter notebooks and quiz files.

The instructors' notebooks (``notebooks/chNN_topic.ipynb``) hold the reference solutions and the
quiz answers. A release replaces every solution region by a stub, removes hidden tests, clears
outputs and records nbgrader checksums, in two modes:

- ``practice``: the full quiz files, so the check cells give instant feedback;
- ``assessed``: quiz files without answers, explanations or checks, so a check cell only says
  that the answer has the right form and was recorded; feedback comes with the grade.

Each edition in another language (``notebooks/zh-CN/``, ``quizzes/zh-CN/``; see
``bgcourse.editions``) is released the same way into a folder of its own, ``release/zh-CN/``,
whose copies say their language in ``.course-copy.json``.

Output is deterministic (sorted keys, no dates), so a test can regenerate it and compare bytes.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from bgcourse.editions._editions import EDITIONS
from bgcourse.helpers._feedback import COPY_MARKER
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language
from bgcourse.helpers._language import ENGLISH
from bgcourse.helpers._quiz import Quiz, load_quiz
from bgcourse.instructor._files import replaced_directory, write_atomic
from bgcourse.instructor._nbgrader import (
    CODE_STUB,
    ReleaseError,
    compute_checksum,
    grade_id,
    is_grade,
    is_locked,
    student_cell,
)
from bgcourse.instructor._quiz_release import assessed_quiz_text

__all__ = [
    "MODES",
    "Chapter",
    "ReleaseError",
    "build_release",
    "chapters",
    "copy_marker",
    "find_course",
    "languages",
    "practice_stub",
    "release_files",
    "release_tree",
    "stale_files",
]

MODES = ("practice", "assessed")
MANIFEST = "checksums.json"
# Cell metadata that only jupytext's pairing uses; a learner's copy is not paired with a script.
_JUPYTEXT_CELL_KEYS = ("lines_to_next_cell", "cell_marker")
_BANNER = {
    "practice": (
        "> **Your practice copy.** Each exercise and quiz question has a cell for your answer (replace "
        "the `...`) and a check cell below it that says at once whether it is right, with a hint if not. "
        "Nothing here stops *Run All*: a check you have not attempted yet just says so."
    ),
    "assessed": (
        "> **Assessed copy.** Quiz answers are recorded, not marked: a quiz check cell only says that "
        "your answer has the right form. The exercise check cells run their visible tests. Your "
        "score and feedback come after grading. Hand in this notebook under its own file name."
    ),
}


_BANNER_ZH = {
    "practice": (
        "> **你的练习副本。** 每道练习和测验题都有一个作答单元格（把 `...` 换成你的答案），下面的检查单元格"
        "会立刻告诉你是否正确，不对时给出提示。这里没有任何单元格会中断 *Run All*：还没作答的检查只会如实说明。"
    ),
    "assessed": (
        "> **考核副本。** 测验答案只记录、不评判：测验的检查单元格只确认答案的格式正确。练习的检查单元格照常运行。"
        "分数和反馈在评分之后给出。提交时请保留本 notebook 的文件名。"
    ),
}
_BANNERS = {"en": _BANNER, "zh-CN": _BANNER_ZH}


@dataclass(frozen=True)
class Chapter:
    """One chapter: its slug, master notebook and quiz file (``None`` if it has no quiz), and its language."""

    slug: str
    notebook: Path
    quiz: Path | None
    language: str = "en"

    @property
    def prefix(self) -> str:
        """Where its copies go in the release: ``""`` for English, ``"zh-CN/"`` for an edition."""
        return "" if self.language == "en" else f"{self.language}/"


def find_course(start: Path | None = None) -> Path:
    """The course folder: the first of ``start`` (or the cwd) and its parents with notebooks/ and quizzes/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (folder / "notebooks").is_dir() and (folder / "quizzes").is_dir():
            return folder
    raise FileNotFoundError(f"no course folder (with notebooks/ and quizzes/) at or above {here}; pass --course")


def chapters(course: Path, slugs: Sequence[str] = (), language: str = "en") -> list[Chapter]:
    """Every ``notebooks/ch*.ipynb`` of the course (an edition's: ``notebooks/<language>/``), or the ones named."""
    where = "" if language == "en" else f"/{language}"
    found = {path.stem: path for path in sorted((course / f"notebooks{where}").glob("ch*.ipynb"))}
    wanted = [Path(slug).stem for slug in slugs] or list(found)
    unknown = [slug for slug in wanted if slug not in found]
    if unknown:
        raise ReleaseError(f"no notebooks{where}/{unknown[0]}.ipynb in {course}; the chapters are {', '.join(found)}")
    quiz_folder = course / f"quizzes{where}"
    return [
        Chapter(
            slug, found[slug], quiz_folder / f"{slug}.toml" if (quiz_folder / f"{slug}.toml").is_file() else None,
            language,
        )
        for slug in wanted
    ]  # fmt: skip


def languages(course: Path) -> list[str]:
    """English, and each edition that the course has."""
    return ["en", *(language for language in EDITIONS if (course / "notebooks" / language).is_dir())]


def read_master(chapter: Chapter) -> tuple[nbformat.NotebookNode, Quiz | None]:
    master: nbformat.NotebookNode = nbformat.read(chapter.notebook, as_version=4)
    return master, (load_quiz(chapter.quiz) if chapter.quiz else None)


def student_notebook(chapter: Chapter, master: nbformat.NotebookNode, quiz: Quiz | None, mode: str) -> Any:
    """The learner's copy of ``master``, as nbgrader's ``generate_assignment`` would make it, plus a banner."""
    notebook = copy.deepcopy(master)
    notebook.metadata.pop("jupytext", None)
    choice_ids = {question.id for question in quiz.questions if question.kind == "choice"} if quiz else set()
    checks = {grade_id(cell): cell.source for cell in notebook.cells if is_grade(cell)}
    for index, cell in enumerate(notebook.cells):
        for key in _JUPYTEXT_CELL_KEYS:
            cell.metadata.pop(key, None)
        cell_id = grade_id(cell) or f"#{index}"
        owner = cell_id.removesuffix("_answer")
        if owner in choice_ids and cell_id.endswith("_answer"):
            stub = f"answer_{owner} = ..."
        elif mode == "practice" and cell.cell_type == "code" and owner in checks:
            stub = practice_stub(cell.source, checks[owner], chapter.language)
        else:
            stub = CODE_STUB
        student_cell(cell, stub, f"{chapter.notebook.name}, cell {cell_id}")
    banner = nbformat.v4.new_markdown_cell(_BANNERS[chapter.language][mode], id=f"bgcourse-{mode}-copy")
    notebook.cells.insert(1 if notebook.cells else 0, banner)
    nbformat.validate(notebook)
    return notebook


def practice_stub(solution: str, check: str, language: str = ENGLISH) -> str:
    """The practice copy's stub: ``name = ...`` for each name the check uses that the solution defines.

    Unlike nbgrader's ``raise NotImplementedError()``, it lets Run All go on: the check cell below
    sees the ``...`` and says "not attempted yet" instead of failing. Its comment is in ``language``.
    """
    defined = _defined_names(solution)
    used = [name for name in _loaded_names(check) if name in defined]
    with in_language(language):
        lines = [_("# YOUR CODE HERE: replace each ... with your own code (as many lines as you need).")]
    return "\n".join([*lines, *(f"{name} = ..." for name in used)])


def _defined_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def _loaded_names(source: str) -> list[str]:
    loaded = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)]
    return list(dict.fromkeys(node.id for node in sorted(loaded, key=lambda n: (n.lineno, n.col_offset))))


def _notebook_bytes(notebook: Any) -> bytes:
    return (str(nbformat.writes(notebook)) + "\n").encode("utf-8")


def _cell_checksums(notebook: Any) -> dict[str, dict[str, object]]:
    cells: dict[str, dict[str, object]] = {}
    for cell in notebook.cells:
        cell_id = grade_id(cell)
        if cell_id and "checksum" in cell.metadata.get("nbgrader", {}):
            entry: dict[str, object] = {"cell_type": cell.cell_type, "checksum": compute_checksum(cell)}
            entry["role"] = "grade" if is_grade(cell) else "locked" if is_locked(cell) else "solution"
            if is_grade(cell):
                entry["points"] = float(cell.metadata.nbgrader["points"])
            cells[cell_id] = entry
    return cells


def release_files(course: Path, slugs: Sequence[str] = ()) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every released file (relative path to bytes) of the chapters, and their manifest entries."""
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] = {}
    for language in languages(course):
        for chapter in chapters(course, slugs, language):
            master, quiz = read_master(chapter)
            cells: dict[str, Any] = {}
            for mode in MODES:
                notebook = student_notebook(chapter, master, quiz, mode)
                files[f"{chapter.prefix}{mode}/notebooks/{chapter.slug}.ipynb"] = _notebook_bytes(notebook)
                if chapter.quiz:
                    quiz_text = chapter.quiz.read_bytes()
                    text = quiz_text if mode == "practice" else assessed_quiz_text(chapter.quiz).encode()
                    files[f"{chapter.prefix}{mode}/quizzes/{chapter.slug}.toml"] = text
                cells[mode] = _cell_checksums(notebook)
            manifest[f"{chapter.prefix}{chapter.slug}"] = {"cells": cells}
    return files, manifest


def _manifest_bytes(chapters_manifest: dict[str, Any], files: dict[str, bytes]) -> bytes:
    document = {
        "about": (
            "Written by `bgcourse release`; do not edit. For each chapter and mode, the nbgrader "
            "checksum (nbgrader.utils.compute_checksum) of every graded, locked and solution cell of "
            "the learners' copy (the modes differ only in the solution cells' stubs); and the SHA-256 "
            "of every released file."
        ),
        "chapters": chapters_manifest,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def copy_marker(mode: str, **more: object) -> bytes:
    """The ``.course-copy.json`` of a learner's copy: its check cells say "not yet" instead of raising."""
    return (json.dumps({"mode": mode, **more}, indent=1, sort_keys=True) + "\n").encode("utf-8")


def release_tree(course: Path) -> dict[str, bytes]:
    """The whole release folder of the course: every file's relative path and bytes."""
    files, chapters_manifest = release_files(course)
    files["README.md"] = _README.encode("utf-8")
    files[f"practice/notebooks/{COPY_MARKER}"] = copy_marker("practice")
    for language in languages(course)[1:]:  # an edition's copies say their language (quizzes, feedback)
        for mode in MODES:
            files[f"{language}/{mode}/notebooks/{COPY_MARKER}"] = copy_marker(mode, language=language)
    files[MANIFEST] = _manifest_bytes(chapters_manifest, files)
    return files


def stale_files(course: Path, output: Path) -> list[str]:
    """The files of ``output`` that differ from a fresh release, are missing, or should not be there."""
    expected = release_tree(course)
    present = {str(path.relative_to(output)): path for path in output.rglob("*") if path.is_file()}
    names = expected.keys() | present.keys()
    return sorted(name for name in names if name not in present or expected.get(name) != present[name].read_bytes())


def build_release(course: Path, output: Path, slugs: Sequence[str] = ()) -> list[str]:
    """Write the release of the chapters named (all if none) into ``output``; return the files written.

    A full release replaces ``output`` as a whole (chapters that no longer exist disappear); a
    partial one rewrites the named chapters' files and their entries in the manifest.
    """
    if not slugs:
        files = release_tree(course)
        with replaced_directory(output) as staging:
            for name, data in files.items():
                write_atomic(staging / name, data)
        return sorted(files)
    files, chapters_manifest = release_files(course, slugs)
    old = json.loads((output / MANIFEST).read_text(encoding="utf-8")) if (output / MANIFEST).is_file() else {}
    for name, data in files.items():
        write_atomic(output / name, data)
    every = {
        str(path.relative_to(output)): path.read_bytes()
        for path in sorted(output.rglob("*"))
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(".")
    }
    write_atomic(output / MANIFEST, _manifest_bytes({**old.get("chapters", {}), **chapters_manifest}, every))
    return sorted([*files, MANIFEST])


_README = """\
# The learners' copies of the course

Generated by `make release` (`bgcourse release`) from `notebooks/` and `quizzes/`; never edit
these files by hand: a test regenerates them and fails if they differ.

- `practice/`: the notebooks with stubs where the solutions were (`name = ...`), and the full quiz
  files: every check cell gives instant feedback, and says "not yet" (with a hint) instead of
  raising, so Run All goes through a whole chapter. `notebooks/.course-copy.json` marks the folder
  as a practice copy. Hand out the whole folder; `make lab` gives each learner their own copy of it.
- `assessed/`: the same notebooks, and quiz files without answers, explanations or checks: a quiz
  check cell only records the answer. Hand out the whole folder; grade the returned notebooks
  with `bgcourse grade SUBMISSIONS_DIR`.
- `zh-CN/practice/`, `zh-CN/assessed/`: the same two copies of the course's Chinese edition
  (`notebooks/zh-CN/`, `quizzes/zh-CN/`); their `.course-copy.json` says `"language": "zh-CN"`.
- `checksums.json`: the nbgrader checksums of the graded, locked and solution cells, and the
  SHA-256 of every file here.

Learners need the course's helper package (`pip install` the course folder) and open a notebook
from its `notebooks/` folder, so that it finds its quiz file in `../quizzes/`.
"""
