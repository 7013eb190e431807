"""A restart whose stop supervisord had to force (SIGKILL after stopwaitsecs) is said and
counted as such: a warm shutdown cut short may have lost work, which a clean restart has not."""

from __future__ import annotations

import pytest

from tests.harness import hog, value, wait_for

pytestmark = pytest.mark.both_modes  # listing every tick, and the table from events

PROGRAMS = f"""
[program:stubborn]
command={hog('--mb', 40, '--ignore-term')}
startsecs=0
stopwaitsecs=1

[program:clean]
command={hog('--mb', 40)}
startsecs=0
stopwaitsecs=1
"""


def forced(lst, name: str) -> float | None:  # type: ignore[no-untyped-def]
    return value(lst.metrics(), "memwatch_forced_stops_total", group=name, process=name)


def test_a_stop_ended_by_sigkill_is_said_and_counted(supervisord, listener):
    sv = supervisord(PROGRAMS)
    before = sv.wait_allocated({"stubborn:stubborn": 35, "clean:clean": 35})
    lst = listener("-a", "20MB", server_url=sv.url)

    def restarted() -> bool:
        lst.tick()
        infos = sv.infos()
        return all(infos[n]["pid"] not in (0, before[n]) and infos[n]["statename"] == "RUNNING"
                   for n in before)

    wait_for(restarted, timeout=30, interval=0.2, what="both restarted")
    wait_for(lambda: forced(lst, "stubborn") == 1, what="the forced stop counted",
             log=lst.stderr_path)
    assert forced(lst, "clean") == 0  # exported at 0: increase() sees the first one
    lines = [line for line in lst.stderr().splitlines() if "stop forced" in line]
    assert len(lines) == 1 and "process=stubborn:stubborn" in lines[0], lines
    assert "stopwaitsecs=1" in lines[0] and "tasks may be lost" in lines[0]
    assert "killing 'stubborn'" in sv.log_text()  # supervisord's own word for it
    assert "killing 'clean'" not in sv.log_text()
