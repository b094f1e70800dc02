"""``make site``: every chapter executed once, made into pages, both editions built into one site.

The data flows one way: the master notebooks are executed (or taken from the cache, see
_execute), each becomes a page notebook (folds and the run's note, see _cells), the pages and
the learner's notebook files are written into an edition's source folder, Sphinx builds each
edition (see _sphinx), and the two HTML trees are copied into the output: English at its root,
Chinese under ``zh-CN/``. Nothing is written into the course's folders.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nbformat
from myst_parser.slugs import github_slugify

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language
from bgcourse.website._cells import page_notebook
from bgcourse.website._execute import Execution, cache_folder, executions
from bgcourse.website._sphinx import BuildFailed, Edition, build_edition

__all__ = ["SITE_MARKER", "SiteError", "build_site"]

# A file at the site's root: the folder is one this command made, so a rebuild may replace it.
SITE_MARKER = ".bgcourse-site"
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_CLONE_FOLDER = "fastapi-background-tasks"  # the run_locally page's clone command makes it, then enters it
# The Markdown pages every edition has (pages/<language>/), which links may name as they are.
_PAGES = frozenset({"index.md", "run_locally.md", "against_the_article.md"})
_HEADING = re.compile(r"^#{1,3} +(.+?) *$", re.MULTILINE)
_TITLES = {"en": "FastAPI background tasks, proved cell by cell", "zh-CN": "FastAPI 后台任务，逐个单元格证明"}


class SiteError(RuntimeError):
    """The site cannot be built as asked: the message says why and what to do."""


@dataclass(frozen=True)
class _Source:
    language: str
    masters: Path  # the master notebooks (executed for the pages)
    practice: Path  # the learner's notebooks (the pages' download)
    extra: tuple[Path, ...]  # Markdown pages of the edition's own (the Chinese comparison with the article)
    root: str  # where the edition lives in the site


def _sources(course: Path) -> tuple[_Source, ...]:
    return (
        _Source("en", course / "notebooks", course / "release" / "practice" / "notebooks", (), ""),
        _Source(
            "zh-CN",
            course / "notebooks" / "zh-CN",
            course / "release" / "zh-CN" / "practice" / "notebooks",
            (course / "notebooks" / "zh-CN" / "against_the_article.md",),
            "zh-CN/",
        ),
    )


def _site_link(target: str, *, slugs: dict[str, str], repository: str | None, where: str) -> str:
    """A link of the course's Markdown, as it reads on the site (the course's files are not pages)."""
    if target.startswith(("http://", "https://", "mailto:", "#")):
        return target
    path = target.partition("#")[0]
    name = Path(path).name
    stem = name.removesuffix(".ipynb")
    if path == name and (stem in slugs or name in _PAGES):
        return target
    if name.endswith(".toml") and Path(name).stem in slugs:
        # A quiz file: its questions are the chapter page's quiz section.
        return f"{Path(name).stem}.ipynb#{slugs[Path(name).stem]}"
    if name == "README.md" and repository:
        return f"{repository.rstrip('/')}/blob/HEAD/README.md"
    if name == "README.md":
        return "run_locally.md"
    raise SiteError(
        f"{where} links to {target!r}, which is neither a chapter nor a page of the site. "
        "Link to a chapter (chNN_topic.ipynb) or teach bgcourse.website._build._site_link where it leads."
    )


def _rewrite_links(text: str, *, slugs: dict[str, str], repository: str | None, where: str) -> str:
    def rewritten(match: re.Match[str]) -> str:
        return f"]({_site_link(match['target'], slugs=slugs, repository=repository, where=where)})"

    return _LINK.sub(rewritten, text)


def _quiz_anchor(notebook: nbformat.NotebookNode) -> str:
    """The anchor of the section holding the chapter's quiz: the last heading before its first question."""
    heading = ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            titles = _HEADING.findall(cell.source)
            heading = titles[-1] if titles else heading
        elif str(cell.metadata.get("nbgrader", {}).get("grade_id", "")).endswith("_question"):
            return str(github_slugify(heading.replace("`", "")))
    return ""


