"""The safety rules against a real supervisord: non-blocking, rolling, budget, dry run."""

from __future__ import annotations

import time

import pytest

from tests.harness import hog, value, wait_for

pytestmark = pytest.mark.both_modes  # listing every tick, and the table from events


def test_events_are_answered_promptly_while_a_slow_stop_is_in_flight(supervisord, listener):
    sv = supervisord(f"""
[program:stubborn]
command={hog('--mb', 60, '--ignore-term')}
stopwaitsecs=3
startsecs=0
""")
    before = sv.wait_allocated({"stubborn:stubborn": 55})["stubborn:stubborn"]
    # a stop that outlasts --rpc-timeout is still a restart, not a failure: the loop's timeout
    # guards the loop, and supervisord's stopwaitsecs bounds the stop
    lst = listener("-p", "stubborn=30MB", "--rpc-timeout", "1s", server_url=sv.url)
    lst.tick()
    wait_for(lambda: sv.infos()["stubborn:stubborn"]["statename"] == "STOPPING",
             what="the stop to begin")
    latencies = []
    while sv.infos()["stubborn:stubborn"]["statename"] == "STOPPING":
        began = time.perf_counter()
        assert lst.send("TICK_5") == b"OK"
        latencies.append(time.perf_counter() - began)
    new = sv.wait_running("stubborn:stubborn")["stubborn:stubborn"]
    assert new != before
    assert len(latencies) >= 10  # the stop took seconds; we answered many events meanwhile
    latencies.sort()
    # generous, for shared machines: the point is "not blocked for the stop's 3 seconds"
    assert latencies[len(latencies) // 2] < 0.25, latencies
    assert max(latencies) < 1.5, latencies
    assert "overflow" not in sv.log_text()
    samples = wait_for(lambda: (s := lst.metrics()) and value(
        s, "memwatch_restarts_total", group="stubborn", process="stubborn") == 1 and s,
        what="restart counted")
    assert value(samples, "memwatch_restart_failures_total", group="stubborn", process="stubborn") == 0


def test_max_parallel_1_restarts_a_group_one_process_at_a_time(supervisord, listener):
    sv = supervisord(f"""
[program:pool]
command={hog('--mb', 50)}
process_name=%(program_name)s_%(process_num)02d
numprocs=4
startsecs=1
""")
    before = sv.wait_allocated({f"pool:pool_{i:02d}": 45 for i in range(4)})
    # one restart each: the new processes are over the limit too, and must be left alone
    lst = listener("-g", "pool=30MB", "--max-parallel", "1", "--max-restarts", "1", server_url=sv.url)
    most_down = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        lst.tick()
        infos = {n: i for n, i in sv.infos().items() if n.startswith("pool:")}
        down = sum(1 for i in infos.values() if i["statename"] != "RUNNING")
        most_down = max(most_down, down)
        restarted = [n for n, i in infos.items() if i["pid"] != before[n]]
        if len(restarted) == 4 and down == 0:
            break
        time.sleep(0.05)  # pacing between ticks, not waiting for a condition
    else:
        raise AssertionError(f"not all restarted: {sv.infos()}")
    assert most_down == 1
    samples = lst.metrics()
    for i in range(4):
        assert value(samples, "memwatch_restarts_total", group="pool", process=f"pool_{i:02d}") == 1


def test_restart_budget_stops_a_restart_loop_and_counts_suppressed_actions(supervisord, listener):
    sv = supervisord(f"""
[program:leaky]
command={hog('--mb', 50)}
startsecs=0
""")
    sv.wait_running()
    lst = listener("-p", "leaky=30MB", "--max-restarts", "2", "--restart-window", "10m",
                   server_url=sv.url)

    def counters():
        s = lst.metrics()
        return (value(s, "memwatch_restarts_total", group="leaky", process="leaky"),
                value(s, "memwatch_restarts_suppressed_total", group="leaky", process="leaky"))

    def tick_until_suppressed():
        # each restart's new process leaks again at once: tick until the budget says no
        lst.tick()
        restarts, suppressed = counters()
        assert restarts is not None and restarts <= 2
        return suppressed and sv.infos()["leaky:leaky"]["statename"] == "RUNNING"

    wait_for(tick_until_suppressed, timeout=60, interval=0.1, what="a suppressed action")
    assert counters()[0] == 2
    pid = sv.pid("leaky:leaky")
    suppressed = counters()[1]
    for _ in range(3):
        lst.tick()
    assert counters() == (2, suppressed + 3)
    assert sv.pid("leaky:leaky") == pid
    assert lst.stderr().count("restart budget used up") == 1


def test_dry_run_restarts_nothing_and_counts_what_it_would_do(supervisord, listener):
    sv = supervisord(f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0
""")
    pid = sv.wait_allocated({"big:big": 45})["big:big"]
    lst = listener("-a", "30MB", "--dry-run", server_url=sv.url)
    lst.tick()
    lst.tick()
    samples = lst.metrics()
    assert value(samples, "memwatch_dry_run_actions_total", group="big", process="big") == 2
    assert value(samples, "memwatch_restarts_total", group="big", process="big") == 0
    assert sv.pid("big:big") == pid
    assert "dry run: would restart" in lst.stderr()
