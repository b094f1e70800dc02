"""Helpers for the FastAPI background tasks course: a real server, a timeline, and quizzes."""

from __future__ import annotations

from bgcourse._kernel import KernelRun, run_in_fresh_kernel
from bgcourse._logs import capture_logs
from bgcourse._measure import LatencySample, ProcessStatus, count_primes, cpu_time_of, probe_latency, process_status
from bgcourse._plot import NotebookFigure, plot_timeline
from bgcourse._quiz import Question, Quiz, QuizFormatError, WrongAnswer, find_quiz_file, load_quiz
from bgcourse._server import ServerStartError, serve
from bgcourse._smtp import MailServer, smtp_server
from bgcourse._source import SourceHit, find_in_source
from bgcourse._timeline import LANE_HEADER, Event, Timeline, TimelineMiddleware
from bgcourse._tracebacks import LoggedError, logged_errors

__all__ = [
    "Event",
    "KernelRun",
    "LANE_HEADER",
    "LatencySample",
    "LoggedError",
    "MailServer",
    "NotebookFigure",
    "ProcessStatus",
    "Question",
    "Quiz",
    "QuizFormatError",
    "ServerStartError",
    "SourceHit",
    "Timeline",
    "TimelineMiddleware",
    "WrongAnswer",
    "capture_logs",
    "count_primes",
    "cpu_time_of",
    "find_in_source",
    "find_quiz_file",
    "load_quiz",
    "logged_errors",
    "plot_timeline",
    "probe_latency",
    "process_status",
    "run_in_fresh_kernel",
    "serve",
    "smtp_server",
]
