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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from bgcourse.helpers._language import ENGLISH, LANGUAGES, current_language

__all__ = ["DOMAIN", "LOCALE_FOLDER", "catalog_path", "gettext", "in_language", "language_now"]

DOMAIN = "bgcourse"
LOCALE_FOLDER = Path(__file__).resolve().parents[1] / "locale"

_chosen: ContextVar[str | None] = ContextVar("bgcourse_language", default=None)


def catalog_path(language: str) -> Path:
    """Where an edition's catalog is: ``locale/zh_CN/LC_MESSAGES/bgcourse.po`` for ``zh-CN``."""
    return LOCALE_FOLDER / language.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def _translations(language: str) -> _gettext.NullTranslations:
    if language == ENGLISH:
        return _gettext.NullTranslations()
    # Imported here: Babel's catalog modules take a tenth of a second to import, which an English
    # notebook need not pay.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=language.replace("-", "_"))
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: an unchecked translation is not shown
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def language_now() -> str:
    """The language of the message being written: :func:`in_language`'s, else the notebook's."""
    return _chosen.get() or current_language()


def gettext(message: str) -> str:
    """``message`` in the learner's language; the English itself where there is no translation."""
    return _translations(language_now()).gettext(message)


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
