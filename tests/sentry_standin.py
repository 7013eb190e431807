"""A stand-in for Sentry's `sentry` command in the tests of deploy/supervisor (tests only).

`sentry run SERVICE [options]` records how it was started (argv, working directory, uid,
SENTRY_CONF) and then becomes what the real command runs, as far as memwatch can tell:

- today's Sentry (deploy/supervisor/sentry.conf):
  - `run web`: a real Granian, embedded through its Python API with the settings of
    deploy/sentry/sentry.conf.py handed over as Sentry's `sentry run web` hands them
    (`granian_kwargs`), serving deploy/demo/webapp.py instead of Sentry;
  - `run taskworker`: a real taskbroker-client TaskWorker (tests.taskworker_app) with the
    command's own arguments, in push mode on a free port (tasks are not needed here);
  - `run taskscheduler`: one process (deploy/demo/hog.py);
- the guide's (deploy/supervisor/sentry-guide-uwsgi-celery.conf), through deploy/demo/hog.py
  in this process, so that the command line stays `sentry run ...`:
  - `run web`: a master with pyuwsgi mapped (as uWSGI's master and workers have) and the
    web workers of deploy/sentry/sentry-guide-uwsgi.conf.py;
  - `run worker -c N`: a Celery-like main process with N forked children;
  - `run cron`: one process.

The test writes a small `sentry` script that calls `main` with its own directories and port.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TODAY_CONF_PY = DEPLOY / "sentry" / "sentry.conf.py"
GUIDE_CONF_PY = DEPLOY / "sentry" / "sentry-guide-uwsgi.conf.py"
WEBAPP_DIR = DEPLOY / "demo"
HOG = DEPLOY / "demo" / "hog.py"


def granian_kwargs(settings: dict[str, Any], port: int, target: str,
                   workers_flag: int | None = None) -> dict[str, Any]:
    """Granian's arguments as `sentry run web` makes them from sentry.conf.py's settings.

    What Sentry's src/sentry/services/http.py (its Granian version, quoted in
    docs/findings/granian-and-taskworker.md) does, restated: its defaults for the options,
    then a fixed Granian call. `workers_flag` is `sentry run web -w N` (None: not given)."""
    from granian.constants import Interfaces

    workers = workers_flag or 1
    options = dict(settings.get("SENTRY_WEB_OPTIONS") or {})
    if workers_flag:
        options["workers"] = workers_flag
    for key, default in (("workers", workers), ("threads", None),
                         ("backlog", max(128, 64 * workers)), ("log-enabled", True),
                         ("reload", False), ("reload-on-rss", 600)):
        options.setdefault(key, default)
    if "disable-logging" in options:  # uWSGI's spelling, still read
        options["log-enabled"] = not options.pop("disable-logging")
    return {
        "target": target, "address": settings["SENTRY_WEB_HOST"], "port": port,
        "interface": Interfaces.WSGI, "workers": options["workers"],
        "backlog": options["backlog"], "blocking_threads": options["threads"],
        # written into Sentry's call, not options
        "workers_kill_timeout": 30, "respawn_failed_workers": True,
        "reload": options["reload"],
        # read without a default of Sentry's own: a missing key stops `sentry run web`
        "reload_ignore_worker_failure": options["reload_ignore_worker_failure"],
        "process_name": options["process-name"],
        "workers_max_rss": options["reload-on-rss"],
        "log_access": options["log-enabled"],
    }


def _option(args: list[str], short: str, long: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return default


def _record(records: Path, args: list[str]) -> None:
    record = records / f"{os.getpid()}.json"
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"argv": args, "cwd": os.getcwd(), "uid": os.getuid(),
                               "SENTRY_CONF": os.environ.get("SENTRY_CONF")}))
    os.replace(tmp, record)


def _hog(tree: list[str]) -> int:
    sys.argv = [str(HOG), *tree]  # hog runs in this process: its command line stays `sentry ...`
    runpy.run_path(str(HOG), run_name="__main__")
    return 0


def _web(args: list[str], web_port: int) -> int:
    from granian import Granian

    settings = runpy.run_path(str(TODAY_CONF_PY))
    if not settings.get("SENTRY_USE_UWSGI", True):
        sys.exit("stand-in sentry: SENTRY_USE_UWSGI is False: Sentry would serve with wsgiref")
    flag = _option(args, "-w", "--workers", "")
    sys.path.insert(0, str(WEBAPP_DIR))  # the target's module; forked workers inherit it
    kwargs = granian_kwargs(settings, web_port, "webapp:application", int(flag) if flag else None)
    Granian(**kwargs).serve()
    return 0


def _taskworker(args: list[str]) -> int:
    from tests.harness import free_port
    from tests.taskworker_app import main as taskworker_main

    return taskworker_main(["run", "taskworker", *args, f"--grpc-port={free_port()}"])


def main(argv: list[str], records: Path, web_port: int) -> int:
    """`sentry run SERVICE [options]` of today's Sentry or of the guide's."""
    if len(argv) < 2 or argv[0] != "run":
        sys.exit(f"stand-in sentry: unexpected arguments {argv!r}")
    service, args = argv[1], argv[2:]
    _record(records, argv)
    if service == "web" and web_port:  # today's: Granian
        return _web(args, web_port)
    if service == "taskworker":
        return _taskworker(args)
    if service in ("taskscheduler", "cron"):  # one process
        return _hog(["--mb", "10"])
    if service == "web":  # the guide's: a uWSGI master and its workers
        import pyuwsgi  # noqa: F401  (uWSGI's module mapped, as in the real master and workers)

        workers = runpy.run_path(str(GUIDE_CONF_PY))["SENTRY_WEB_OPTIONS"]["workers"]
        return _hog(["--mb", "15", "--children", _option(args, "-w", "--workers", str(workers)),
                     "--child-mb", "10"])
    if service == "worker":  # the guide's: a Celery main process and its prefork children
        return _hog(["--mb", "15", "--children", _option(args, "-c", "--concurrency", "1"),
                     "--child-mb", "5"])
    sys.exit(f"stand-in sentry: unexpected service {service!r}")
