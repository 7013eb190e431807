"""The process table kept from supervisord's events equals supervisord's own listing after every
quiet moment of a randomized soak on a real supervisord: starts, stops, crashes and respawns,
programs added and removed by reread/update, restarts of supervisord, and bursts past the
event buffer.

The real events are taken from a real supervisord by a recorder event listener (a few lines,
below) and relayed, in order and with their real poolserial numbers, to the listener, which the
test drives: so the test decides when a TICK comes and reads the listener's table (its /status)
right after it."""

from __future__ import annotations

import json
import os
import random
import signal
import urllib.request
from pathlib import Path

from tests.harness import ListenerProcess, Relay, Supervisord, hog, recorder_section, value, wait_for

STABLE = {"RUNNING", "STOPPED", "EXITED", "FATAL"}
WITH_PID = {"RUNNING", "STOPPING"}


def programs(names: list[str], numprocs: int = 1) -> str:
    return "".join(f"[program:{n}]\ncommand={hog('--mb', 2)}\nnumprocs={numprocs}\n"
                   f"process_name=%(program_name)s_%(process_num)02d\nstartsecs=0\n"
                   "autorestart=true\nstopasgroup=true\n\n" for n in names)


def truth(sv: Supervisord) -> dict[str, tuple[str, int]] | None:
    """supervisord's listing, once every process is in a state that lasts."""
    infos = sv.infos()
    if any(i["statename"] not in STABLE for i in infos.values()):
        return None
    return {n: (i["statename"], i["pid"] if i["statename"] in WITH_PID else 0)
            for n, i in infos.items()}


