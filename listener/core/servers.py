"""Which server a supervised process is: the pre-fork servers whose workers `children = auto`
judges on their own, and sentry-memwatch itself (never judged).

Evidence first, names second (docs/findings/granian-and-taskworker.md has what each shows):

- the native module a server maps into its master and every worker (/proc/PID/maps): Granian's
  `_granian`, pyuwsgi's `pyuwsgi`. It does not depend on titles, wrappers or what a launcher is
  called: `sentry run web` is uWSGI (pyuwsgi) before January 2026 and Granian after;
- then the executable or script (argv[0], or argv[1] after a Python interpreter, or the module
  after `-m`): `uwsgi ...`, `gunicorn app:app`, `celery -A app worker`, `granian ...`, Sentry's
  `sentry run worker` (Celery) and `sentry run taskworker` (taskbroker-client); or the title a
  server sets ("gunicorn: master [app]", "[celeryd: ...]");
- then the tree: a parent whose children were started by multiprocessing's spawn or forkserver
  (`... --multiprocessing-fork`), or that runs a forkserver (whose forked children, the workers,
  show its command line), is a multiprocessing pool; one with other children is an
  unrecognised tree, judged alone and said to be (a guess could signal the wrong process).

multiprocessing's helpers (the resource tracker, the forkserver) run in such trees too; they are
never a worker (`is_helper`)."""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Collection, Sequence


class Server(str, enum.Enum):
    PLAIN = "plain"  # anything else: judged by its own pid (or tree, as the rule says)
    UWSGI = "uwsgi"
    GUNICORN = "gunicorn"
    CELERY = "celery"
    GRANIAN = "granian"
    TASKWORKER = "taskworker"  # taskbroker-client's TaskWorker (`sentry run taskworker`)
    POOL = "multiprocessing"  # a parent of multiprocessing spawn/forkserver children
    # children, and nothing says what they are: judged alone, and said so (never guessed)
    UNRECOGNISED = "unrecognised tree"
    MEMWATCH = "memwatch"  # a sentry-memwatch listener: never a target


# native module (the file's name up to its first dot) -> the server that maps it
NATIVE_MODULES = {"_granian": Server.GRANIAN, "pyuwsgi": Server.UWSGI}
SHELLS = frozenset({"sh", "dash", "bash", "ash", "zsh", "busybox"})
_PYTHON_PREFIXES = ("python", "pypy")
_SPAWNED = "--multiprocessing-fork"  # the last argument of every spawn/forkserver child
_FORKSERVER = "multiprocessing.forkserver"
_HELPERS = ("multiprocessing.resource_tracker", _FORKSERVER)
_SENTRY_RUN = {"worker": Server.CELERY, "taskworker": Server.TASKWORKER}


def recognise(argv: Sequence[str], modules: Collection[str] = (),
              children: Sequence[Sequence[str]] = ()) -> Server:
    """The server a process runs, from its command line, the native modules it maps and its
    children's command lines; PLAIN when it is none of those we know."""
    if not argv:
        return Server.PLAIN
    by_name = _by_name(list(argv))
    if by_name is Server.MEMWATCH:
        return by_name
    for module in modules:
        if module in NATIVE_MODULES:
            return NATIVE_MODULES[module]
    if by_name is not Server.PLAIN:
        return by_name
    workers = [child for child in children if not is_helper(child)]
    if any(child and child[-1] == _SPAWNED for child in workers) or any(
            _FORKSERVER in arg for child in children for arg in child[:4]):
        return Server.POOL  # spawned children, or a forkserver that forks the workers
    return Server.UNRECOGNISED if workers else Server.PLAIN


def _by_name(argv: list[str]) -> Server:
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
    if program == "granian":
        return Server.GRANIAN
    if program == "sentry" and args[:1] == ["run"] and len(args) > 1:
        # `sentry run web` says nothing of its server (uWSGI, then Granian): its modules do
        return _SENTRY_RUN.get(args[1], Server.PLAIN)
    if program == "sentry-memwatch" or (program == "listener" and _ran_as_module(argv)):
        return Server.MEMWATCH
    return Server.PLAIN


def is_helper(argv: Sequence[str]) -> bool:
    """multiprocessing's resource tracker or forkserver: in a pool's tree, never a worker."""
    return any(helper in arg for arg in argv[:4] for helper in _HELPERS)


def is_shell_wrapper(argv: Sequence[str]) -> bool:
    """`sh -c "uwsgi ..."`: a shell that runs the server as its child (dash does not exec)."""
    return len(argv) >= 2 and posixpath.basename(argv[0]) in SHELLS and "-c" in argv[1:3]


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



# Servers whose stop on supervisord's SIGTERM is a warm shutdown, with the seconds it may take
# and what bounds it: a stopwaitsecs below that makes supervisord SIGKILL it mid-way, and the
# work it was finishing is lost (a memory restart is such a stop). uWSGI (die-on-term) and plain
# programs stop at once.
WARM_SHUTDOWN: dict[Server, tuple[float, str]] = {
    Server.CELERY: (60.0, "its warm shutdown lets running tasks finish: set it above the "
                          "longest task"),
    Server.TASKWORKER: (36.0, "its stop takes about 31 s at --concurrency=4, 5 s more per "
                              "extra child"),
    Server.GUNICORN: (35.0, "its workers finish their requests within graceful_timeout, 30 s "
                            "by default"),
    Server.GRANIAN: (35.0, "its workers drain within workers_kill_timeout, 30 s"),
}


def short_stop_wait(server: Server, stopwaitsecs: float) -> str | None:
    """What to say when a program's stopwaitsecs is shorter than its server's warm shutdown;
    None when it is long enough, or the server stops at once."""
    if server not in WARM_SHUTDOWN:
        return None
    needed, why = WARM_SHUTDOWN[server]
    if stopwaitsecs >= needed:
        return None
    return (f"stopwaitsecs={stopwaitsecs:g} is shorter than {server.value}'s warm shutdown: a "
            f"restart ends in SIGKILL and may lose work; set stopwaitsecs to at least "
            f"{needed:g} ({why})")
