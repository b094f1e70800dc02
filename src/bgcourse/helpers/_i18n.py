"""What the helpers say, in the learner's language: a gettext catalog per edition.

The messages are written in English in the code, marked ``_("...")`` (and formatted afterwards,
``_("got {status}").format(status=...)``, so that the catalog holds one message, not one per
value).  ``src/bgcourse/locale/<language>/LC_MESSAGES/bgcourse.po`` holds an edition's
translations; ``make messages`` extracts the marked messages with Babel and merges them into each
catalog.  The ``.po`` file is read directly (Babel compiles it in memory), so there is no compiled
``.mo`` file to forget.

The language is the notebook's (:func:`current_language`), or, where one process speaks to many
learners (the grader judging a class), the one set by :func:`in_language` for the work at hand.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from bgcourse.helpers._language import ENGLISH, LANGUAGES, current_language

__all__ = ["DOMAIN", "LOCALE_FOLDER", "N_", "catalog_path", "gettext", "in_language", "language_now", "translation"]

DOMAIN = "bgcourse"
LOCALE_FOLDER = Path(__file__).resolve().parents[1] / "locale"

_chosen: ContextVar[str | None] = ContextVar("bgcourse_language", default=None)


def catalog_path(language: str) -> Path:
    """Where an edition's catalog is: ``locale/zh_CN/LC_MESSAGES/bgcourse.po`` for ``zh-CN``."""
    return LOCALE_FOLDER / language.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def _translations(language: str) -> _gettext.NullTranslations:
    return _compiled(language)[0]


@functools.cache
def _templates(language: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    return _compiled(language)[1]


@functools.cache
def _compiled(language: str) -> tuple[_gettext.NullTranslations, tuple[tuple[re.Pattern[str], str], ...]]:
    if language == ENGLISH:
        return _gettext.NullTranslations(), ()
    # Imported here: Babel's catalog modules take a tenth of a second to import, which an English
    # notebook need not pay.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=language.replace("-", "_"))
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: an unchecked translation is not shown
    compiled.seek(0)
    # A figure text drawn from an f-string is a template, "{0} trivial jobs": the more literal text
    # a template has, the sooner it is tried, so that "{0}: build report" wins over "{0}: {1}".
    templates = sorted(
        (message for message in catalog if isinstance(message.id, str) and "{0}" in message.id and message.string),
        key=lambda message: -len(_FIELD.sub("", str(message.id))),
    )
    patterns = tuple((_pattern(str(message.id)), str(message.string)) for message in templates if not message.fuzzy)
    return _gettext.GNUTranslations(compiled), patterns


_FIELD = re.compile(r"\{\d+\}")


def _pattern(template: str) -> re.Pattern[str]:
    literal = [re.escape(part.replace("{{", "{").replace("}}", "}")) for part in _FIELD.split(template)]
    return re.compile("(.+?)".join(literal) + r"\Z", re.DOTALL)


def language_now() -> str:
    """The language of the message being written: :func:`in_language`'s, else the notebook's."""
    return _chosen.get() or current_language()


def gettext(message: str) -> str:
    """``message`` in the learner's language; the English itself where there is no translation."""
    return _translations(language_now()).gettext(message)


def N_(message: str) -> str:  # gettext's own name for the mark
    """Mark ``message`` for the catalog without translating it now: it is translated where it is shown."""
    return message


def translation(text: str, language: str) -> str | None:
    """``text`` (a message, or a template's filled-in text) in ``language``; ``None`` if the catalog has none."""
    if language == ENGLISH:
        return text
    translated = _translations(language).gettext(text)
    if translated != text:
        return translated
    for pattern, template in _templates(language):
        found = pattern.match(text)
        if found:
            return template.format(*found.groups())
    return None


@contextmanager
def in_language(language: str) -> Iterator[None]:
    """Within the block, messages are written in ``language`` (one of :data:`LANGUAGES`)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: the course has {', '.join(LANGUAGES)}")
    token = _chosen.set(language)
    try:
        yield
    finally:
        _chosen.reset(token)
