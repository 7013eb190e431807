"""What people look at, on a real listener over a real supervisord: the status page in a real
headless Chromium, /status, and `check --listener`."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from listener.core.rows import ProcessRow
from listener.web import status
from listener.web.view import StatusView
from tests.harness import PY, ROOT, ListenerProcess, free_port, hog, value, wait_for

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
    names = ("big:</span><wbr><span>big<", "small:</span><wbr><span>small<")
    assert all(name in dom for name in names) and ">reachable<" in dom
    assert "<polyline" in dom  # the sparkline of recent samples
    # a screenshot
    shot = short_tmp / "status.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,420", url],
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


def measured(chromium: str, page: str, width: int, where: Path) -> dict[str, int]:
    """The page laid out by Chromium in a window `width` px wide: the document's scrollWidth
    and clientWidth (wider content scrolls sideways) and the table's right edge. Measured by
    a script added to a copy of the page, read back from the title with --dump-dom."""
    script = ("<script>document.title = JSON.stringify({scroll: document.documentElement"
              ".scrollWidth, client: document.documentElement.clientWidth, table: Math.ceil("
              "document.getElementById('processes').getBoundingClientRect().right)});</script>")
    copy = where / f"page-{width}.html"
    copy.write_text(page.replace("</body>", script + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={where / 'chromium'}", f"--window-size={width},800"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", copy.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    found = re.search(r"<title>(\{.*?\})</title>", dom)
    assert found, dom[-2000:]
    return dict(json.loads(html.unescape(found.group(1))))


def demo_like(flag: Path) -> str:
    # the demo's names; each worker's largest child is named by its pid, the first run of
    # sentry-worker-00 is over its limit (a restart to show as the last action)
    child = ("--children", 2, "--child-mb", 5)
    first = f"{flag}-%(process_num)02d"
    worker = (f"test -e {first} && rm {first} && exec {hog('--mb', 40, *child)}; "
              f"exec {hog('--mb', 10, *child)}")
    return f"""
[program:sentry-web]
command={hog('--mb', 10, *child)}
startsecs=0

[program:sentry-worker]
process_name=%(program_name)s-%(process_num)02d
numprocs=2
command=/bin/sh -c '{worker}'
startsecs=0
"""


def test_the_page_fits_1280_px_in_a_real_browser(supervisord, listener, short_tmp):
    chromium = h.require_binary("chromium", "apt-get install chromium")
    (short_tmp / "first-00").touch()
    sv = supervisord(demo_like(short_tmp / "first"))
    sv.wait_allocated({"sentry-worker:sentry-worker-00": 38, "sentry-web:sentry-web": 8})
    lst = listener("--children", "each", "-g", "sentry-worker=30MB", "-g", "sentry-web=150MB",
                   "--max-restarts", "10", server_url=sv.url)

    def restarted() -> bool:
        lst.tick()
        return value(lst.metrics(), "memwatch_restarts_total", group="sentry-worker",
                     process="sentry-worker-00") == 1
    wait_for(restarted, timeout=60, interval=0.2, what="sentry-worker-00 restarted")
    for _ in range(3):  # samples for the sparklines
        lst.tick()
    with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/", timeout=10) as resp:
        page = resp.read().decode()
    assert page.count('<tr class="process">') == 3
    at = measured(chromium, page, 1280, short_tmp)
    assert at["scroll"] <= at["client"] and at["table"] <= at["client"], at


def test_the_widest_rows_fit_1280_px(short_tmp):
    # the longest cells the page has: taskworker's strategy, a 7-digit pid, a figure read at
    # the slower pace with its worker's pid, OOM kills, an escalation as the last action
    chromium = h.require_binary("chromium", "apt-get install chromium")
    MiB = 2**20
    rows = tuple(ProcessRow(
        group, name, 233 * MiB, "pss", 60 * MiB, 12, 300, pid=4194300 + i, verdict=verdict,
        strategy=strategy, budget_left=10, memory_pid=4194310 + i, memory_age_seconds=35.0,
        restarts=123, child_signals=4567, oom_kills=12, last_action=last, last_action_at=1000.0,
        history=tuple((1000.0 + 5 * k, (40 + k) * MiB) for k in range(120)))
        for i, (group, name, strategy, verdict, last) in enumerate([
            ("sentry-worker", "sentry-worker-00", "pss, each, HUP to master (auto: granian)",
             "over (counting)", "child_signal_escalations"),
            ("sentry-taskworker", "sentry-taskworker-01",
             "pss, each, TERM or INT, as caught (auto: taskworker)", "deferred", "dry_run_actions"),
            ("sentry-web", "sentry-web", "pss, each, HUP (auto: uwsgi)", "suppressed", "oom_kills"),
        ]))
    view = StatusView("0.1.0", True, 1600.0, 0, rows, 3, "kmsg")
    at = measured(chromium, status.render_html(view, now=1601.0), 1280, short_tmp)
    assert at["scroll"] <= at["client"] and at["table"] <= at["client"], at


def test_a_process_being_restarted_reads_restarting(supervisord, listener, short_tmp):
    # its first run ignores SIGTERM: supervisord's stop waits (stopwaitsecs) until the test
    # kills it, and meanwhile supervisord says STOPPING
    flag = short_tmp / "first-run"
    flag.touch()
    first = f"test -e {flag} && rm {flag} && exec {hog('--mb', 60, '--ignore-term')}"
    sv = supervisord(f"""
