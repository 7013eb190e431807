"""Faults injected into real parts: the listener killed mid-restart, a start that fails,
supervisord missing, hung, refusing credentials, shutting down, or editing its config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

from tests.harness import PY, hog, value, wait_for

SLOW = f"""
[program:stubborn]
command={hog('--mb', 60, '--ignore-term')}
stopwaitsecs=2
startsecs=0
"""


def journal_entries(state_dir) -> list[dict]:
    entries = []
    for path in state_dir.glob("restarts-*.json"):
        entries += json.loads(path.read_text())["restarts"]
    return entries


def test_a_listener_killed_between_stop_and_start_has_the_next_one_finish_the_restart(
        supervisord, listener, short_tmp):
    sv = supervisord(SLOW)
    before = sv.wait_allocated({"stubborn:stubborn": 55})["stubborn:stubborn"]
    first = listener("-p", "stubborn=30MB", server_url=sv.url)
    first.tick()
    wait_for(lambda: sv.infos()["stubborn:stubborn"]["statename"] == "STOPPING", what="stopping")
    first.proc.kill()  # SIGKILL: no chance to finish anything
    first.proc.wait()
    wait_for(lambda: sv.infos()["stubborn:stubborn"]["statename"] == "STOPPED", what="stopped")
    assert [e["namespec"] for e in journal_entries(short_tmp / "state")] == ["stubborn:stubborn"]

    # the next run (same state dir) finishes the restart on its first tick
    second = listener("-p", "stubborn=1GB", server_url=sv.url)
    second.tick()
    pid = sv.wait_running("stubborn:stubborn")["stubborn:stubborn"]
    assert pid != before
    wait_for(lambda: journal_entries(short_tmp / "state") == [], what="journal cleared")
    assert "finishing restarts left unfinished by a previous run" in second.stderr()


def test_a_failed_start_is_retried_on_later_ticks_and_never_left_silently(
        supervisord, listener, short_tmp):
    flag = short_tmp / "refuse-to-start"
    sv = supervisord(f"""
[program:fragile]
command=/bin/sh -c "test -e {flag} && exit 3; exec {hog('--mb', 50)}"
startsecs=1
startretries=0
""")
    before = sv.wait_allocated({"fragile:fragile": 45})["fragile:fragile"]
    flag.touch()  # from now on it cannot start
    # a budget of one restart: once running again it is left alone, so the journal empties
    lst = listener("-p", "fragile=30MB", "--max-restarts", "1", server_url=sv.url)
    lst.tick()

    def failing():
        lst.tick()
        s = lst.metrics()
        return s if (value(s, "memwatch_restart_failures_total", group="fragile", process="fragile")
                     or 0) >= 2 and value(s, "memwatch_stopped_not_running") == 1 else None

    wait_for(failing, timeout=60, interval=0.2, what="start failures counted")
    assert sv.infos()["fragile:fragile"]["statename"] in ("FATAL", "BACKOFF", "STARTING", "EXITED")
    assert "start failed; the process is not running" in lst.stderr()

    flag.unlink()  # the cause is fixed: the next ticks start it again

    def recovered():
        lst.tick()
        info = sv.infos()["fragile:fragile"]
        return info["statename"] == "RUNNING" and value(
            lst.metrics(), "memwatch_stopped_not_running") == 0

    wait_for(recovered, timeout=60, interval=0.2, what="the process running again")
    assert sv.pid("fragile:fragile") != before
    # the journal on disk follows the listener's memory (the gauge) by a write and an fsync
    wait_for(lambda: journal_entries(short_tmp / "state") == [], what="the journal emptied on disk")


def test_supervisord_missing_then_back_is_reported_once_and_recovered_without_restart(
        supervisord, listener, short_tmp):
    url = f"unix://{short_tmp}/s.sock"  # where the supervisord fixture will put its socket
    lst = listener("-a", "1GB", server_url=url)
    for _ in range(5):
        lst.tick()
    assert value(lst.metrics(), "memwatch_supervisor_up") == 0
    assert lst.stderr().count("supervisord unreachable") == 1
    sv = supervisord(SLOW)
    assert sv.url == url
    lst.tick()
    samples = lst.metrics()
    assert value(samples, "memwatch_supervisor_up") == 1
    assert lst.stderr().count("supervisord reachable") == 1
    assert lst.proc.poll() is None


def test_a_server_that_accepts_and_never_answers_times_out_and_events_are_still_answered(
        listener, short_tmp):
    path = str(short_tmp / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        lst = listener("-a", "1GB", "--rpc-timeout", "0.3s", server_url=f"unix://{path}")
        began = time.monotonic()
        for _ in range(3):
            lst.tick()
        assert time.monotonic() - began < 10  # each tick bounded by the timeout
        assert value(lst.metrics(), "memwatch_supervisor_up") == 0
        lines = [line for line in lst.stderr().splitlines() if "supervisord unreachable" in line]
        assert len(lines) == 1 and "timed out" in lines[0]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_wrong_credentials_are_reported_without_leaking_the_password(supervisord, listener):
    sv = supervisord(SLOW.replace("[program:stubborn]", """[program:stubborn]""") + "")
    # a second supervisord config with auth: rewrite the socket section
    sv.stop()
    text = sv.conf.read_text().replace(
        f"file={sv.socket}\n", f"file={sv.socket}\nusername=memwatch\npassword=right-horse-42\n", 1)
    sv.conf.write_text(text)
    sv.proc = subprocess.Popen([PY, "-m", "supervisor.supervisord", "-c", str(sv.conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: sv.socket.exists(), what="the socket")
    wrong = listener("-a", "1GB", server_url=sv.url,
                     env={"SUPERVISOR_USERNAME": "memwatch", "SUPERVISOR_PASSWORD": "wrong-staple-17"})
    wrong.tick()
    wrong.tick()
    assert value(wrong.metrics(), "memwatch_supervisor_up") == 0
    lines = [line for line in wrong.stderr().splitlines() if "supervisord unreachable" in line]
    assert len(lines) == 1 and "401" in lines[0]
    assert "wrong-staple-17" not in wrong.stderr()

    right = listener("-a", "1GB", server_url=sv.url,
                     env={"SUPERVISOR_USERNAME": "memwatch", "SUPERVISOR_PASSWORD": "right-horse-42"})
    wait_for(lambda: right.tick() or value(right.metrics(), "memwatch_supervisor_up") == 1,
             what="authenticated")


def test_supervisord_shutting_down_is_reported_and_events_are_answered(supervisord, listener):
    sv = supervisord(SLOW.replace("stopwaitsecs=2", "stopwaitsecs=5"))
    sv.wait_running()
    lst = listener("-a", "1GB", server_url=sv.url)
    lst.tick()
    sv.proc.send_signal(signal.SIGTERM)  # supervisord waits up to 5 s for the stubborn program
    wait_for(lambda: lst.tick() or value(lst.metrics(), "memwatch_supervisor_up") == 0,
             what="supervisor_up 0 during shutdown")
    assert "SHUTDOWN_STATE" in lst.stderr() or "unreachable" in lst.stderr()
    assert lst.proc.poll() is None
