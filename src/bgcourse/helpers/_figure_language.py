"""Pictures in the learner's language: a figure's texts translated as it is drawn, in a font with the glyphs.

The code that builds a figure is the same in every edition, so its texts are English; while a
:class:`NotebookFigure` is drawn for an edition's learner, each text the catalog translates
(title, axis labels, legend entries, fixed tick labels such as a timeline's lanes) is swapped
for its translation, and the English put back afterwards. Chinese needs a CJK font: the first of
:data:`CJK_FAMILIES` that matplotlib can find (Debian's ``fonts-noto-cjk``, macOS's PingFang,
Windows' Microsoft YaHei, ...), as a fallback after DejaVu Sans, so that Latin text looks as in
the English edition. Without one, the picture stays English: never a box for a missing glyph.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib import font_manager
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import Formatter

from bgcourse.helpers._i18n import language_now, translation
from bgcourse.helpers._language import ENGLISH

__all__ = ["CJK_FAMILIES", "cjk_family", "drawn_in_language"]

# Simplified Chinese first; then fonts that have the common hanzi too.
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Microsoft YaHei",
    "SimHei",
    "Arial Unicode MS",
)
# Files of those fonts, for a font installed after matplotlib made its font cache.
_CJK_FILES = ("NotoSansCJK", "NotoSansSC", "SourceHanSans", "wqy-zenhei", "wqy-microhei", "msyh", "simhei")


@functools.cache
def cjk_family() -> str | None:
    """The name of a CJK font that matplotlib can draw with, or ``None`` where there is none."""
    for attempt in range(2):
        known = {font.name for font in font_manager.fontManager.ttflist}
        for family in CJK_FAMILIES:
            if family in known:
                return family
        if attempt == 0:
            for path in font_manager.findSystemFonts():
                if any(name in Path(path).name for name in _CJK_FILES):
                    font_manager.fontManager.addfont(path)
    return None


def _texts(figure: Figure) -> Iterator[Text]:
    for artist in figure.findobj(Text):
        if isinstance(artist, Text) and artist.get_text():
            yield artist


@contextmanager
def drawn_in_language(figure: Figure, language: str | None = None) -> Iterator[None]:
    """Within the block, ``figure``'s texts are in ``language`` (default: the learner's) where the catalog has them."""
    language = language or language_now()
    family = cjk_family() if language != ENGLISH else None
    if family is None:  # English, or no font for the glyphs: the English texts, as they are
        yield
        return
    fonts = ["DejaVu Sans", family]
    restore: list[tuple[Text, str, list[str]]] = []
    formatters: list[tuple[Axis, Formatter]] = []
    for text in _texts(figure):
        translated = translation(text.get_text(), language)
        if translated is not None:
            restore.append((text, text.get_text(), list(text.get_fontfamily())))
            text.set_text(translated)
            text.set_fontfamily(fonts)
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            formatter = axis.get_major_formatter()
            formatters.append((axis, formatter))
            axis.set_major_formatter(_Translated(formatter, language))
    try:
        # Tick labels are made while drawing: they take the family from here.
        with mpl.rc_context({"font.family": "sans-serif", "font.sans-serif": fonts}):
            yield
    finally:
        for text, original, families in restore:
            text.set_text(original)
            text.set_fontfamily(families)
        for changed, formatter in formatters:
            changed.set_major_formatter(formatter)


class _Translated(Formatter):
    """Tick labels (a timeline's lanes, a bar chart's names) as ``formatter`` makes them, translated."""

    def __init__(self, formatter: Formatter, language: str) -> None:
        self.formatter = formatter
        self.language = language

    def set_axis(self, axis: Axis | None) -> None:  # type: ignore[override]
        super().set_axis(axis)
        self.formatter.set_axis(axis)

    def __call__(self, x: float, pos: int | None = None) -> str:
        label = self.formatter(x, pos)
        return self._translated(label)

    def _translated(self, label: str) -> str:
        return (translation(label, self.language) or label) if label else label

    def format_ticks(self, values: list[float]) -> list[str]:
        return [self._translated(label) for label in self.formatter.format_ticks(values)]

    def get_offset(self) -> str:
        return self.formatter.get_offset()
