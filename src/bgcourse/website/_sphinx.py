"""The Sphinx side of the website: one edition's build, and the extension its pages need.

An edition is built by Sphinx with MyST-NB (it renders the executed notebooks, never executing
them itself) and the book theme. The extension adds three things the tools lack:

- folded cells (quiz answers, reference solutions) are left out of the search index, so that a
  search never shows an answer in its excerpt;
- a language switch in every page's header, to the same page in the other edition;
- Chinese search that works in the browser: Sphinx's Chinese index splits the text with jieba,
  but its query splitter keeps a run of Chinese characters as one word (no page has "后台任务运行"
  as one term), and it names a stemmer that is never loaded (``ChineseStemmer``), which breaks the
  search page with a console error. The query here is split against the index's own terms,
  longest first, and the English stemmer the index was built with is named.
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.search.zh import SearchChinese
from sphinx.util.console import nocolor
from sphinx.util.docutils import docutils_namespace, patch_docutils

__all__ = ["BuildFailed", "Edition", "build_edition", "setup"]

FOLDED_CLASS = "tag_bgcourse-folded"  # MyST-NB's class for a cell tagged bgcourse-folded
_HERE = Path(__file__).parent

# A query's run of Chinese characters becomes the longest terms of the index it starts with; a
# character that starts none is dropped (the index keeps no one-character words, so it could
# match nothing). Latin words are split as Sphinx splits them. No "<" or "&" in it: Sphinx writes
# it into language_data.js through a template.
_SPLIT_QUERY_JS = r"""
var splitQuery = (query) => {
  const index = Search._index || {};
  const known = (word) => word in (index.terms || {}) || word in (index.titleterms || {});
  const words = [];
  for (const part of query.split(/[^\p{Letter}\p{Number}_\p{Emoji_Presentation}]+/gu)) {
    if (!part) continue;
    for (const run of part.match(/\p{Script=Han}+|[^\p{Script=Han}]+/gu)) {
      if (!/\p{Script=Han}/u.test(run)) { words.push(run); continue; }
      let start = 0;
      while (start !== run.length) {
        let end = run.length;
        while (end - start !== 1 && !known(run.slice(start, end))) end -= 1;
        if (end - start !== 1 || known(run.slice(start, end))) words.push(run.slice(start, end));
        start = end;
      }
    }
  }
  return words;
};
"""


class CourseChinese(SearchChinese):
    """Sphinx's Chinese search, with a query splitter and a stemmer name that work in a browser."""

    # Sphinx writes "window.Stemmer = <language_name>Stemmer" after the stemmer's code, which is
    # english-stemmer.js for Chinese: the class it defines is EnglishStemmer.
    language_name = "English"
    js_splitter_code = _SPLIT_QUERY_JS


@dataclass(frozen=True)
class Edition:
    """One edition's build: its language, its pages' folder, and where its HTML goes."""

    language: str  # the course's code: "en" or "zh-CN"
    source: Path  # the pages (Markdown and notebooks) and nothing else
    work: Path  # Sphinx's output and doctrees; only work/html is published
    other_root: str  # the other edition's root, relative to this edition's root ("zh-CN/" or "../")
    other_pages: frozenset[str]  # the other edition's page names (docnames)
    title: str


def _sphinx_language(language: str) -> str:
    return language.replace("-", "_")


def _no_search_for_folds(app: Sphinx, doctree: nodes.document) -> None:
    for node in doctree.findall(nodes.Element):
        if FOLDED_CLASS in node.get("classes", []):
            node["classes"].append("no-search")


