"""The demo: a real supervisord running Sentry's web server (Granian) and stand-ins for its
workers, guarded by sentry-memwatch. Restarts show up within a minute in /metrics and in
supervisord's log.

    python deploy/demo/run.py [--dir DIR] [--metrics-port 9870] [--web-port 9000]

Stops with Ctrl-C, or SIGINT or SIGTERM to its pid (supervisord stops everything it runs). Its
config and logs (memwatch.log, supervisord.log) are in the directory it prints first; one it made
is removed when it stops, one given with --dir is kept. It prints the status page's address only
once the listener serves it; a listener or web that cannot start (a port taken) is said, with
the reason from its log, and the exit code is 1. Each leak stops at LEAK_CAP_MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
PY = sys.executable


RULES = HERE.parent / "memwatch" / "sentry-memwatch.conf"
# The production rules file at demo sizes: the same rules and strategies, smaller limits and
# quicker reactions (a minute, not an hour), this supervisord and port.
DEMO_SIZES = {
    r"limit = 700MB": "limit = 150MB",  # sentry-web, per worker
    r"limit = 400MB\n(children = auto)": "limit = 60MB\n\\1",  # sentry-worker, per process
    r"(\[program:sentry-cron\]\n)limit = 400MB": "\\1limit = 60MB",
    r"grace = 60s": "grace = 5s",
    r"consecutive = 3": "consecutive = 2",
    r"max-restarts = 5": "max-restarts = 10",
    r"restart-window = 1h": "restart-window = 10m",
}

# Each leak stops after this much, whatever the listener does: twice the demo's 60MB limit, so
# a leaker is restarted long before it, but one left alone (the restart budget spent, the
# listener stopped or misconfigured) holds about 130 MiB, not gigabytes. A cap in the leaker
# holds in every case; one that watched the listener's budget would hang on the listener
# working, and would hide what the page should show then: a process over its limit, left alone.
LEAK_CAP_MB = 120

# `sentry run worker|cron -- HOG ARGS`: a command line that reads as Sentry's, so that
# `children = auto` recognises the workers as Celery masters, running hog.py in this same process.
STANDIN = f"""\
import runpy, sys
sys.argv = [{str(HERE / "hog.py")!r}, *sys.argv[sys.argv.index("--") + 1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def demo_rules(root: Path, metrics_port: int) -> str:
    text = RULES.read_text()
    for pattern, replacement in DEMO_SIZES.items():
        text, count = re.subn(pattern, replacement, text)
        assert count >= 1, f"{RULES} no longer has {pattern!r}"
    text, count = re.subn(r"metrics-port = 9870", f"metrics-port = {metrics_port}\n"
                          f"server-url = unix://{root}/supervisor.sock\nstate-dir = {root}/state",
                          text)
    assert count == 1, f"{RULES} no longer sets metrics-port"
    return "; the production rules (deploy/memwatch/sentry-memwatch.conf) at demo sizes\n" + text


def web_command(web_port: int, sentry: str) -> str:
    """Today's Sentry web: Granian (what `sentry run web` runs since January 2026), else the
    guide's uWSGI, else a stand-in, which `auto` judges as one process (it goes by what runs)."""
    path = os.path.dirname(PY) + os.pathsep + os.environ.get("PATH", "")
    granian, uwsgi = shutil.which("granian", path=path), shutil.which("uwsgi", path=path)
    if granian:
        return (f"{granian} --interface wsgi --host 127.0.0.1 --port {web_port} --workers 2 "
                f"--working-dir {HERE} --no-access-log webapp:application")
    if uwsgi:
        return (f"{uwsgi} --http-socket 127.0.0.1:{web_port} --wsgi-file {HERE / 'webapp.py'} "
                "--master --processes 2 --die-on-term --disable-logging")
    return f"{sentry} run web -- --mb 20 --children 2 --child-mb 10 --child-drain 0"


def write_config(root: Path, metrics_port: int, web_port: int) -> tuple[Path, bool]:
    """supervisord's config, and whether the web is a real server (it then answers HTTP)."""
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / "sentry").write_text(STANDIN)
    sentry = f"{PY} {root / 'bin' / 'sentry'}"
    web = web_command(web_port, sentry)
    worker = (f"--mb 10 --children 2 --child-mb 5 --grow-child 0 --leak-mb-per-sec 4 "
              f"--leak-cap-mb {LEAK_CAP_MB}")
    (root / "memwatch.conf").write_text(demo_rules(root, metrics_port))
    conf = root / "supervisord.conf"
    conf.write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file={root}/supervisor.sock

        [supervisord]
        logfile={root}/supervisord.log
        pidfile={root}/supervisord.pid
        childlogdir={root}
        nodaemon=true

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://{root}/supervisor.sock

        ; Sentry web: a Granian master and its workers (GET /leak?mb=200 bloats one worker)
        [program:sentry-web]
        command={web}
        stopsignal=INT
        stopasgroup=true
        startsecs=1

        ; Sentry workers: Celery-like prefork masters, the first child of each leaks 4 MiB/s,
        ; up to {LEAK_CAP_MB} MiB
        [program:sentry-worker]
        command={sentry} run worker -- {worker}
        process_name=%(program_name)s-%(process_num)02d
        numprocs=2
        stopasgroup=true
        startsecs=1

        ; Sentry cron: a single process that leaks 3 MiB/s, up to {LEAK_CAP_MB} MiB
        [program:sentry-cron]
        command={sentry} run cron -- --mb 10 --leak-mb-per-sec 3 --leak-cap-mb {LEAK_CAP_MB}
        startsecs=1

        [eventlistener:memwatch]
        command={PY} -m listener --config {root}/memwatch.conf
        events=TICK_5,PROCESS_STATE,PROCESS_GROUP
        buffer_size=1024
        stderr_logfile={root}/memwatch.log
        """))
    return conf, not web.startswith(sentry)


def rpc(root: Path) -> Any:
    """supervisord's XML-RPC interface over its unix socket."""
    from supervisor.xmlrpc import SupervisorTransport
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{root}/supervisor.sock"))


def last_lines(path: Path, lines: int = 3) -> str:
    """The end of a log, the reason a program gave for exiting."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no {path.name})"
    said = list(dict.fromkeys(line for line in text if "error:" in line.lower())) or text
    return "\n".join(f"    {line}" for line in said[-lines:])


def listener_serving(root: Path, metrics_port: int) -> bool:
    """Ours is the listener on the port: it said so in its log, and the port answers /status."""
    if "metrics served" not in (root / "memwatch.log").read_text(errors="replace"):
        return False
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/status", timeout=5) as resp:
        return "processes" in json.load(resp)


def web_serving(web_port: int, master: int) -> bool:
    """The web port answers from a worker of our sentry-web (not from whatever else holds it)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5) as resp:
        pid = int(resp.read().split()[-1])
    return pid == master or master in (p.pid for p in psutil.Process(pid).parents())