def table(lst: ListenerProcess) -> dict[str, tuple[str, int]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/status", timeout=10) as resp:
        return {f"{p['group']}:{p['process']}": (p["state"], p["pid"] if p["state"] in WITH_PID else 0)
                for p in json.load(resp)["processes"]}


def quiet(sv: Supervisord, relay: Relay) -> dict[str, tuple[str, int]]:
    """Wait for every process to settle and every event about it to be recorded."""
    def settled() -> dict[str, tuple[str, int]] | None:
        size = relay.path.stat().st_size if relay.path.exists() else 0
        now = truth(sv)
        last = getattr(settled, "last", None)
        settled.last = (size, now)  # type: ignore[attr-defined]
        return now if now is not None and last == (size, now) else None
    return wait_for(settled, timeout=60, interval=0.3, what="a quiet moment")


def start_listener(sv: Supervisord, root: Path) -> ListenerProcess:
    return ListenerProcess(["-a", "100GB", "--log-level", "debug"], sv.url, root)


def test_the_table_equals_supervisords_listing_after_every_quiet_moment(short_tmp: Path) -> None:
    rng = random.Random(1729)
    names = ["web", "worker", "cron"]
    sv = Supervisord(recorder_section(short_tmp) + programs(names, numprocs=3), short_tmp)
    lst = None
    try:
        sv.wait_running()
        relay = Relay(short_tmp / "events.bin")
        lst = start_listener(sv, short_tmp)
        lst.tick()  # the first tick lists
        added = 0
        for round_ in range(14):
            op = rng.choice(["stop", "start", "crash", "burst", "add", "remove", "crash"])
            if round_ == 7:
                op = "reload"
            rpc = sv.rpc().supervisor
            running = [n for n, i in sv.infos().items() if i["statename"] == "RUNNING"
                       and not n.startswith("recorder")]
            stopped = [n for n, i in sv.infos().items() if i["statename"] != "RUNNING"]
            if op == "stop" and running:
                rpc.stopProcess(rng.choice(running))
            elif op == "start" and stopped:
                rpc.startProcess(rng.choice(stopped))
            elif op == "crash" and running:
                os.kill(sv.infos()[rng.choice(running)]["pid"], signal.SIGKILL)  # respawned
            elif op == "burst":
                group = rng.choice(names)
                rpc.stopProcessGroup(group)
                rpc.startProcessGroup(group)
            elif op == "add":
                added += 1
                names.append(f"extra{added}")
                sv.conf.write_text(sv.conf.read_text() + programs([names[-1]], numprocs=2))
                rpc.reloadConfig()
                rpc.addProcessGroup(names[-1])
            elif op == "remove" and len(names) > 1:
                gone = names.pop(rng.randrange(len(names)))
                text = sv.conf.read_text()
                head, _, rest = text.partition(f"[program:{gone}]")
                sv.conf.write_text(head + rest.partition("\n\n")[2])
                rpc.reloadConfig()
                rpc.stopProcessGroup(gone)
                rpc.removeProcessGroup(gone)
            elif op == "reload":  # supervisord restarts everything, its listeners too
                rpc.restart()
                wait_for(lambda: sv.state() == "RUNNING" and truth(sv), timeout=60,
                         what="supervisord back")
                lst.close()
                relay.skip()
                lst = start_listener(sv, short_tmp)
            expected = quiet(sv, relay)
            relay.forward(lst)
            lst.tick()
            assert table(lst) == expected, (round_, op, lst.stderr()[-3000:])
        samples = lst.metrics()
        assert sum(v for (n, _), v in samples.items() if n == "memwatch_restarts_total") == 0
    finally:
        if lst is not None:
            lst.close()
        sv.stop()


def test_events_dropped_from_a_full_buffer_show_as_a_gap_and_the_next_tick_lists(
        short_tmp: Path) -> None:
    sv = Supervisord(recorder_section(short_tmp, buffer_size=2, slow=0.2)
                     + programs(["web"], numprocs=6), short_tmp)
    lst = None
    try:
        sv.wait_running()
        relay = Relay(short_tmp / "events.bin")
        expected = quiet(sv, relay)
        lst = start_listener(sv, short_tmp)
        relay.forward(lst)
        lst.tick()
        assert table(lst) == expected
        rpc = sv.rpc().supervisor
        rpc.stopProcessGroup("web")  # 12 events into a buffer of 2, read slowly
        rpc.startProcessGroup("web")
        assert "event buffer overflowed" in wait_for(
            lambda: "overflowed" in sv.log_text() and sv.log_text(), what="an overflow")
        expected = quiet(sv, relay)
        relay.forward(lst)
        lst.tick()
        assert table(lst) == expected
        assert "process table listed again" in lst.stderr() and "dropped by supervisord" in lst.stderr()
        assert value(lst.metrics(), "memwatch_restarts_total", group="web", process="web_00") == 0
    finally:
        if lst is not None:
            lst.close()
        sv.stop()


def test_a_restart_for_memory_is_followed_through_the_events_and_done_once(short_tmp: Path) -> None:
    """The behaviour of listing mode, kept: the process over its limit is restarted once, the
    table learns its new pid from the events, and the next ticks judge the new process."""
    sv = Supervisord(recorder_section(short_tmp)
                     + f"[program:big]\ncommand={hog('--mb', 40)}\nstartsecs=1\n\n"
                     + programs(["small"]), short_tmp)
    lst = None
    try:
        sv.wait_running()
        old = sv.wait_allocated({"big:big": 40})["big:big"]
        relay = Relay(short_tmp / "events.bin")
        lst = ListenerProcess(["-p", "big=20MB", "-a", "1GB"], sv.url, short_tmp)
        relay.forward(lst)  # subscribed: the table follows the events from here
        lst.tick()  # lists (first tick), judges big over its limit, restarts it
        wait_for(lambda: value(lst.metrics(), "memwatch_restarts_total", group="big",
                               process="big") == 1, what="the restart")
        expected = quiet(sv, relay)
        assert expected["big:big"][1] not in (0, old)
        relay.forward(lst)
        lst.tick()
        assert table(lst) == expected  # the new pid, from the events alone
        assert "process table listed again" not in lst.stderr()
        for _ in range(3):  # judged again: over again, so restarted again, each time once
            lst.tick()
        samples = lst.metrics()
        assert value(samples, "memwatch_restart_failures_total", group="big", process="big") == 0
        assert value(samples, "memwatch_restarts_total", group="small", process="small_00") == 0
    finally:
        if lst is not None:
            lst.close()
        sv.stop()