def _language_switch(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    other_root: str = app.config.bgcourse_other_root
    other_pages: list[str] = app.config.bgcourse_other_pages
    to_root = "../" * pagename.count("/")
    target = pagename if pagename in other_pages else "index"
    context["bgcourse_switch"] = {
        "url": f"{to_root}{other_root}{target}.html",
        "label": app.config.bgcourse_other_label,
        "lang": app.config.bgcourse_other_lang,
    }


def setup(app: Sphinx) -> dict[str, Any]:
    """The extension: no-search folds, the language switch, working Chinese search."""
    app.add_config_value("bgcourse_other_root", "", "html", types=[str])
    app.add_config_value("bgcourse_other_pages", [], "html", types=[list])
    app.add_config_value("bgcourse_other_label", "", "html", types=[str])
    app.add_config_value("bgcourse_other_lang", "", "html", types=[str])
    app.add_search_language(CourseChinese)
    app.connect("doctree-read", _no_search_for_folds)
    app.connect("html-page-context", _language_switch)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _configuration(edition: Edition) -> dict[str, Any]:
    chinese = edition.language == "zh-CN"
    return {
        "project": edition.title,
        "html_title": edition.title,
        "language": _sphinx_language(edition.language),
        "extensions": ["myst_nb", "sphinx_copybutton", "bgcourse.website._sphinx"],
        "exclude_patterns": ["files/**"],
        "templates_path": [str(_HERE / "templates")],
        "html_static_path": [str(_HERE / "static")],
        "html_css_files": ["course.css"],
        "html_js_files": [("course-search.js", {"defer": "defer"})],
        "html_favicon": str(_HERE / "static" / "favicon.svg"),
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {
            "use_download_button": False,
            "use_fullscreen_button": False,
            "article_header_end": ["language-switch.html", "article-header-buttons.html"],
            # The sidebar has the search field; the theme would add a second one in a bar of its own above the page.
            "navbar_persistent": [],
            "show_toc_level": 2,
            # The theme's footer would say "By Author name not set": the pages speak of the course alone.
            "footer_content_items": [],
        },
        # Light or dark as the reader's system prefers (the theme logs an error when this is unset).
        "html_context": {"default_mode": "auto"},
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "html_last_updated_fmt": None,
        "html_search_language": "zh" if chinese else "en",
        # Sphinx loads jieba's own dictionary when "dict" is empty; a path would be read as a user dictionary.
        "html_search_options": {"dict": ""} if chinese else {},
        # The notebooks are executed before the build (see _execute): MyST-NB only renders them.
        "nb_execution_mode": "off",
        # No kernel behind a static page: no widget JavaScript either (the progress bars keep their text).
        "nb_ipywidgets_js": {},
        "myst_heading_anchors": 3,
        "myst_enable_extensions": ["colon_fence"],
        "suppress_warnings": ["myst.header"],
        "bgcourse_other_root": edition.other_root,
        "bgcourse_other_pages": sorted(edition.other_pages),
        "bgcourse_other_label": "English" if chinese else "中文",
        "bgcourse_other_lang": "en" if chinese else "zh-CN",
    }


class BuildFailed(RuntimeError):
    """Sphinx warned or failed: a broken link, a page outside the table of contents, a bad cell."""


def build_edition(edition: Edition) -> Path:
    """Build one edition's HTML; its folder. Any Sphinx warning fails the build (BuildFailed)."""
    # A fresh build each time: Sphinx keeps what an earlier build wrote (a renamed page's HTML, old downloads).
    for folder in (edition.work / "html", edition.work / "doctrees"):
        if folder.exists():
            shutil.rmtree(folder)
    log = io.StringIO()
    warnings = io.StringIO()
    # jieba (the Chinese index's word splitter) logs its dictionary's loading at DEBUG to stderr.
    logging.getLogger("jieba").setLevel(logging.WARNING)
    nocolor()  # the messages go into this module's error, read in a terminal or a log, not drawn in one
    # Each build in a fresh docutils namespace (as sphinx-build does): the two editions are built in
    # one process, and docutils keeps the first build's directives, roles and nodes globally.
    with patch_docutils(None), docutils_namespace():
        app = Sphinx(
            srcdir=edition.source,
            confdir=None,
            outdir=edition.work / "html",
            doctreedir=edition.work / "doctrees",
            buildername="html",
            confoverrides=_configuration(edition),
            status=log,
            warning=warnings,
            freshenv=True,
            warningiserror=True,
        )
        try:
            app.build()
        except SphinxError as error:
            stopped = f"Sphinx stopped the {edition.language} edition: {error}"
            raise BuildFailed(f"{stopped}\n{warnings.getvalue()}") from None
    if app.statuscode or warnings.getvalue():
        raise BuildFailed(f"the {edition.language} edition's pages have problems:\n{warnings.getvalue()}")
    return edition.work / "html"
