"""`check`, SIGHUP reload of --config, SIGTERM during a restart: on a real supervisord."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil

from tests.harness import PY, ROOT, free_port, hog, value, wait_for

PROGRAMS = f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0

[program:small]
command={hog('--mb', 1)}
startsecs=0
"""


def check(*args: str, server_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "listener", "check", "--server-url", server_url, *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_prints_a_table_and_exits_1_when_some_process_is_over(supervisord):
    sv = supervisord(PROGRAMS)
    pids = sv.wait_allocated({"big:big": 45})
    done = check("-a", "30MB", server_url=sv.url)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "PROCESS", "PID", "STATE", "STRATEGY", "MEMORY", "LIMIT",
                                "VERDICT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["big"][2] == str(pids["big:big"])
    assert rows["big"][-1] == "OVER"
    assert rows["big"][-2] == "30.0MiB"
    assert rows["small"][-1] == "ok"
    assert done.stdout.count("\n") == 3
    assert sv.pid("big:big") == pids["big:big"]  # check never acts


def test_check_exits_0_when_all_are_under_and_2_on_errors(supervisord, short_tmp):
    sv = supervisord(PROGRAMS)
    sv.wait_allocated({"big:big": 45})
    assert check("-a", "1GB", server_url=sv.url).returncode == 0
    unreachable = check("-a", "1GB", server_url=f"unix://{short_tmp}/nothing.sock")
    assert unreachable.returncode == 2
    assert "cannot reach supervisord" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    bad_flag = check("-a", "lots", server_url=sv.url)
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.strip().splitlines() == [
        "sentry-memwatch: error: argument -a/--any: not a size: 'lots' "
        "(expected a number with an optional unit like 400MB)"]


def test_sighup_applies_a_good_config_and_keeps_the_old_one_when_broken(supervisord, listener,
                                                                        short_tmp):
    sv = supervisord(PROGRAMS)
    sv.wait_allocated({"big:big": 45})
    ini = short_tmp / "memwatch.ini"
    ini.write_text("[sentry-memwatch]\nany = 1GB\ndry-run = true\n")
    lst = listener("--config", ini, server_url=sv.url)
    lst.tick()

    def limit() -> float | None:
        return value(lst.metrics(), "memwatch_process_memory_limit_bytes", group="big", process="big")

    assert limit() == 2**30
    ini.write_text("[sentry-memwatch]\nany = 30MB\ndry-run = true\n")
    lst.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lst.tick() or limit() == 30 * 2**20, what="the new limit in force")
    dry = value(lst.metrics(), "memwatch_dry_run_actions_total", group="big", process="big")
    assert dry and dry >= 1

    ini.write_text("[sentry-memwatch]\ndry-run = true\nany = 30 parsecs\n")
    lst.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lst.tick() or "config reload failed" in lst.stderr(), what="reload error")
    lst.tick()
    assert limit() == 30 * 2**20
    error_line = next(line for line in lst.stderr().splitlines() if "config reload failed" in line)
    assert f"{ini}:3: any:" in error_line and "parsecs" in error_line


def test_sigterm_during_a_restart_lets_it_finish_and_exits_0(supervisord, listener):
    sv = supervisord(f"""
[program:stubborn]
command={hog('--mb', 60, '--ignore-term')}
stopwaitsecs=2
startsecs=0
""")
    before = sv.wait_allocated({"stubborn:stubborn": 55})["stubborn:stubborn"]
    lst = listener("-p", "stubborn=30MB", server_url=sv.url)
    lst.tick()
    wait_for(lambda: sv.infos()["stubborn:stubborn"]["statename"] == "STOPPING", what="stopping")
    lst.proc.send_signal(signal.SIGTERM)
    assert lst.proc.wait(60) == 0
    info = sv.infos()["stubborn:stubborn"]
    assert info["statename"] == "RUNNING" and info["pid"] != before
    assert "restarted" in lst.stderr()


def test_stdin_closed_is_a_clean_exit(supervisord, listener):
    sv = supervisord(PROGRAMS)
    lst = listener("-a", "1GB", server_url=sv.url)
    lst.tick()
    assert lst.close() == 0


def test_a_metrics_port_in_use_is_one_clear_line_and_a_non_zero_exit(short_tmp):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [PY, "-m", "listener", "-a", "1GB", "--metrics-port", str(port), "--state-dir",
             str(short_tmp), "--server-url", f"unix://{short_tmp}/none.sock"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert done.stdout == ""  # not even READY: supervisord sees a failed start, not a listener
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


def test_check_and_advise_warn_of_a_warm_shutdown_longer_than_stopwaitsecs(supervisord):
    """A real gunicorn under supervisord's default stopwaitsecs (10 s, below its 30 s
    graceful_timeout): a restart would end in SIGKILL. The same with stopwaitsecs=40 is fine."""
    gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
    if not gunicorn.exists():
        gunicorn = Path(shutil.which("gunicorn") or "gunicorn")
    arbiter = f"{gunicorn} -w 1 -b 127.0.0.1:{{port}} --chdir {ROOT / 'deploy' / 'demo'} webapp:application"
    sv = supervisord(f"""
[program:short]
command={arbiter.format(port=free_port())}
startsecs=0

[program:long]
command={arbiter.format(port=free_port())}
startsecs=0
stopwaitsecs=40
""" + PROGRAMS)
    sv.wait_running()
    wait_for(lambda: all(len(psutil.Process(sv.pid(n)).children()) == 1
                         for n in ("short:short", "long:long")), what="gunicorn's workers")
    done = check("-a", "1GB", server_url=sv.url)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: short: stopwaitsecs=10 is shorter than gunicorn's warm shutdown: a restart "
        "ends in SIGKILL and may lose work; set stopwaitsecs to at least 35 (its workers finish "
        "their requests within graceful_timeout, 30 s by default)"], done.stdout
    advised = subprocess.run(
        [PY, "-m", "listener", "advise", "--server-url", sv.url, "-a", "1GB", "--duration", "2s",
         "--interval", "1s"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert advised.returncode == 0, advised.stderr
    said = [line for line in advised.stdout.splitlines() if "stopwaitsecs" in line]
    assert len(said) == 1 and said[0].startswith("short: stopwaitsecs=10 is shorter"), advised.stdout
