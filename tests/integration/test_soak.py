"""A few thousand events with faults interleaved: every target ends RUNNING and every counter
agrees with supervisord's own log."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from tests.harness import PY, hog, value, wait_for

EVENTS = 2000


def test_thousands_of_events_with_faults_end_consistent(supervisord, listener, short_tmp):
    sv = supervisord(f"""
[program:leaky]
command={hog('--mb', 5, '--leak-mb-per-sec', 40)}
startsecs=0

[program:pool]
command={hog('--mb', 50)}
process_name=%(program_name)s_%(process_num)02d
numprocs=2
startsecs=0

[program:steady]
command={hog('--mb', 5)}
startsecs=0
autorestart=true
""")
    sv.wait_running()
    ini = short_tmp / "memwatch.ini"
    good = ("[sentry-memwatch]\nprogram = leaky=40MB steady=30MB\ngroup = pool=30MB\n"
            "grace = 1s\nmax-parallel = 1\n")
    ini.write_text(good)
    lst = listener("--config", ini, server_url=sv.url)
    malformed = 0
    for n in range(EVENTS):
        if n % 97 == 0:
            lst.write_raw(b"this is not a header\n")
            assert lst.read_result() == b"FAIL"
            malformed += 1
        elif n % 31 == 0:
            payload = "processname:steady groupname:steady from_state:STARTING pid:1"
            assert lst.send("PROCESS_STATE_RUNNING", payload) == b"OK"
        else:
            lst.tick()
        if n == EVENTS // 3:
            os.kill(sv.pid("steady:steady"), signal.SIGKILL)  # a crash supervisord restarts
        if n == EVENTS // 2:  # a human stops and starts a process the listener watches
            for verb in ("stop", "start"):
                subprocess.run([PY, "-m", "supervisor.supervisorctl", "-c", str(sv.conf), verb,
                                "steady"], check=True, capture_output=True, timeout=60)
        if n % 400 == 0:  # reloads under load: the same config, then a broken one, then good
            ini.write_text(good if n != 1200 else good + "grace = soon\n")
            lst.proc.send_signal(signal.SIGHUP)
        time.sleep(0.005)  # pacing, so that restarts overlap with events

    # stop acting: a very high limit via dry-run is not needed; just let in-flight work finish
    def consistent():
        lst.tick()
        samples = lst.metrics()
        log = sv.log_text()
        infos = sv.infos()
        if any(i["statename"] != "RUNNING" for i in infos.values()):
            return None
        if value(samples, "memwatch_stopped_not_running") != 0:
            return None
        for namespec in ("leaky:leaky", "pool:pool_00", "pool:pool_01"):
            group, name = namespec.split(":")
            stops = len(re.findall(rf"stopped: {name} \(", log))
            if value(samples, "memwatch_restarts_total", group=group, process=name) != stops:
                return None
        return samples

    # the over-limit processes keep being restarted; wait for a moment where nothing is in flight
    samples = wait_for(consistent, timeout=60, interval=0.3, what="counters matching the log")
    for namespec in ("leaky:leaky", "pool:pool_00", "pool:pool_01"):
        group, name = namespec.split(":")
        assert value(samples, "memwatch_restarts_total", group=group, process=name) >= 2
        assert value(samples, "memwatch_restart_failures_total", group=group, process=name) == 0
    assert value(samples, "memwatch_restarts_total", group="steady", process="steady") == 0
    assert value(samples, "memwatch_events_total", event="malformed") == malformed
    ticks = value(samples, "memwatch_events_total", event="TICK_5")
    assert ticks is not None and ticks >= EVENTS * 0.9
    assert lst.proc.poll() is None
    assert "Traceback" not in lst.stderr()
    assert "UNKNOWN" not in sv.log_text()
    assert lst.stderr().count("config reload failed") == 1
    assert lst.stderr().count("config reloaded") >= 3
