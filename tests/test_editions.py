"""The zh-CN edition mirrors the English course: each chapter cell for cell, quiz for quiz, in its glossary's terms."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks

from bgcourse import load_quiz
from bgcourse.editions._editions import EDITIONS, Edition, problems

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = sorted(path.stem for path in (ROOT / "notebooks").glob("ch*.ipynb"))
PAIRS = [(language, slug) for language in EDITIONS for slug in ENGLISH]
IDS = [f"{language}-{slug}" for language, slug in PAIRS]
GLOSSARY = tomllib.loads((ROOT / "notebooks" / "zh-CN" / "glossary.toml").read_text(encoding="utf-8"))["terms"]


@pytest.mark.parametrize(("language", "slug"), PAIRS, ids=IDS)
def test_every_chapter_has_its_translation_in_step_with_the_english(language: str, slug: str) -> None:
    edition = Edition(ROOT, language)
    assert (edition.notebooks / f"{slug}.ipynb").is_file(), f"no {language} edition of {slug}"
    assert problems(edition, slug) == []


@pytest.mark.parametrize(("language", "slug"), PAIRS, ids=IDS)
def test_the_translation_is_a_pair_without_outputs(language: str, slug: str) -> None:
    path = ROOT / "notebooks" / language / f"{slug}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert not [cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs], "clear the outputs"
    compare_notebooks(jupytext.read(path.with_suffix(".py")), notebook, fmt="py:percent")


@pytest.mark.parametrize(("language", "slug"), PAIRS, ids=IDS)
def test_the_quiz_asks_the_same_questions_with_the_same_answers(language: str, slug: str) -> None:
    english = load_quiz(ROOT / "quizzes" / f"{slug}.toml")
    translated = load_quiz(ROOT / "quizzes" / language / f"{slug}.toml")
    assert [question.id for question in translated.questions] == [question.id for question in english.questions]
    for mine, theirs in zip(translated.questions, english.questions, strict=True):
        same = (mine.kind, mine.points, mine.answer.strip(), mine.name, sorted(mine.choices))
        assert same == (theirs.kind, theirs.points, theirs.answer.strip(), theirs.name, sorted(theirs.choices)), mine.id
        if mine.kind == "code":
            # The same observation (its code, not one run's record: a record may hold timings), and
            # both judgements accept what it sees of the reference answer.
            assert _function(mine.check_source, "observe") == _function(theirs.check_source, "observe"), mine.id
            seen = theirs.observation(theirs.reference_answer())
            theirs.judged(seen)
            mine.judged(seen)
        assert re.search(r"[\u4e00-\u9fff]", mine.prompt), f"{mine.id}: the prompt is not in Chinese"


def _function(source: str, name: str) -> str:
    """The syntax tree of the function ``name`` defined in ``source``, as text (comments do not count)."""
    (function,) = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == name]
    return ast.dump(function)


def _prose(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def glossary_first_use_misses(text: str) -> list[str]:
    """The glossary terms whose first use in `text` lacks the English name in parentheses, as 中文（English）."""
    missing = []
    for english, chinese in GLOSSARY.items():
        # An occurrence inside a longer term (事务 in 补偿事务) is that term's use, not this one's.
        longer = [other for other in GLOSSARY.values() if chinese in other and other != chinese]
        covered = {
            index for other in longer for match in re.finditer(re.escape(other), text)
            for index in range(match.start(), match.end())
        }  # fmt: skip
        first = next(
            (match.start() for match in re.finditer(re.escape(chinese), text) if match.start() not in covered), -1
        )
        if first < 0:
            continue
        # Right after the term (or after a longer term that contains it): its English name, in parentheses.
        after = text[first : first + len(chinese) + 12 + len(english) * 2]
        if not re.search(rf"[（(]\s*{re.escape(english)}", after, re.IGNORECASE):
            missing.append(f"{chinese}（{english}）")
    return missing


@pytest.mark.parametrize("slug", ENGLISH)
def test_a_glossary_term_first_appears_with_its_english_name(slug: str) -> None:
    text = _prose(nbformat.read(ROOT / "notebooks" / "zh-CN" / f"{slug}.ipynb", as_version=4))
    missing = glossary_first_use_misses(text)
    assert not missing, f"{slug}: on first use, write {', '.join(missing)}"


# A line break inside a Chinese paragraph shows as a space between two characters (Markdown's soft
# break), which Chinese never has: write the paragraph on one line.
_CJK = r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]"
_SOFT_BREAK = re.compile(rf"{_CJK}\n(?![ \t]*([-*+] |\d+[.)] |#|\||>|```|\n))[ \t]*{_CJK}")


@pytest.mark.parametrize("slug", ENGLISH)
def test_no_chinese_paragraph_is_broken_across_lines(slug: str) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / "zh-CN" / f"{slug}.ipynb", as_version=4)
    broken = [
        f"cell {index}: {match.group(0)!r}"
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "markdown"
        for match in _SOFT_BREAK.finditer(cell.source)
    ]
    assert not broken, f"{slug}: join these lines (a break inside a Chinese paragraph shows as a space):\n" + "\n".join(
        broken[:10]
    )
