"""Host memory pressure on a real listener under a real supervisord: a MemAvailable floor above
what this host has puts it under pressure at once, and the one program furthest over its
pressure-limit is restarted, only it, though another is over too."""

from __future__ import annotations

from tests.harness import hog, program, value, wait_for


def test_under_pressure_the_one_furthest_over_its_pressure_limit_is_restarted(supervisord,
                                                                             listener):
    sv = supervisord(program("big", hog("--mb", 120)) + program("mid", hog("--mb", 80))
                     + program("small", hog("--mb", 5)))
    pids = sv.wait_allocated({"big:big": 120, "mid:mid": 80})
    lst = listener("-a", "1GB,pressure-limit=50MB", "--pressure-available", "100000GB",
                   server_url=sv.url)
    lst.tick()
    wait_for(lambda: "restarting process over its memory limit" in lst.stderr(), what="a restart")
    said = lst.stderr()
    assert "host under memory pressure" in said and "MemAvailable" in said
    assert "under host memory pressure" in said and "process=big:big" in said
    wait_for(lambda: sv.infos()["big:big"]["pid"] not in (0, pids["big:big"]), what="restarted")
    lst.tick()  # within the minute: nothing more, though mid is over its pressure limit too
    samples = lst.metrics()
    assert value(samples, "memwatch_restarts_total", group="big", process="big") == 1
    assert value(samples, "memwatch_restarts_total", group="mid", process="mid") == 0
    assert sv.infos()["mid:mid"]["pid"] == pids["mid:mid"]
    assert value(samples, "memwatch_host_under_pressure") == 1
    assert (value(samples, "memwatch_host_memory_available_bytes") or 0) > 0
    assert (value(samples, "memwatch_host_memory_total_bytes") or 0) > 0


def test_without_pressure_settings_nothing_changes_and_the_headroom_is_still_exported(
        supervisord, listener):
    sv = supervisord(program("big", hog("--mb", 120)))
    sv.wait_allocated({"big:big": 120})
    lst = listener("-a", "1GB,pressure-limit=50MB", server_url=sv.url)
    lst.tick()
    lst.tick()
    samples = lst.metrics()
    assert value(samples, "memwatch_restarts_total", group="big", process="big") == 0
    assert value(samples, "memwatch_host_under_pressure") == 0
    assert (value(samples, "memwatch_host_memory_available_bytes") or 0) > 0
    assert "pressure-limit=50.0MiB" in lst.stderr()  # the rule, as said at start
    assert "host under memory pressure" not in lst.stderr()