[program:slow]
command=/bin/sh -c '{first}; exec {hog('--mb', 10)}'
startsecs=0
stopwaitsecs=300
""")
    old = sv.wait_allocated({"slow:slow": 55})["slow:slow"]
    lst = listener("--children", "auto", "-g", "slow=30MB", server_url=sv.url)
    url = f"http://127.0.0.1:{lst.metrics_port}"

    def row() -> dict[str, Any]:
        with urllib.request.urlopen(f"{url}/status", timeout=10) as resp:
            return dict(json.load(resp)["processes"][0])

    def restarting() -> dict[str, Any] | None:
        lst.tick()
        seen = row()
        return seen if sv.infos()["slow:slow"]["statename"] == "STOPPING" and seen[
            "verdict"] == "restarting" else None
    seen = wait_for(restarting, timeout=60, interval=0.2, what="slow restarting on /status")
    assert seen["strategy"] == "rss, auto" and seen["memory_bytes"] is None  # no sample: as the rule says
    with urllib.request.urlopen(f"{url}/", timeout=10) as resp:
        page = resp.read().decode()
    assert 'title="restarting">restarting</td>' in page and "rss, auto" in page
    os.kill(old, signal.SIGKILL)  # the stop ends; the start follows
    wait_for(lambda: (lst.tick(), row()["verdict"] == "ok")[1], timeout=60, interval=0.2,
             what="slow ok again")
    assert row()["strategy"] == "rss (auto: plain)" and row()["last_action"]["kind"] == "restarts"


def test_an_unreachable_supervisord_is_said_with_its_error_and_url(short_tmp):
    # credentials in the URL are never shown; nothing listens on the port
    port = free_port()
    lst = ListenerProcess(["-a", "100MB"], f"http://someone:s3cret@127.0.0.1:{port}", short_tmp)
    try:
        lst.tick()
        url = f"http://127.0.0.1:{lst.metrics_port}"
        with urllib.request.urlopen(f"{url}/", timeout=10) as resp:
            page = resp.read().decode()
        with urllib.request.urlopen(f"{url}/status", timeout=10) as resp:
            view = json.load(resp)
        said = f"cannot reach supervisord at http://127.0.0.1:{port}: Connection refused"
        assert f'id="supervisor-error">{said}</p>' in page, page
        assert "no limit applies" not in page and "s3cret" not in page + json.dumps(view)
        assert (view["supervisor_up"], view["supervisor_url"], view["supervisor_error"]) == (
            False, f"http://127.0.0.1:{port}", "Connection refused")
        done = subprocess.run([PY, "-m", "listener", "check", "--listener", url],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 2 and said in done.stdout.splitlines(), done
    finally:
        lst.close()
