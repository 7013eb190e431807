"""The demo: a real supervisord running Sentry's web server (Granian) and stand-ins for its
workers, guarded by sentry-memwatch. Restarts show up within a minute in /metrics and in
supervisord's log.

    python deploy/demo/run.py [--dir DIR] [--metrics-port 9870] [--web-port 9000]

Stops with Ctrl-C (supervisord stops everything it runs); the directory it made is removed then
(one given with --dir is kept).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

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


def write_config(root: Path, metrics_port: int, web_port: int) -> Path:
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / "sentry").write_text(STANDIN)
    sentry = f"{PY} {root / 'bin' / 'sentry'}"
    web = web_command(web_port, sentry)
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

        ; Sentry workers: Celery-like prefork masters, the first child of each leaks 4 MiB/s
        [program:sentry-worker]
        command={sentry} run worker -- --mb 10 --children 2 --child-mb 5 --grow-child 0 --leak-mb-per-sec 4
        process_name=%(program_name)s-%(process_num)02d
        numprocs=2
        stopasgroup=true
        startsecs=1

        ; Sentry cron: a single process that leaks 3 MiB/s
        [program:sentry-cron]
        command={sentry} run cron -- --mb 10 --leak-mb-per-sec 3
        startsecs=1

        [eventlistener:memwatch]
        command={PY} -m listener --config {root}/memwatch.conf
        events=TICK_5,PROCESS_STATE,PROCESS_GROUP
        buffer_size=1024
        stderr_logfile={root}/memwatch.log
        """))
    return conf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", help="where to put config and logs (default: a new temp dir)")
    p.add_argument("--metrics-port", type=int, default=9870)
    p.add_argument("--web-port", type=int, default=9000)
    args = p.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="memwatch-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    conf = write_config(root, args.metrics_port, args.web_port)
    tool = Path(PY).parent / "sentry-memwatch"
    print(textwrap.dedent(f"""\
        sentry-memwatch demo in {root}
          status page:  http://127.0.0.1:{args.metrics_port}/
          metrics:      curl -s http://127.0.0.1:{args.metrics_port}/metrics | grep ^memwatch_restarts
          one look:     SUPERVISOR_SERVER_URL=unix://{root}/supervisor.sock {tool} check
          bloat web:    curl -s 'http://127.0.0.1:{args.web_port}/leak?mb=200'
                        (Granian's master gets SIGHUP and replaces its workers one by one;
                        the web keeps answering)
          logs:         tail -f {root}/memwatch.log {root}/supervisord.log
          status:       {Path(PY).parent / 'supervisorctl'} -c {conf} status
        Restarts begin within a minute. Ctrl-C stops everything.
        """), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE.parents[1]), os.environ.get("PYTHONPATH")]))}
    supervisord = subprocess.Popen([PY, "-m", "supervisor.supervisord", "-c", str(conf)], env=env)
    # Ctrl-C reaches supervisord too (same process group); SIGTERM is handed on to it
    signal.signal(signal.SIGTERM, lambda signum, frame: supervisord.terminate())
    try:
        while True:
            try:
                code = supervisord.wait()
                break
            except KeyboardInterrupt:
                continue  # supervisord got it as well: wait for it to stop everything
    finally:
        if not args.dir:  # a directory of our own making goes with the demo
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
