"""Files others can write or swap: a forged journal in a state dir that is not the listener's
own, and a rules file path that is a FIFO, a device or far too big, on a real supervisord."""

from __future__ import annotations

import json
import os
import pwd
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from listener.actions.journal import journal_name
from tests.harness import ListenerProcess, hog, value, wait_for


@pytest.mark.parametrize("owner, mode", [("nobody", 0o700), ("root", 0o777)])
def test_a_forged_journal_in_a_state_dir_others_can_write_is_not_acted_on(
        supervisord, listener, short_tmp, owner, mode):
    sv = supervisord("""
[program:victim]
command=sleep 600
startsecs=0
""")
    sv.wait_running("victim:victim")
    sv.rpc().supervisor.stopProcess("victim:victim")  # a human stopped it
    state = short_tmp / "state"
    state.mkdir()
    journal = state / journal_name({}, sv.url)
    forged = json.dumps({"version": 1, "restarts": [
        {"namespec": "victim:victim", "pid": 4242, "began": time.time() - 60, "stopped": None}]})
    journal.write_text(forged)
    uid = pwd.getpwnam(owner).pw_uid
    os.chown(journal, uid, -1)
    os.chown(state, uid, -1)
    state.chmod(mode)

    lst = listener("-a", "1GB", server_url=sv.url)
    lst.tick()
    lst.tick()
    # a start of ours clears the entry only once asked for: nothing owed and STOPPED means
    # never started
    assert value(lst.metrics(), "memwatch_stopped_not_running") == 0
    assert sv.infos()["victim:victim"]["statename"] == "STOPPED"
    said = [line for line in lst.stderr().splitlines() if "not trusted" in line]
    assert len(said) == 1 and str(state) in said[0], lst.stderr()
    assert "finishing restarts" not in lst.stderr()
    assert journal.read_text() == forged and os.listdir(state) == [journal.name]  # not written
    assert value(lst.metrics(), "memwatch_supervisor_up") == 1


def answered_within(lst: ListenerProcess, seconds: float) -> float:
    """One TICK, answered within `seconds` (a listener stuck in a read would hang the test)."""
    took: list[float] = []
    ticker = threading.Thread(target=lambda: took.append(lst.timed_tick()), daemon=True)
    ticker.start()
    ticker.join(seconds)
    assert took, f"no answer to a TICK within {seconds}s; stderr: {lst.stderr()[-1500:]}"
    return took[0]


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def many_sections(path: Path) -> None:
    path.write_text("".join(f"[program:p{i}]\nlimit=1G\n" for i in range(10_000)))


def empty(path: Path) -> None:
    path.write_text("")


@pytest.mark.parametrize("swap, said", [
    (fifo, "is a FIFO, not a regular file"),
    (dev_zero, "is a character device, not a regular file"),
    (many_sections, ":1001: more than 500 rules and values"),
    (empty, "the new config has no rules"),
])
def test_a_reload_of_a_hostile_rules_file_keeps_the_old_rules_and_the_ticks_coming(
        supervisord, listener, short_tmp, swap: Callable[[Path], None], said: str):
    sv = supervisord(f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0
""")
    sv.wait_allocated({"big:big": 45})
    ini = short_tmp / "memwatch.ini"
    ini.write_text("[memwatch]\ndry-run = true\n[any]\nlimit = 30MB\n")
    # an address-space cap: before the bound, /dev/zero was read until MemoryError
    lst = listener("--config", ini, server_url=sv.url, prefix=("prlimit", "--as=2000000000"))
    lst.tick()
    rss = lst.rss()
    swap(ini)
    lst.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: answered_within(lst, 10) and "config reload" in lst.stderr(),
             what="the reload's outcome")
    (line,) = [x for x in lst.stderr().splitlines() if "config reload" in x]
    assert "level=error" in line and "config reload failed: keeping the old config" in line
    assert said in line and len(line) < 800, line
    for _ in range(3):
        assert answered_within(lst, 10) < 5
    limit = value(lst.metrics(), "memwatch_process_memory_limit_bytes", group="big", process="big")
    assert limit == 30 * 2**20  # the old rule still in force
    assert lst.rss() < rss + 50 * 2**20
    assert "Traceback" not in lst.stderr() and "tick failed" not in lst.stderr()
    if swap is fifo:  # it was never opened for reading: a writer finds no reader
        with pytest.raises(OSError):
            os.open(ini, os.O_WRONLY | os.O_NONBLOCK)


def test_a_reload_names_the_settings_that_need_a_restart_and_keeps_them(
        supervisord, listener, short_tmp):
    sv = supervisord(f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0
""")
    ini = short_tmp / "memwatch.ini"
    ini.write_text("[memwatch]\ndry-run = true\n[any]\nlimit = 1GB\n")
    lst = listener("--config", ini, server_url=sv.url)
    lst.tick()
    rules = "".join(f"[program:{'p' * 100}{i}]\nlimit = 1GB\n" for i in range(400))
    ini.write_text(f"[memwatch]\ndry-run = true\nserver-url = unix://{short_tmp}/nowhere.sock\n"
                   f"log-level = debug\n[any]\nlimit = 30MB\n{rules}")
    lst.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lst.tick() or "config reloaded" in lst.stderr(), what="the reload")
    (line,) = [x for x in lst.stderr().splitlines() if "config reloaded" in x]
    assert "level=warning" in line and "needs_restart=log-level,server-url" in line, line
    assert "398 more rules" in line and len(line) < 800, line
    lst.tick()
    samples = lst.metrics()
    assert value(samples, "memwatch_supervisor_up") == 1  # still the old supervisord
    assert value(samples, "memwatch_process_memory_limit_bytes", group="big",
                 process="big") == 30 * 2**20  # the new rules are in force
    assert "level=debug" not in lst.stderr()