def why_not_ready(root: Path, metrics_port: int, web_port: int, real_web: bool) -> str | None:
    """None once the listener and the web serve; the reason (from their logs) when one of them
    failed to start; "" while they are still starting."""
    listener = rpc(root).supervisor.getProcessInfo("memwatch")
    if exited(listener):
        return (f"the listener exited, it does not serve port {metrics_port} (give another "
                f"--metrics-port if it is taken); {root / 'memwatch.log'}:\n"
                + last_lines(root / "memwatch.log"))
    web = rpc(root).supervisor.getProcessInfo("sentry-web")
    if exited(web):
        return (f"sentry-web exited, it does not serve port {web_port} (give another --web-port if "
                f"it is taken); {web['stderr_logfile']}:\n" + last_lines(Path(web["stderr_logfile"])))
    try:
        ready = listener["statename"] == "RUNNING" and listener_serving(root, metrics_port) and (
            not real_web or web_serving(web_port, web["pid"]))
    except (OSError, ValueError, psutil.Error):
        ready = False
    return None if ready else ""


def exited(info: dict[str, Any]) -> bool:
    """The program ended since supervisord started it (nothing stops it while the demo starts;
    one that fails after startsecs is already running again when it is looked at)."""
    return bool(info["stop"]) or info["statename"] in ("BACKOFF", "FATAL", "EXITED", "STOPPED")


