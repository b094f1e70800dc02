"""The message catalogs: every message the helpers mark is translated, and nothing stale is kept."""

from __future__ import annotations

import ast
import re
import string

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bgcourse.helpers._i18n import LOCALE_FOLDER, catalog_path, gettext, in_language
from bgcourse.helpers._language import ENGLISH, LANGUAGES
from bgcourse.helpers._quiz import Question

PACKAGE = LOCALE_FOLDER.parent
ROOT = PACKAGE.parents[1]
EDITIONS = [language for language in LANGUAGES if language != ENGLISH]


def _marked() -> dict[str, str]:
    """Each message of the course, with the file it is in, as ``make messages`` finds them (``babel.cfg``)."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        ROOT, method_map=method_map, options_map=options_map
    ):
        assert isinstance(message, str), f"{filename}: {message!r} is not one message"
        found.setdefault(message, filename)
    return found


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_marked_message_is_a_plain_string() -> None:
    """Babel extracts only ``_("literal")``: a ``_(f"...")`` or ``_(variable)`` would go untranslated."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_":
                argument = node.args[0] if len(node.args) == 1 and not node.keywords else None
                if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                    problems.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
                # A mark inside an f-string is not seen by the extractor on Python 3.11.
            if isinstance(node, ast.JoinedStr):
                inner = [
                    call
                    for value in node.values
                    for call in ast.walk(value)
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"
                ]
                problems += [f"{path.relative_to(PACKAGE)}:{call.lineno}: _() inside an f-string" for call in inner]
    assert not problems, "mark plain string literals, then format: _('got {x}').format(x=...):\n" + "\n".join(problems)


@pytest.mark.parametrize("language", EDITIONS)
def test_the_catalog_translates_every_marked_message_and_nothing_else(language: str) -> None:
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source)
    marked = _marked()
    entries = {message.id: message for message in catalog if message.id}
    missing = [f"{where}: {text!r}" for text, where in marked.items() if text not in entries]
    untranslated = [repr(text) for text in marked if text in entries and not entries[text].string]
    fuzzy = [repr(text) for text in marked if text in entries and entries[text].fuzzy]
    stale = [repr(text) for text in entries if text not in marked]
    advice = f"run `make messages`, then translate in {catalog_path(language).relative_to(ROOT)}"
    assert not missing, f"not in the catalog ({advice}):\n" + "\n".join(missing)
    assert not untranslated, f"not translated ({advice}):\n" + "\n".join(untranslated)
    assert not fuzzy, "marked fuzzy (an English change since; check and unmark):\n" + "\n".join(fuzzy)
    assert not stale, f"no longer in the code ({advice}):\n" + "\n".join(stale)
    for text, entry in entries.items():
        assert isinstance(text, str), f"{text!r}: plural forms are not used"
        assert isinstance(entry.string, str), f"{text!r}: plural forms are not used"
        assert _fields(entry.string) == _fields(text), f"{text!r}: the translation has other fields: {entry.string!r}"


@pytest.mark.parametrize("language", EDITIONS)
def test_a_translated_message_formats_like_the_english(language: str) -> None:
    text = "Exercise {number}: not attempted yet. Write your answer in the cell above (replace each `...`), "
    text += "run it, then run this cell again."
    with in_language(language):
        translated = gettext(text)
    assert translated != text
    assert "1.2" in translated.format(number="1.2")
    assert gettext(text) == text, "outside in_language, an English notebook's messages stay English"


def test_the_quiz_speaks_the_language_it_is_asked_in() -> None:
    question = Question("q01", "choice", 1.0, "Which?", "Because.", "A", {"A": "this", "B": "that"}, hint="Look.")
    assert question.markdown().startswith("**Question q01** (1 point)")
    with in_language("zh-CN"):
        assert question.markdown().startswith("**题目 q01**（1 分）")
        with pytest.raises(AssertionError, match=re.escape("题目 q01：B 不对。提示：Look.")):
            question.grade("B")


def test_an_unknown_language_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown language 'fr'"), in_language("fr"):
        pass  # pragma: no cover
