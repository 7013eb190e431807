"""The demo: a real supervisord running stand-ins for Sentry's web and workers, guarded by
sentry-memwatch. Restarts show up within a minute in /metrics and in supervisord's log.

    python deploy/demo/run.py [--dir DIR] [--metrics-port 9870] [--web-port 9000]

Stops with Ctrl-C (supervisord stops everything it runs); the directory it made is removed then
(one given with --dir is kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def write_config(root: Path, metrics_port: int, web_port: int) -> Path:
    uwsgi = shutil.which("uwsgi", path=os.path.dirname(PY) + os.pathsep + os.environ.get("PATH", ""))
    web = (f"{uwsgi} --http-socket 127.0.0.1:{web_port} --wsgi-file {HERE / 'webapp.py'} "
           "--master --processes 2 --die-on-term --disable-logging" if uwsgi
           else f"{PY} {HERE / 'hog.py'} --mb 20 --children 2 --child-mb 10")
    hog = f"{PY} {HERE / 'hog.py'}"
    (root / "memwatch.ini").write_text(textwrap.dedent(f"""\
        # sentry-memwatch settings for the demo: the production flags at demo sizes
        [sentry-memwatch]
        server-url = unix://{root}/supervisor.sock
        group = sentry-web=150MB sentry-worker=60MB sentry-cron=60MB
        children = each
        measure = pss
        consecutive = 2
        grace = 5s
        max-restarts = 10
        restart-window = 10m
        max-parallel = 1
        metrics-port = {metrics_port}
        state-dir = {root}/state
        """))
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

        ; Sentry web: a uWSGI master and its workers (GET /leak?mb=200 bloats one worker)
        [program:sentry-web]
        command={web}
        stopsignal=INT
        stopasgroup=true
        startsecs=1

        ; Sentry workers: prefork masters, the first child of each leaks 4 MiB/s
        [program:sentry-worker]
        command={hog} --mb 10 --children 2 --child-mb 5 --grow-child 0 --leak-mb-per-sec 4
        process_name=%(program_name)s-%(process_num)02d
        numprocs=2
        stopasgroup=true
        startsecs=1

        ; Sentry cron: a single process that leaks 3 MiB/s
        [program:sentry-cron]
        command={hog} --mb 10 --leak-mb-per-sec 3
        startsecs=1

        [eventlistener:memwatch]
        command={PY} -m listener --config {root}/memwatch.ini
        events=TICK_5
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
    print(textwrap.dedent(f"""\
        sentry-memwatch demo in {root}
          status page:  http://127.0.0.1:{args.metrics_port}/
          metrics:      curl -s http://127.0.0.1:{args.metrics_port}/metrics | grep ^memwatch_restarts
          one look:     {Path(PY).parent / 'sentry-memwatch'} check --config {root}/memwatch.ini
          bloat web:    curl -s 'http://127.0.0.1:{args.web_port}/leak?mb=200'
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