def wait_ready(supervisord: subprocess.Popen[bytes], root: Path, metrics_port: int,
               web_port: int, real_web: bool, timeout: float = 90.0) -> str | None:
    """None when everything serves, else why not. Polls with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisord.poll() is not None:
            return f"supervisord exited ({supervisord.returncode}); {root / 'supervisord.log'}:\n" \
                + last_lines(root / "supervisord.log")
        try:
            why = why_not_ready(root, metrics_port, web_port, real_web)
        except (OSError, xmlrpc.client.Fault):
            why = ""  # supervisord not answering yet
        if why != "":
            return why
        time.sleep(0.2)
    return f"not serving after {timeout:.0f} s; see {root}/memwatch.log and {root}/supervisord.log"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", help="where to put config and logs, kept after the demo (default: a "
                   "new temp dir, removed when the demo stops)")
    p.add_argument("--metrics-port", type=int, default=9870)
    p.add_argument("--web-port", type=int, default=9000)
    args = p.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="memwatch-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    conf, real_web = write_config(root, args.metrics_port, args.web_port)
    print(f"sentry-memwatch demo in {root}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE.parents[1]), os.environ.get("PYTHONPATH")]))}
    supervisord = subprocess.Popen([PY, "-m", "supervisor.supervisord", "-c", str(conf)], env=env)
    stopping = []

    def stop(signum: int, frame: object) -> None:
        # Ctrl-C in a terminal reaches supervisord too (same process group); SIGINT or SIGTERM
        # to this pid alone is handed on, so that supervisord stops everything it runs
        stopping.append(signum)
        if supervisord.poll() is None:
            supervisord.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    why = wait_ready(supervisord, root, args.metrics_port, args.web_port, real_web)
    if why is not None and not stopping:
        print(f"sentry-memwatch demo: error: {why}", file=sys.stderr, flush=True)
        supervisord.terminate()
        supervisord.wait()
        print(f"sentry-memwatch demo: logs kept in {root}", file=sys.stderr, flush=True)
        sys.exit(1)
    if not stopping:
        print(banner(root, conf, args.metrics_port, args.web_port, kept=bool(args.dir)), flush=True)
    code = supervisord.wait()
    if args.dir:
        print(f"sentry-memwatch demo: stopped; logs kept in {root}", flush=True)
    else:  # a directory of our own making goes with the demo
        shutil.rmtree(root, ignore_errors=True)
        print(f"sentry-memwatch demo: stopped; removed {root} and its logs (--dir DIR keeps "
              "them)", flush=True)
    sys.exit(code)


def banner(root: Path, conf: Path, metrics_port: int, web_port: int, kept: bool) -> str:
    tool = Path(PY).parent / "sentry-memwatch"
    kept_said = "kept after the demo" if kept else "removed with the demo; --dir DIR keeps them"
    return textwrap.dedent(f"""\
          status page:  http://127.0.0.1:{metrics_port}/
          metrics:      curl -s http://127.0.0.1:{metrics_port}/metrics | grep ^memwatch_restarts_total
          one look:     SUPERVISOR_SERVER_URL=unix://{root}/supervisor.sock {tool} check
          bloat web:    curl -s 'http://127.0.0.1:{web_port}/leak?mb=200'
                        (Granian's master gets SIGHUP and replaces its workers one by one;
                        the web keeps answering)
          logs:         tail -f {root}/memwatch.log {root}/supervisord.log
                        ({kept_said})
          status:       {Path(PY).parent / 'supervisorctl'} -c {conf} status
        Restarts begin within a minute. Ctrl-C stops everything.
        """)


if __name__ == "__main__":
    main()
