"""What a grading kernel may not do, enforced from inside its interpreter.

``GUARD_SOURCE`` is written as ``sitecustomize.py`` into a folder on the kernel's ``PYTHONPATH``,
so Python runs it at start-up, before ipykernel and before any learner code, and again in every
Python child process the learner starts. It sets the memory limit and adds an audit hook
(PEP 578), which cannot be removed once added, that refuses:

- opening or listing anything under the protected folders (the course's answer keys and
  solutions, the other learners' submissions, the gradebook);
- connecting to, or resolving, any host but the loopback interface (the exercise checks start
  servers on 127.0.0.1);
- starting programs other than Python (whose children get the same hook) and the servers the
  course's helpers start (``ALLOWED_PROGRAMS``), or passing them a protected path.

Each refusal is also appended to a log file that the grader reads after every cell, so that it
can say why an item scored 0 even if the learner's code caught the ``PermissionError``.

This is a guard against accidents and casual cheating, not a security boundary: code that runs
in the kernel can still, say, load a C extension. The boundary is the operating system's sandbox
of ``_isolation.py``, in which the guard runs as a second line, to name what it refused.
"""

from __future__ import annotations

__all__ = ["ALLOWED_PROGRAMS", "GUARD_SOURCE", "GUARD_VARIABLE", "output_cap_source"]

GUARD_VARIABLE = "BGCOURSE_GRADING_GUARD"
# What bgcourse's own helpers start (Redis for the durable queue, PostgreSQL for chapter 3).
ALLOWED_PROGRAMS = ("initdb", "pg_ctl", "pg_isready", "postgres", "redis-cli", "redis-server")

GUARD_SOURCE = '''\
"""Installed by `bgcourse grade` for its grading kernels: see bgcourse/instructor/_guard.py."""


def _install():
    import ipaddress
    import json
    import os
    import resource
    import sys

    config = json.loads(os.environ["BGCOURSE_GRADING_GUARD"])
    if config["memory_bytes"]:
        resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"], config["memory_bytes"]))
    protected = tuple(os.path.join(os.path.realpath(folder), "") for folder in config["protected"])
    log = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    realpath, fspath, fsdecode, write = os.path.realpath, os.fspath, os.fsdecode, os.write
    loopback_names = {"", "localhost", "localhost.localdomain", "ip6-localhost"}
    programs = set(config["programs"])

    def refuse(kind, what, message):
        write(log, (kind + "\\t" + what.replace("\\n", " ") + "\\n").encode("utf-8", "replace"))
        raise PermissionError("not allowed while grading: " + message)

    def is_protected(path):
        if isinstance(path, int) or path is None:
            return None
        try:
            full = realpath(fsdecode(fspath(path)))
        except (TypeError, ValueError):
            return None
        return full if any((full + os.sep).startswith(folder) for folder in protected) else None

    def is_loopback(host):
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if host is None or host in loopback_names:
            return True
        try:
            address = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified

    def check_program(program, argv):
        name = os.path.basename(fsdecode(program)) if program else ""
        if not (name.startswith("python") or name in programs):
            refuse("program", name or "?", "starting the program " + (name or "?"))
        for argument in argv if isinstance(argv, (list, tuple)) else ():
            path = is_protected(argument) if isinstance(argument, (str, bytes)) else None
            if path:
                refuse("read", path, "passing " + path + " to " + name + " (answer keys are off limits)")

    def hook(event, args):
        if event in ("open", "os.listdir", "os.scandir"):
            path = is_protected(args[0] if args else None)
            if path:
                refuse("read", path, "reading " + path + " (answer keys and other learners' work are off limits)")
        elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1] if len(args) > 1 else None
            if isinstance(address, tuple) and address and not is_loopback(address[0]):
                where = str(address[0]) + ":" + str(address[1] if len(address) > 1 else "")
                refuse("network", where, "connecting to " + where + " (only 127.0.0.1 is reachable)")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            if args and not is_loopback(args[0]):
                refuse("network", str(args[0]), "looking up " + str(args[0]) + " (only 127.0.0.1 is reachable)")
        elif event == "subprocess.Popen":
            argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            check_program(args[0] or (argv[0] if argv else ""), argv)
        elif event in ("os.exec", "os.posix_spawn"):
            check_program(args[0], args[1])
        elif event in ("os.system", "pty.spawn"):
            refuse("program", event, event + "()")

    sys.addaudithook(hook)


_install()
del _install
'''

# The first cell of every graded notebook: cap what one cell can print (kernel side, so that a
# `print` of a gigabyte never even reaches the grader). A notice replaces what is cut.
_OUTPUT_CAP = """\
def _bgcourse_cap_output(limit):
    from ipykernel.iostream import OutStream

    write, written = OutStream.write, [0]

    def capped(self, text):
        if written[0] > limit:
            return len(text)
        written[0] += len(text)
        if written[0] > limit:
            notice = f"\\n[bgcourse: output cut after {limit} characters]\\n"
            text = text[: max(0, limit - written[0] + len(text))] + notice
        return write(self, text)

    OutStream.write = capped
    get_ipython().events.register("pre_run_cell", lambda *args: written.__setitem__(0, 0))


_bgcourse_cap_output(LIMIT)
del _bgcourse_cap_output
"""


def output_cap_source(limit: int) -> str:
    return _OUTPUT_CAP.replace("LIMIT", str(int(limit)))
