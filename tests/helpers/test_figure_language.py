"""Pictures in the learner's language: translated while drawn, in a CJK font, or left English; never boxes."""

from __future__ import annotations

import os

import pytest
from matplotlib import font_manager

from bgcourse.helpers import _figure_language
from bgcourse.helpers._figure_language import cjk_family, drawn_in_language
from bgcourse.helpers._i18n import in_language, translation
from bgcourse.helpers._plot import NotebookFigure


def _figure() -> NotebookFigure:
    figure = NotebookFigure(figsize=(6, 3), layout="constrained")
    axes = figure.subplots()
    axes.barh([0, 1], [1, 2], label="background task runs")
    axes.set_yticks([0, 1], ["request", "an unknown lane"])
    axes.set_xlabel("seconds since the first event")
    axes.set_title("two requests: their tasks overlap")
    figure.legend()
    return figure


@pytest.fixture
def cjk() -> str:
    family = cjk_family()
    if family is None:
        message = "no CJK font for matplotlib (Debian: apt-get install fonts-noto-cjk; see README.zh-CN.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true, where the Chinese pictures must be tested")
        pytest.skip(message)
    return family


def test_a_figure_is_drawn_in_chinese_with_a_font_that_has_the_glyphs(cjk: str) -> None:
    figure = _figure()
    axes = figure.axes[0]
    with drawn_in_language(figure, "zh-CN"):
        assert axes.get_title() == "两个请求：它们的任务同时进行"
        assert axes.get_xlabel() == "自第一个事件起的秒数"
        assert [label.get_text() for label in figure.legends[0].get_texts()] == ["后台任务运行"]
        assert axes.yaxis.get_major_formatter().format_ticks([0, 1]) == ["请求", "an unknown lane"]
        found = font_manager.findfont(font_manager.FontProperties(family=axes.title.get_fontfamily()[-1]))
        assert "DejaVu" not in found, f"the Chinese title would be drawn with {found}"
    # Afterwards the figure is English again, as the code made it.
    assert axes.get_title() == "two requests: their tasks overlap"
    assert axes.yaxis.get_major_formatter().format_ticks([0, 1]) == ["request", "an unknown lane"]


def test_drawing_in_chinese_misses_no_glyph(cjk: str) -> None:
    # Warnings are errors here: matplotlib warns "Glyph ... missing from font(s)" for every box it draws.
    with in_language("zh-CN"):
        chinese = _figure()._repr_png_()
    english = _figure()._repr_png_()
    assert chinese[:8] == b"\x89PNG\r\n\x1a\n"
    assert chinese != english


def test_without_a_cjk_font_the_picture_stays_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_figure_language, "cjk_family", lambda: None)
    figure = _figure()
    with drawn_in_language(figure, "zh-CN"):
        assert figure.axes[0].get_title() == "two requests: their tasks overlap"
    with in_language("zh-CN"):
        assert _figure()._repr_png_() == _figure()._repr_png_()


def test_a_text_made_by_an_f_string_is_translated_through_its_template() -> None:
    assert (
        translation("60 def tasks of 0.5 s, one limiter of 4", "zh-CN") == "60 个 0.5 s 的 def 任务，one limiter of 4"
    )
    assert (
        translation("200 trivial jobs for each contender, scheduled in turn", "zh-CN")
        == "每个参与者 200 个极简作业，轮流安排"
    )
    assert translation("a text the catalog does not know", "zh-CN") is None
    assert translation("request", "en") == "request"
