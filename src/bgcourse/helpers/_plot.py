"""Draw a timeline: one lane per request or task, so that order and overlap can be seen at a glance."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace

from matplotlib.figure import Figure

from bgcourse.helpers._figure_language import drawn_in_language
from bgcourse.helpers._i18n import N_
from bgcourse.helpers._timeline import (
    REQUEST_RECEIVED,
    REQUEST_SENT,
    RESPONSE_RECEIVED,
    RESPONSE_SENT,
    TASK_CANCELLED,
    TASK_END,
    TASK_RAISED,
    TASK_START,
    Event,
)

__all__ = ["NotebookFigure", "plot_timeline"]

_REQUEST_COLOUR = "#4c72b0"
# How a task's bar looks, by how it ended: (colour, hatch, legend text). Hatching as well as
# colour, so that the kinds differ for a reader who does not tell red from orange.
_TASK_LOOKS = {
    TASK_END: ("#dd8452", "", N_("background task runs")),
    TASK_RAISED: ("#c44e52", "xx", N_("task that raised")),
    TASK_CANCELLED: ("#8c8c8c", "//", N_("task that was cancelled")),
    "running": ("#f0c9a8", "..", N_("task still running when drawn")),
}
# The server's two moments are often a fraction of a millisecond apart, so they would hide each
# other at one point: "received" sits on the bar's top edge, "sent" on its bottom edge, each with a
# shape and colour of its own.  (marker, colour, offset from the lane's centre, legend text)
_MARKERS = {
    REQUEST_RECEIVED: ("v", "#2f2f2f", 0.25, N_("server received request")),
    RESPONSE_SENT: ("^", "#8c1c8c", -0.25, N_("server sent response")),
}


class NotebookFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter even when pyplot was never imported.

    In an edition's notebook its texts are drawn in the learner's language (``_figure_language.py``).
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        with drawn_in_language(self):
            self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def plot_timeline(events: Sequence[Event], title: str | None = None) -> Figure:
    """A horizontal bar per lane: the client's wait for a request, or a task's run.

    Request lanes span "request sent" to "response received" (the client's view) and mark the
    server's "request received" and "response sent"; task lanes span "task start" to "task end"
    and name the thread the task ran on.  A dashed line marks each response's arrival at the
    client.  Every mark has its entry in the legend, and none is a glyph of a font.
    """
    lanes = list(dict.fromkeys(event.lane for event in events))
    # Figure() rather than pyplot: no global state, and the notebook displays the returned object.
    figure = NotebookFigure(figsize=(9, 0.45 * len(lanes) + 1.8), layout="constrained")
    axes = figure.subplots()
    if not lanes:
        axes.set_title(title or N_("nothing recorded yet"))
        return figure

    # Start the axis at the first event: the time before it (starting a server) is not the story.
    origin = min(event.seconds for event in events)
    events = [replace(event, seconds=event.seconds - origin) for event in events]
    end = max(event.seconds for event in events)
    used_labels: set[str] = set()
    for row, lane in enumerate(lanes):
        y = len(lanes) - 1 - row  # first lane at the top
        lane_events = [event for event in events if event.lane == lane]
        by_kind = {event.what: event for event in reversed(lane_events)}  # first of each kind wins
        if REQUEST_SENT in by_kind or REQUEST_RECEIVED in by_kind:
            start = by_kind.get(REQUEST_SENT, by_kind.get(REQUEST_RECEIVED))
            stop = by_kind.get(RESPONSE_RECEIVED, by_kind.get(RESPONSE_SENT))
            if start is not None:
                finish = stop.seconds if stop is not None else end
                label = None if "request" in used_labels else N_("client waits for response")
                used_labels.add("request")
                axes.barh(
                    y,
                    finish - start.seconds,
                    left=start.seconds,
                    height=0.5,
                    color=_REQUEST_COLOUR,
                    alpha=0.8,
                    label=label,
                )
            for what, (marker, colour, offset, text) in _MARKERS.items():
                if what in by_kind:
                    label = None if what in used_labels else text
                    used_labels.add(what)
                    axes.plot(
                        by_kind[what].seconds,
                        y + offset,
                        marker=marker,
                        color=colour,
                        markersize=8,
                        linestyle="none",
                        label=label,
                    )
            if RESPONSE_RECEIVED in by_kind:
                label = None if RESPONSE_RECEIVED in used_labels else N_("client has the response")
                used_labels.add(RESPONSE_RECEIVED)
                axes.axvline(
                    by_kind[RESPONSE_RECEIVED].seconds,
                    color=_REQUEST_COLOUR,
                    linestyle="--",
                    linewidth=0.8,
                    label=label,
                )
        elif TASK_START in by_kind:
            start_event = by_kind[TASK_START]
            stop_event = by_kind.get(TASK_END)
            finish = stop_event.seconds if stop_event is not None else end
            if stop_event is None:
                kind = "running"
            else:
                kind = next((what for what in (TASK_RAISED, TASK_CANCELLED) if what in by_kind), TASK_END)
            colour, hatch, text = _TASK_LOOKS[kind]
            label = None if kind in used_labels else text
            used_labels.add(kind)
            axes.barh(
                y,
                finish - start_event.seconds,
                left=start_event.seconds,
                height=0.5,
                color=colour,
                alpha=0.85,
                hatch=hatch,
                edgecolor="white" if hatch else None,
                label=label,
            )
            axes.annotate(
                start_event.thread,
                (finish, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="dimgray",
            )
    axes.set_yticks(range(len(lanes)), list(reversed(lanes)))
    axes.set_xlabel(N_("seconds since the first event"))
    span = end if end > 0 else 1
    # Margins: marks at 0 are not cut in half, and a thread's name after the last bar fits.
    axes.set_xlim(left=-0.02 * span, right=span * 1.4)
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        axes.set_title(title)
    return figure
