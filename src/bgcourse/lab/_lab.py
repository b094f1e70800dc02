"""`bgcourse lab`: JupyterLab on the learner's own copy (or, with ``--master``, on the master notebooks).

What the learner sees first is chosen here, each setting for a reason:

- the file browser's root is the learner's folder, which holds only their chapters, and the link
  JupyterLab prints (and opens) goes straight to chapter 1 (``default_url``), so that a learner
  with no local browser (a container, WSL, a remote machine) lands on it too;
- the learner's copy is not paired with a jupytext script (jupytext's server and JupyterLab
  extensions are off), so opening or saving a notebook writes that one file and nothing else;
- the kernel talks to JupyterLab over IPC sockets on POSIX systems, not TCP: nothing listens on a
  port, and ipykernel has no reason to warn that the connection is unencrypted;
- the language-server extension looks for no servers (the course needs none; looking only logs a
  long list of those it did not find), the kernel's websocket sends no keep-alive pings (on
  loopback they only earn a warning, see below), and JupyterLab does not ask about fetching news or check for updates;
- the copies carry the ``language_info`` of this Python's kernel, so that opening one does not
  mark it modified (the master notebooks are not autosaved, so opening one writes nothing);
- the notebooks it copies are signed with a key kept in the folder, so JupyterLab does not
  report them as untrusted (nothing in them has run yet).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from bgcourse.instructor._files import write_atomic
from bgcourse.lab._workspace import UPDATED_SUFFIX, prepare_workspace

__all__ = ["FIRST_CHAPTER", "LEARNER_FOLDER", "lab_arguments", "prepare_lab"]

LEARNER_FOLDER = "my-course"
FIRST_CHAPTER = "ch01_core_mechanics.ipynb"
_SETTINGS = ".jupyter"  # inside the folder JupyterLab serves; hidden from its file browser
_USER_SETTINGS = "lab/user-settings"

# JupyterLab settings that are not the learner's business on a first visit.
_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}


# JupyterLab's own font list, with the Simplified Chinese fonts of Linux, macOS and Windows before the generic one.
_CHINESE_FONTS = (
    "system-ui, -apple-system, blinkmacsystemfont, 'Segoe UI', helvetica, arial, 'Noto Sans CJK SC', "
    "'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', "
    "'WenQuanYi Zen Hei', sans-serif, 'Apple Color Emoji', 'Segoe UI Emoji', 'Segoe UI Symbol'"
)


def learner_folder(course: Path, language: str = "en") -> Path:
    """The learner's own copy: ``my-course/``, or ``my-course-zh-CN/`` for the Chinese edition."""
    return course / (LEARNER_FOLDER if language == "en" else f"{LEARNER_FOLDER}-{language}")


def prepare_lab(course: Path, *, master: bool = False, language: str = "en") -> tuple[Path, list[str]]:
    """Make the folder JupyterLab will serve ready; return it and what to tell the learner."""
    if master:
        folder = course / "notebooks" if language == "en" else course / "notebooks" / language
        said = [f"The master notebooks (reference solutions filled in, answers given): {folder}"]
        to_sign = sorted(folder.glob("ch*.ipynb"))
    else:
        folder = learner_folder(course, language)
        report = prepare_workspace(course, folder, language)
        said = report.lines() or [f"Your copy of the course: {folder}"]
        to_sign = [folder / name for name in [*report.created, *report.restored, *report.refreshed]]
        to_sign += [folder / f"{name.removesuffix('.ipynb')}{UPDATED_SUFFIX}" for name in report.offered]
    settings = _settings_folder(folder, master=master)
    _write_settings(settings, master=master, language=language)
    _sign(to_sign, settings)
    return folder, said


def lab_arguments(course: Path, folder: Path, *, master: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line for ``folder``."""
    settings = _settings_folder(folder, master=master)
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    arguments = [
        jupyter,
        "lab",
        f"--config={settings / 'jupyter_server_config.json'}",
        f"--ServerApp.root_dir={folder}",
        f"--LabApp.default_url=/lab/tree/{FIRST_CHAPTER}",
        f"--LabApp.app_settings_dir={settings / 'lab'}",
        f"--NotebookNotary.data_dir={settings}",
    ]
    if (settings / _USER_SETTINGS).is_dir():  # the Chinese edition's copy: its fonts (see _write_settings)
        arguments.append(f"--LabApp.user_settings_dir={settings / _USER_SETTINGS}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        arguments.append("--allow-root")  # JupyterLab refuses root (as in many containers) unless told
    return [*arguments, *extra]


def _settings_folder(folder: Path, *, master: bool) -> Path:
    """Where the lab's settings, and the key that signs its notebooks, are kept."""
    # The master's go in the environment, so that nothing is written into the checkout.
    return Path(sys.prefix) / "bgcourse-lab-master" if master else folder / _SETTINGS


def _write_settings(settings: Path, *, master: bool, language: str = "en") -> None:
    server: dict[str, object] = {
        "ServerApp": {
            "jpserver_extensions": {} if master else {"jupyterlab_jupytext": False},
            # No websocket keep-alive pings: JupyterLab and its kernels talk over loopback, with no
            # proxy to keep a connection open through. With pings, every kernel connection logs
            # "The websocket_ping_timeout (90000) cannot be longer than the websocket_ping_interval
            # (30000)": jupyter_server hands its millisecond settings to tornado 6.5, which reads
            # seconds and refuses a timeout above the interval (jupyter_server issue #1612). A
            # timeout equal to the interval silences tornado but makes jupyter_server's own ping
            # loop close the connection every 30 s.
            "tornado_settings": {"ws_ping_interval": 0},
        },
        # The course needs no language server; looking for 19 of them only logs a list of those missing.
        "LanguageServerManager": {"autodetect": False},
    }
    if os.name == "posix":
        server["KernelManager"] = {"transport": "ipc"}
    page_config = {"disabledExtensions": [] if master else ["jupyterlab-jupytext"]}
    overrides: dict[str, object] = dict(_OVERRIDES)
    if master:
        # A master notebook is paired with its script: an autosave would rewrite both as soon as it is
        # opened (JupyterLab fills in the kernel's language_info). Authors save when they mean to.
        overrides["@jupyterlab/docmanager-extension:plugin"] = {"autosave": False}
    if language == "zh-CN":
        # JupyterLab's page says lang="en", so a browser picks its first CJK font for Chinese, often a
        # Japanese one (Noto Sans CJK JP): colons and semicolons centred, some characters in Japanese
        # forms. Naming the Simplified Chinese fonts first, after the Latin ones, gives Chinese forms.
        # JupyterLab applies CSS overrides from user settings only, so this copy has its own; the
        # learner's later changes to it (a theme, a font size) are kept.
        themes = settings / _USER_SETTINGS / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
        if not themes.exists():
            fonts = {"content-font-family": _CHINESE_FONTS, "ui-font-family": _CHINESE_FONTS}
            write_atomic(themes, json.dumps({"overrides": fonts}, indent=1) + "\n")
    for path, document in (
        (settings / "jupyter_server_config.json", server),
        (settings / "lab" / "overrides.json", overrides),
        (settings / "lab" / "page_config.json", page_config),
    ):
        write_atomic(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def _sign(notebooks: Sequence[Path], settings: Path) -> None:
    """Trust the notebooks the course just wrote (JupyterLab signs what the learner saves)."""
    if not notebooks:
        return
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary(data_dir=str(settings))
    for path in notebooks:
        notary.sign(nbformat.read(path, as_version=4))
