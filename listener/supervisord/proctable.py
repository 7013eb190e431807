"""The process table, kept from supervisord's own events so that a tick needs no
getAllProcessInfo (supervisord is single-threaded: building that answer for 1000 processes
stops it for most of a second, every tick).

With `events=TICK_5,PROCESS_STATE,PROCESS_GROUP`, every state change of every process reaches
the listener as an event. The table starts from one full listing and then follows the events:
group, name, pid, state, start and stop times. It lists everything again (`resync_reason`):

- at start, and until the first PROCESS_STATE event shows the subscription;
- after a gap in `poolserial` (supervisord numbers the events it sends to this listener: a
  number skipped is an event dropped from a full buffer);
- after an event that does not follow from the table (its from_state is not the table's state):
  the table missed something, or the event was sent before a listing that already counted it;
- after PROCESS_GROUP_ADDED (a group added by reread/update: processes that do not autostart
  send no state event); a removed group is dropped on PROCESS_GROUP_REMOVED;
- every `resync` seconds anyway, and whenever supervisord could not be reached.

A restart is confirmed with one getProcessInfo before supervisord is asked to stop anything
(listener.actions.restarts), and so is a child signal decided from the table (listener.daemon), on top
of the kernel start-time checks of every pid: a stale entry can delay an action, never aim one
at the wrong process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from listener.core.model import ProcessInfo
from listener.core.states import EXITS_INTO, RUNNING, STARTING, STOPPED, WITH_PID
from listener.log import fields
from listener.supervisord import protocol
from listener.supervisord.rpc import Supervisor, SupervisorError, describe_error

STATE_EVENT = "PROCESS_STATE_"
GROUP_ADDED = "PROCESS_GROUP_ADDED"
GROUP_REMOVED = "PROCESS_GROUP_REMOVED"
MAX_REASONS = 3  # said in the log line of the listing: the first few are enough


log = logging.getLogger("memwatch.daemon")


class ProcessTable:
    def __init__(self, resync_every: float, monotonic: Callable[[], float],
                 wall: Callable[[], float], boot: Callable[[], float]) -> None:
        self.resync_every = resync_every
        self._monotonic = monotonic
        self._wall = wall
        self._boot = boot
        self._entries: dict[str, ProcessInfo] = {}
        self._listed = False
        self._listed_at = -math.inf
        self._poolserial: int | None = None
        self._reasons: list[str] = ["start"]  # why the next tick must list; empty: it need not
        self.subscribed = False  # a PROCESS_STATE event has arrived: the events keep the table

    # --- events ---

    def saw(self, headers: Mapping[str, str]) -> None:
        """Every event: a gap in poolserial means supervisord dropped events for this listener.
        A number seen before is an event sent again (after a FAIL), not a gap."""
        text = headers.get("poolserial", "")
        if not text.isdigit():
            return
        serial = int(text)
        if self._poolserial is not None and serial > self._poolserial + 1:
            self._resync(f"{serial - self._poolserial - 1} events dropped by supervisord "
                         "(poolserial gap: raise the listener's buffer_size)")
        if self._poolserial is None or serial > self._poolserial:
            self._poolserial = serial

    def apply(self, eventname: str, payload: str) -> None:
        """A PROCESS_STATE_* or PROCESS_GROUP_* event."""
        tokens = protocol.tokens(payload)[0]
        if eventname == GROUP_ADDED:
            self._resync(f"group {tokens.get('groupname', '?')} added")
            return
        if eventname == GROUP_REMOVED:
            group = tokens.get("groupname", "")
            self._entries = {n: p for n, p in self._entries.items() if p.group != group}
            return
        if not eventname.startswith(STATE_EVENT):
            return
        self.subscribed = True
        state = eventname.removeprefix(STATE_EVENT)
        group, name = tokens.get("groupname", ""), tokens.get("processname", "")
        namespec = f"{group}:{name}"
        before = self._entries.get(namespec)
        if not self._listed:
            return  # the first listing will say where everything is
        if before is None:
            if tokens.get("from_state") != STOPPED:  # a new process starts out STOPPED
                self._resync(f"{namespec} is not in the table")
            before = ProcessInfo(group, name, 0, STOPPED, 0.0)
        elif tokens.get("from_state") != before.statename:
            self._resync(f"{namespec} went {tokens.get('from_state')}->{state}, the table "
                         f"had it {before.statename}")
        self._entries[namespec] = self._moved(before, state, tokens)

    def _moved(self, before: ProcessInfo, state: str, tokens: Mapping[str, str]) -> ProcessInfo:
        pid_text = tokens.get("pid", "")
        pid = int(pid_text) if state in WITH_PID and pid_text.isdigit() else 0
        now = self._wall()
        start = now if state == STARTING else before.start
        if state == RUNNING and not start:
            start = now
        stop = now if state in EXITS_INTO and before.statename not in EXITS_INTO else before.stop
        # a pid that started after this moment is not this process (listener.host.sampler)
        return replace(before, pid=pid, statename=state, start=start, stop=stop,
                       listed_at=self._boot() if pid else math.inf)

    def _resync(self, reason: str) -> None:
        if len(self._reasons) < MAX_REASONS and reason not in self._reasons:
            self._reasons.append(reason)

    # --- ticks ---

    def resync_reason(self) -> str | None:
        """Why the next tick must list everything; None when the table can be trusted."""
        if not self._reasons and self._monotonic() - self._listed_at >= self.resync_every:
            self._reasons.append(f"periodic resync ({self.resync_every:g}s)")
        return "; ".join(self._reasons) or None

    def reset(self, processes: Iterable[ProcessInfo]) -> None:
        """A full listing: the table is supervisord's now."""
        self._entries = {p.namespec: p for p in processes}
        self._listed = True
        self._listed_at = self._monotonic()
        self._reasons = []

    @property
    def listed(self) -> bool:
        return self._listed

    def stale(self, namespec: str) -> None:
        """supervisord said otherwise of a process when asked about it."""
        self._resync(f"{namespec} was not as the table had it")

    def unreachable(self) -> None:
        self._resync("supervisord was unreachable")

    def processes(self) -> list[ProcessInfo]:
        return list(self._entries.values())

    def confirm(self, supervisor: Supervisor, namespec: str, pid: int) -> bool:
        """A child signal decided from this table: one getProcessInfo first, so that a table
        that missed a change costs a tick, never a signal to the wrong tree."""
        try:
            info = supervisor.process(namespec)
        except SupervisorError as exc:
            log.warning("child signal not sent: supervisord did not confirm the process",
                        extra=fields(process=namespec, error=describe_error(exc)))
            self.unreachable()
            return False
        if info.pid == pid and info.statename == RUNNING:
            return True
        log.info("child signal not sent: the process changed since the table said so",
                 extra=fields(process=namespec, pid=pid, now_pid=info.pid, state=info.statename))
        self.stale(namespec)
        return False
