"""What a probe reads from `check --listener`: 2 when the listener cannot tell (no TICK arrives,
events= without TICK_5, said within --tick-timeout in its log once, /status and the page;
supervisord out of its reach), 1 when a process is over its limit and nothing deals with it,
0 otherwise (draining: test_child_signals.py)."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from tests.harness import PY, ROOT, free_port, hog, wait_for


def listener_section(port: int, events: str, timeout: str = "3s") -> str:
    return f"""
[eventlistener:memwatch]
command={PY} -m listener -a 20MB --metrics-port {port} --tick-timeout {timeout} --state-dir %(here)s/state
events={events}
startsecs=1
stderr_logfile=%(here)s/memwatch.log
environment=PYTHONPATH="{ROOT}"

[program:big]
command={hog('--mb', 40)}
startsecs=0
"""


def status(port: int) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def check_listener(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "listener", "check", "--listener",
                           f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_a_listener_that_gets_no_tick_says_so(supervisord):
    port = free_port()
    sv = supervisord(listener_section(port, "PROCESS_STATE,PROCESS_GROUP"))
    sv.wait_running("memwatch:memwatch", "big:big")
    log = sv.root / "memwatch.log"
    problem = wait_for(lambda: status(port)["tick_problem"], timeout=20,
                       what="/status to name the missing TICK", log=log)
    assert "no TICK event within 3s of the start" in problem
    assert "add TICK_5 to events= in [eventlistener:memwatch]" in problem
    done = check_listener(port)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot tell: no TICK event within 3s" in done.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
        assert "add TICK_5 to events=" in resp.read().decode()
    wait_for(lambda: "no TICK event" in log.read_text(), what="the log line", log=log)
    assert log.read_text().count("no TICK event") == 1  # said once, not every second


def test_ticks_that_arrive_say_nothing_and_check_listener_exits_0(supervisord):
    port = free_port()
    # TICK_5 comes within 5 s of the start: a timeout of 12 s leaves it room
    sv = supervisord(listener_section(port, "TICK_5,PROCESS_STATE,PROCESS_GROUP", "12s"))
    sv.wait_running("memwatch:memwatch", "big:big")
    log = sv.root / "memwatch.log"
    wait_for(lambda: status(port)["last_tick"] > 0, timeout=20, what="a tick", log=log)
    assert status(port)["tick_problem"] == ""
    done = check_listener(port)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no TICK" not in log.read_text()


def test_check_listener_exits_1_for_a_process_over_its_limit_that_nothing_deals_with(
        supervisord, listener):
    sv = supervisord(f"[program:big]\ncommand={hog('--mb', 40)}\nstartsecs=0\n")
    sv.wait_allocated({"big:big": 35})
    lst = listener("-p", "big=20MB", "--max-restarts", "1", server_url=sv.url)

    def verdict() -> str:
        lst.tick()
        return str(status(lst.metrics_port)["processes"][0]["verdict"])

    wait_for(lambda: verdict() == "suppressed", timeout=30, interval=0.2, what="the budget spent")
    done = check_listener(lst.metrics_port)
    assert done.returncode == 1, done.stdout + done.stderr


def test_check_listener_exits_2_when_the_listener_cannot_reach_supervisord(listener, short_tmp):
    lst = listener("-a", "20MB", server_url=f"unix://{short_tmp}/missing.sock")
    lst.tick()
    done = check_listener(lst.metrics_port)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("supervisord UNREACHABLE")
