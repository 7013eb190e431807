"""What each supervised process runs, from what /proc shows of it (listener.core.servers decides
from the evidence): its command line, the native modules it maps, its children's command lines.

Read once per process start. A process recognised as nothing in particular is looked at again
on later ticks while it is young (a pool's children, a wrapped server's master, appear after
their parent), and never after. A shell wrapper (`sh -c "uwsgi ..."`, which dash does not
exec) is looked through to the one child it runs."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from listener.core.model import ProcessInfo
from listener.core.servers import Server, is_helper, is_shell_wrapper, recognise
from listener.host.procfs import ProcReader

log = logging.getLogger("memwatch.sampler")

YOUNG = 60.0  # seconds after start during which an unrecognised process is looked at again
UNSURE = frozenset({Server.PLAIN, Server.UNRECOGNISED})  # a young one may still show more
MAX_WRAPPERS = 3  # shells looked through, at most


# namespec -> the command supervisord is configured to run; None when it cannot be asked
Configured = Callable[[], Mapping[str, str] | None]


class Recogniser:
    def __init__(self, reader: ProcReader, configured: Configured | None = None) -> None:
        """`configured`: supervisord's configured commands, asked when a process calls itself
        sentry-memwatch: only one that supervisord is configured to run as sentry-memwatch is
        one (a process can rename itself, not its configuration). None: its name is taken."""
        self.reader = reader
        self._configured = configured
        self._servers: dict[tuple[int, float], Server] = {}  # (pid, start) -> what it runs
        self._said: dict[str, Server] = {}  # namespec -> the server last logged for it
        self._helpers: dict[tuple[int, float], bool] = {}  # (pid, start) -> a pool's helper

    def servers(self, running: Sequence[ProcessInfo], now: float,
                children: Callable[[], Mapping[int, list[int]]],
                auto: Collection[str] = ()) -> dict[str, Server]:
        """What each running process runs; `children` gives the parent->children map (a /proc
        scan, made only if a process has to be looked at). A young one found to be nothing in
        particular is looked at again if its rule is `auto` (namespecs in `auto`)."""
        known, self._servers = self._servers, {}
        found = {}
        for proc in running:
            key = (proc.pid, proc.start)
            server = known.get(key)
            young = proc.namespec in auto and now - proc.start < YOUNG
            if server is None or (server in UNSURE and young):
                # the tree tells only `auto` anything (a pool, a wrapped server): no scan else.
                # The modules are read for all (~0.5 ms a process, once per start): advise and
                # check say what each program runs
                server = self._look(proc, children() if proc.namespec in auto else {})
                if server is None:  # gone: look again next time
                    found[proc.namespec] = Server.PLAIN
                    continue
                self._say(proc, server)
            self._servers[key] = server
            found[proc.namespec] = server
        return found

    def _look(self, proc: ProcessInfo, kids: Mapping[int, list[int]]) -> Server | None:
        pid = proc.pid
        argv = self.reader.cmdline(pid)
        for _ in range(MAX_WRAPPERS):
            if argv is None or not is_shell_wrapper(argv) or len(kids.get(pid, ())) != 1:
                break
            pid = kids[pid][0]
            argv = self.reader.cmdline(pid)
        if argv is None:
            return None
        children = [self.reader.cmdline(child) or [] for child in kids.get(pid, ())]
        modules = self.reader.native_modules(pid)
        server = recognise(argv, modules, children)
        if server is Server.MEMWATCH and not self._configured_as_memwatch(proc):
            log.warning("this process calls itself sentry-memwatch, but supervisord is not "
                        "configured to run sentry-memwatch for it: judged as any other",
                        extra={"fields": {"process": proc.namespec, "pid": proc.pid}})
            server = recognise(["-"], modules, children)  # what it runs, without its name
        return server

    def _configured_as_memwatch(self, proc: ProcessInfo) -> bool:
        if self._configured is None:
            return True
        command = (self._configured() or {}).get(proc.namespec, "")
        try:
            return recognise(shlex.split(command)) is Server.MEMWATCH
        except ValueError:  # quoting shlex cannot split: not ours
            return False

    def _say(self, proc: ProcessInfo, server: Server) -> None:
        """What `auto` will use, said when it changes (not at every restart)."""
        if server is Server.PLAIN or self._said.get(proc.namespec) is server:
            return
        self._said[proc.namespec] = server
        said = {"process": proc.namespec, "pid": proc.pid, "server": server.value}
        if server is Server.UNRECOGNISED:
            log.warning("children = auto cannot tell what this process runs: it is judged alone, "
                        "its children are not; give its rule children = each or sum",
                        extra={"fields": said})
        else:
            log.info("recognised", extra={"fields": said})

    def helpers(self, units: Iterable[tuple[int, float]]) -> set[int]:
        """The pids among a tree's (pid, start) that are multiprocessing's helpers; each
        command line read once per process start. Call once per tick with every unit."""
        known, self._helpers = self._helpers, {}
        found = set()
        for key in units:
            helper = known.get(key)
            if helper is None:
                argv = self.reader.cmdline(key[0])
                helper = argv is not None and is_helper(argv)
            self._helpers[key] = helper
            if helper:
                found.add(key[0])
        return found
