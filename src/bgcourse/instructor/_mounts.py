"""A small file system of its own for the kernel's folder, where the grader runs as root.

The kernel's folder (its connection file and IPC sockets) is the one place on the host's disk
that a sandboxed kernel can write, because the grader must reach the sockets from outside. On
the host's disk a learner's code could fill it faster than the grader's watch stops the run; a
``tmpfs`` of a few MiB and a few dozen files cannot grow past its size at all.

Mounting needs root, and the mount must not outlive the worker that made it (a worker can be
killed): so a worker first gives itself a mount namespace of its own, private (nothing mounted
in it reaches the host's), and its tmpfs ends with it, however it ends. Elsewhere (no root, or a
process with threads already, where ``unshare`` would move only one thread) nothing is mounted,
and the grader's watch of the folder is what holds.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

__all__ = ["private_mounts", "small_tmpfs", "unmount"]

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
_MNT_DETACH = 2
_state = {"private": False}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def private_mounts() -> bool:
    """Give this process a private mount namespace (as root, before any thread starts); whether it has one."""
    if _state["private"]:
        return True
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or threading.active_count() > 1:
        return False
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        return False
    # Mount events would otherwise propagate to the host's namespace, which shares the same peers.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    _state["private"] = True
    return True


def small_tmpfs(folder: Path, size_bytes: int, entries: int) -> bool:
    """Mount a tmpfs of at most ``size_bytes`` and ``entries`` files on ``folder``, if mounts are private here."""
    if not _state["private"]:
        return False
    options = f"size={size_bytes},nr_inodes={entries},mode=700".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    status: int = _libc().mount(b"tmpfs", os.fsencode(folder), b"tmpfs", flags, options)
    return status == 0


def unmount(folder: Path) -> None:
    """Detach what is mounted on ``folder`` (at once, even if the kernel's last sockets are still open)."""
    _libc().umount2(os.fsencode(folder), _MNT_DETACH)
