"""What people look at, on a real listener over a real supervisord: the status page in a real
headless Chromium, /status, and `check --listener`."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from tests.harness import PY, ROOT, hog, value, wait_for

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]


def programs(flag: Path) -> str:
    # big: 60 MiB on its first run only (over its 30 MB limit), 10 MiB once restarted
    return f"""
[program:big]
command=/bin/sh -c 'test -e {flag} && rm {flag} && exec {hog('--mb', 60)}; exec {hog('--mb', 10)}'
startsecs=0

[program:small]
command={hog('--mb', 10)}
startsecs=0
"""


def restarted_listener(supervisord, listener, short_tmp):  # type: ignore[no-untyped-def]
    flag = short_tmp / "first-run"
    flag.touch()
    sv = supervisord(programs(flag))
    sv.wait_allocated({"big:big": 55, "small:small": 8})
    lst = listener("-g", "big=30MB", "-g", "small=100MB", "--max-restarts", "3",
                   server_url=sv.url)

    def restarted_and_sampled() -> bool:
        lst.tick()
        s = lst.metrics()
        return value(s, "memwatch_restarts_total", group="big", process="big") == 1 and (
            value(s, "memwatch_process_memory_bytes", group="big", process="big",
                  measure="rss") or 0) < 30 * 2**20
    wait_for(restarted_and_sampled, timeout=60, interval=0.2, what="big restarted and small again")
    return sv, lst


def test_check_listener_prints_the_listeners_own_view(supervisord, listener, short_tmp):
    _, lst = restarted_listener(supervisord, listener, short_tmp)
    done = subprocess.run([PY, "-m", "listener", "check", "--listener",
                           f"http://127.0.0.1:{lst.metrics_port}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr  # nothing over its limit now
    lines = done.stdout.splitlines()
    assert lines[0].startswith("supervisord reachable, last tick ")
    assert lines[1].split()[:4] == ["GROUP", "PROCESS", "PID", "STRATEGY"]
    big = next(line.split() for line in lines if line.startswith("big "))
    assert big[-6:-3] == ["1", "0", "2"]  # restarts, signals, budget left (3 - 1)
    assert big[-3] == "restarted" and big[-1] == "ago"  # last action: "restarted 4s ago"

    unreachable = subprocess.run([PY, "-m", "listener", "check", "--listener",
                                  "http://127.0.0.1:1"], capture_output=True, text=True,
                                 timeout=60, cwd=ROOT)
    assert unreachable.returncode == 2 and unreachable.stdout == ""
    assert len(unreachable.stderr.splitlines()) == 1 and "--listener" in unreachable.stderr


def test_the_status_page_in_a_real_browser(supervisord, listener, short_tmp, tmp_path):
    chromium = h.require_binary("chromium", "apt-get install chromium")
    _, lst = restarted_listener(supervisord, listener, short_tmp)
    for _ in range(5):  # a few more samples for the sparklines
        lst.tick()
    url = f"http://127.0.0.1:{lst.metrics_port}/"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={short_tmp / 'chromium'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count('<tr class="process">') == 2, dom[-2000:]
    assert "big:big" in dom and "small:small" in dom and "reachable" in dom
    assert "<polyline" in dom  # the sparkline of recent samples
    # a screenshot
    shot = short_tmp / "status.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1400,420", url],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 5000
    # kept for a person to look at: pytest keeps the last runs' tmp_path (its own name per
    # test and per run, so parallel runs and other checkouts never write the same file)
    (tmp_path / "memwatch-status.png").write_bytes(shot.read_bytes())

    with urllib.request.urlopen(f"{url}status", timeout=10) as resp:
        view = json.load(resp)
    big = next(p for p in view["processes"] if p["group"] == "big")
    assert big["restarts"] == 1 and big["last_action"]["kind"] == "restarts"
    assert len(big["history"]) >= 5 and big["limit_bytes"] == 30 * 2**20
