"""An edition of the course in another language, kept in step with the English one by checks, not by care.

``notebooks/<language>/chNN_topic.ipynb`` (a jupytext pair, as the English one) is the edition of
``notebooks/chNN_topic.ipynb`` in that language when it has

- the same cells in the same order, of the same kinds, with the same nbgrader metadata, so that
  ``bgcourse release`` and ``bgcourse grade`` treat both alike (a class may hand in either);
- code cells equal to the English ones up to comments (comments may be translated): the same
  proofs run;
- in each markdown cell's metadata, ``translates``: a hash of the English cell it translates.
  When the English cell changes, the hash stops matching and :func:`problems` names the cell:
  translate the change, then stamp the cell (``bgcourse edition zh-CN --stamp chNN:INDEX``).

``bgcourse edition zh-CN --new chNN_topic`` starts a translation: the English notebook, every
markdown cell stamped, for a translator to rewrite in place.
"""

from __future__ import annotations

import hashlib
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
import nbformat

__all__ = ["EDITIONS", "Edition", "problems", "source_hash", "stamp", "start_translation"]

EDITIONS = ("zh-CN",)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
# What a markdown cell may keep in English: code, links' targets, HTML tags, math.
_NOT_PROSE = re.compile(r"```.*?```|`[^`]*`|\]\([^)]*\)|<[^>]+>|\$[^$]*\$|https?://\S+", re.DOTALL)
_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class Edition:
    """One language's edition of a course: where its notebooks and quiz files are."""

    course: Path
    language: str

    @property
    def notebooks(self) -> Path:
        return self.course / "notebooks" / self.language

    @property
    def quizzes(self) -> Path:
        return self.course / "quizzes" / self.language

    def slugs(self) -> list[str]:
        return sorted(path.stem for path in self.notebooks.glob("ch*.ipynb"))


def source_hash(source: str) -> str:
    """The hash that a translated cell records of the English cell it translates (its text, trimmed)."""
    return hashlib.sha256(source.strip().encode("utf-8")).hexdigest()[:16]


def _code_without_comments(source: str) -> list[tuple[int, str]]:
    """A code cell's tokens, comments and blank lines left out (magics kept as written)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    magics = [line.strip() for line in source.splitlines() if line.lstrip().startswith(("%", "!"))]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [(0, source)]
    kept = [(token.type, token.string) for token in tokens if token.type not in (tokenize.COMMENT, tokenize.NL)]
    return [(0, magic) for magic in magics] + kept


def _untranslated(source: str) -> bool:
    """Whether a markdown cell still reads as English prose: words, and no Chinese at all."""
    prose = _NOT_PROSE.sub(" ", source)
    return not _CJK.search(prose) and len(_WORD.findall(prose)) >= 3


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def problems(edition: Edition, slug: str) -> list[str]:
    """Every way the edition's notebook ``slug`` differs from the English one, each naming its cell."""
    english = _read(edition.course / "notebooks" / f"{slug}.ipynb")
    translated = _read(edition.notebooks / f"{slug}.ipynb")
    where = f"notebooks/{edition.language}/{slug}.ipynb"
    found: list[str] = []
    if translated.metadata.get("bgcourse", {}).get("language") != edition.language:
        found.append(f"{where}: the notebook's metadata must say bgcourse.language = {edition.language!r}")
    if len(english.cells) != len(translated.cells):
        found.append(f"{where}: {len(translated.cells)} cells, the English notebook has {len(english.cells)}")
    for index, (source, target) in enumerate(zip(english.cells, translated.cells, strict=False)):
        cell = f"{where}, cell {index}"
        if source.cell_type != target.cell_type:
            found.append(f"{cell}: a {target.cell_type} cell where the English has a {source.cell_type} cell")
            continue
        if source.metadata.get("nbgrader") != target.metadata.get("nbgrader"):
            found.append(f"{cell}: its nbgrader metadata differs from the English cell's")
        if source.cell_type == "code":
            if _code_without_comments(source.source) != _code_without_comments(target.source):
                found.append(f"{cell}: its code differs from the English cell's (only comments may be translated)")
        elif target.metadata.get("translates") != source_hash(source.source):
            found.append(
                f"{cell}: the English cell changed since it was translated (or it was never stamped): "
                f"translate the change, then run `bgcourse edition {edition.language} --stamp {slug}:{index}`"
            )
        elif _untranslated(target.source):
            found.append(f"{cell}: still in English")
    return found


def _write(notebook: Any, path: Path) -> None:
    """Both files of the pair: the .ipynb and the percent-format .py that reviewers read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, path.with_suffix(".ipynb"))
    jupytext.write(notebook, path.with_suffix(".py"), fmt="py:percent")


def start_translation(edition: Edition, slug: str) -> Path:
    """Write the edition's notebook ``slug`` as a copy of the English one, every markdown cell stamped."""
    target = edition.notebooks / f"{slug}.ipynb"
    if target.exists():
        raise FileExistsError(f"{target} exists: edit it, or remove it to start again")
    notebook = jupytext.read(edition.course / "notebooks" / f"{slug}.ipynb")
    notebook.metadata["bgcourse"] = {"language": edition.language}
    # Kept in the .py too (jupytext leaves notebook metadata out of it unless told), so that the
    # .ipynb made from it still says which language it is in.
    notebook.metadata.setdefault("jupytext", {})["notebook_metadata_filter"] = "bgcourse"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.metadata["translates"] = source_hash(cell.source)
    _write(notebook, target)
    return target


def stamp(edition: Edition, slug: str, indices: list[int]) -> None:
    """Record that the edition's cells ``indices`` translate the English cells as they are now."""
    english = _read(edition.course / "notebooks" / f"{slug}.ipynb")
    path = edition.notebooks / f"{slug}.ipynb"
    notebook = jupytext.read(path)
    for index in indices:
        if english.cells[index].cell_type != "markdown":
            raise ValueError(f"cell {index} of {slug} is not a markdown cell")
        notebook.cells[index].metadata["translates"] = source_hash(english.cells[index].source)
    _write(notebook, path)