def _write_pages(
    source: _Source, folder: Path, found: dict[Path, Execution], *, repository: str | None
) -> frozenset[str]:
    """The edition's source folder: its pages, chapter notebooks and the learner's files; its page names."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "files").mkdir(parents=True)
    chapters = sorted(source.masters.glob("ch*.ipynb"))
    slugs = {path.stem: _quiz_anchor(found[path].notebook) for path in chapters}
    # Cloned into a folder of a known name, so that the next line can enter it.
    url = repository or _("<the course repository URL>")
    clone = f"git clone {url} {_CLONE_FOLDER}\ncd {_CLONE_FOLDER}"
    pages = resources.files("bgcourse.website") / "pages" / source.language
    for page in pages.iterdir():
        if page.name.endswith(".md"):
            text = page.read_text(encoding="utf-8").replace("@CLONE@", clone)
            (folder / page.name).write_text(text, encoding="utf-8")
    for extra in source.extra:
        text = _rewrite_links(extra.read_text(encoding="utf-8"), slugs=slugs, repository=repository, where=extra.name)
        (folder / extra.name).write_text(text, encoding="utf-8")
    for path in chapters:
        execution = found[path]
        shutil.copyfile(source.practice / path.name, folder / "files" / path.name)
        run_it, notebook_file = _("How to run this chapter on your machine"), _("The notebook file")
        links = f"[{run_it}](run_locally.md) · {{download}}`{notebook_file} <files/{path.name}>`"
        page = page_notebook(execution.notebook, language=source.language, record=execution.record, links=links)
        for cell in page.cells:
            if cell.cell_type == "markdown":
                cell.source = _rewrite_links(cell.source, slugs=slugs, repository=repository, where=path.name)
        nbformat.write(page, folder / path.name)
    return frozenset(path.stem for path in folder.iterdir() if path.suffix in {".md", ".ipynb"})


def _check_output(output: Path) -> None:
    """Refuse, before any work, to replace a folder this command did not make: nothing is lost."""
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / SITE_MARKER).exists())):
        raise SiteError(
            f"{output} exists and is not a site this command built (it has no {SITE_MARKER}); "
            "nothing was changed. Choose an empty or new folder with --output."
        )


def build_site(
    course: Path,
    *,
    output: Path,
    cache: Path,
    work: Path,
    python: str,
    jobs: int = 2,
    repository: str | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Build the site into ``output``: the English edition at its root, the Chinese under zh-CN/.

    ``cache`` keeps the executions (a second build with unchanged inputs executes nothing),
    ``work`` the editions' sources and Sphinx's files, ``python`` is the course's interpreter.
    """
    started = time.perf_counter()
    _check_output(output)
    sources = _sources(course)
    for source in sources:
        for folder in (source.masters, source.practice):
            if not any(folder.glob("ch*.ipynb")):
                raise SiteError(f"no chapters in {folder}: run `bgcourse release` first (make test does).")
    root = cache_folder(course, cache)
    notebooks = {
        path: root / source.language for source in sources for path in sorted(source.masters.glob("ch*.ipynb"))
    }
    found = executions(notebooks, python=python, jobs=jobs, say=say)
    executed = time.perf_counter()
    names: dict[str, frozenset[str]] = {}
    for source in sources:
        with in_language(source.language):
            names[source.language] = _write_pages(source, work / source.language / "src", found, repository=repository)
    built: dict[str, Path] = {}
    for source in sources:
        other = next(item for item in sources if item is not source)
        edition = Edition(
            language=source.language,
            source=work / source.language / "src",
            work=work / source.language,
            other_root=other.root if source.root == "" else "../",
            other_pages=names[other.language],
            title=_TITLES[source.language],
        )
        say(f"Building the {source.language} edition's pages with Sphinx")
        try:
            built[source.language] = build_edition(edition)
        except BuildFailed as error:
            raise SiteError(f"{error}\nThe pages' sources are in {edition.source}.") from None
    if output.exists():
        shutil.rmtree(output)
    for source in sources:
        shutil.copytree(built[source.language], output / source.root, dirs_exist_ok=True)
    # GitHub Pages runs Jekyll unless told not to, and Jekyll drops Sphinx's _static folder.
    (output / ".nojekyll").touch()
    (output / SITE_MARKER).write_text("Built by `make site`; the next build replaces this folder.\n", encoding="utf-8")
    say(
        f"The site is in {output} (open {output / 'index.html'}): executions took {executed - started:.0f} s, "
        f"pages {time.perf_counter() - executed:.0f} s."
    )
    return output
