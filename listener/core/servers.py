"""Which server a supervised process is, from its command line: the pre-fork servers whose
workers `children = auto` judges on their own, and sentry-memwatch itself (never judged).

Recognised by the executable or script (argv[0], or argv[1] after a Python interpreter, or the
module after `-m`), which is how each is started: `uwsgi ...`, `python -m pyuwsgi`, `gunicorn
app:app`, `celery -A app worker`, and Sentry's own `sentry run web` (uWSGI inside) and
`sentry run worker` (Celery inside). A server that rewrites its process title (gunicorn with
setproctitle: "gunicorn: master [app]") is recognised by that title too."""

from __future__ import annotations

import enum
import posixpath


class Server(str, enum.Enum):
    PLAIN = "plain"  # anything else: judged by its own pid (or tree, as the rule says)
    UWSGI = "uwsgi"
    GUNICORN = "gunicorn"
    CELERY = "celery"
    MEMWATCH = "memwatch"  # a sentry-memwatch listener: never a target


_PYTHON_PREFIXES = ("python", "pypy")


def recognise(argv: list[str]) -> Server:
    """The server a command line runs; PLAIN when it is none of those we know."""
    if not argv:
        return Server.PLAIN
    title = argv[0]
    if len(argv) == 1 and " " in title:  # a process title rewritten as one string
        argv = title.split()
    program, args = _program(argv)
    if program in ("uwsgi", "pyuwsgi") or title.startswith(("uWSGI ", "uwsgi ")):
        return Server.UWSGI
    if program == "gunicorn" or title.startswith("gunicorn:"):
        return Server.GUNICORN
    if program == "celery" or title.startswith(("[celeryd", "celeryd:")):
        return Server.CELERY if "beat" not in args else Server.PLAIN
    if program == "sentry" and args[:1] == ["run"]:
        return {"web": Server.UWSGI, "worker": Server.CELERY}.get(args[1] if len(args) > 1 else "",
                                                                 Server.PLAIN)
    if program == "sentry-memwatch" or (program == "listener" and _ran_as_module(argv)):
        return Server.MEMWATCH
    return Server.PLAIN


def _program(argv: list[str]) -> tuple[str, list[str]]:
    """The name of what runs (a script's, not the interpreter's) and its arguments."""
    first = posixpath.basename(argv[0])
    if not first.startswith(_PYTHON_PREFIXES):
        return first, argv[1:]
    rest = argv[1:]
    while rest and rest[0].startswith("-"):  # interpreter options: -u, -X dev, -m module
        option = rest.pop(0)
        if option == "-m" and rest:
            return rest[0], rest[1:]
        if option in ("-X", "-W") and rest:
            rest.pop(0)
    if not rest:
        return first, []
    return posixpath.basename(rest[0]).removesuffix(".py"), rest[1:]


def _ran_as_module(argv: list[str]) -> bool:
    """`python -m listener`: our package run from a checkout (a script named listener is not)."""
    return any(a == "-m" and b == "listener" for a, b in zip(argv, argv[1:], strict=False))

