"""The texts that the chapters' code draws into pictures, found for the message catalog.

An edition's notebook runs the English code, so a picture's title, axis labels, legend entries
and lane names are English strings in the code; they are translated as the picture is drawn
(``helpers/_figure_language.py``). This Babel extraction method finds them in the chapters'
jupytext ``.py`` files: the string arguments of the calls that put text into a figure. An
f-string becomes a template whose fields are numbered, ``"60 def tasks of 0.5 s, {0}"``, so that
one translation serves every value.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

__all__ = ["extract_figure_texts", "template"]

# Calls whose first positional argument is a text drawn in a figure.
_FIRST_ARGUMENT = {"plot", "track", "set_xlabel", "set_ylabel", "set_title", "suptitle", "supxlabel", "supylabel"}
# Keyword arguments that are texts drawn in a figure, wherever they appear.
_KEYWORDS = {"label", "lane", "title", "xlabel", "ylabel"}
# Keyword arguments that are lists of texts (tick labels).
_LIST_KEYWORDS = {"tick_labels", "labels"}


def template(node: ast.expr) -> str | None:
    """The text of a string literal; of an f-string, a template with numbered fields; else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts, field = [], 0
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            parts.append(value.value.replace("{", "{{").replace("}", "}}"))
        else:
            parts.append(f"{{{field}}}")
            field += 1
    return "".join(parts)


def _texts(call: ast.Call) -> Iterator[ast.expr]:
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    if name in _FIRST_ARGUMENT and call.args:
        yield call.args[0]
    for keyword in call.keywords:
        if keyword.arg in _KEYWORDS:
            yield keyword.value
        elif keyword.arg in _LIST_KEYWORDS and isinstance(keyword.value, (ast.List, ast.Tuple)):
            yield from keyword.value.elts


def extract_figure_texts(
    fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str], options: Mapping[str, Any]
) -> Iterator[tuple[int, str, str, list[str]]]:
    """Babel's extraction interface: ``(line, function, message, comments)`` for each figure text."""
    tree = ast.parse(fileobj.read().decode("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for argument in _texts(node):
                text = template(argument)
                if text and _has_words(text):
                    yield node.lineno, "", text, ["figure text"]


def _has_words(text: str) -> bool:
    """Not a number, nor a matplotlib format string (``"-o"``, ``"s--"``, ``"C1:"``): words to translate."""
    letters = any(character.isalpha() for character in text.replace("{0}", ""))
    return letters and not (len(text) <= 4 and " " not in text)
