"""Which server a command line runs: the pre-fork servers `children = auto` knows, and
sentry-memwatch itself (never judged)."""

from __future__ import annotations

import pytest

from listener.core.servers import Server, is_helper, is_shell_wrapper, recognise


@pytest.mark.parametrize(
    ("cmdline", "server"),
    [
        ("/usr/bin/uwsgi --ini /etc/uwsgi.ini", Server.UWSGI),
        ("/venv/bin/python /venv/bin/uwsgi --master --processes 4", Server.UWSGI),  # pyuwsgi's script
        ("python3 -m pyuwsgi --http-socket :9000", Server.UWSGI),
        # `sentry run web` was uWSGI, is Granian: the name alone says neither (its modules do)
        ("/www/sentry/bin/python /www/sentry/bin/sentry run web", Server.PLAIN),
        ("/www/sentry/bin/sentry run taskworker --concurrency=4 --rpc-host=taskbroker:50051",
         Server.TASKWORKER),
        ("/venv/bin/granian --interface wsgi --workers 3 app:app", Server.GRANIAN),
        ("python -m granian --interface wsgi app:app", Server.GRANIAN),
        ("sentry --config /etc/sentry run web -w 3", Server.PLAIN),  # options before `run`: not known
        ("uWSGI master", Server.UWSGI),  # a process title set with --procname-master
        ("/venv/bin/gunicorn -w 4 app:app", Server.GUNICORN),
        ("/venv/bin/python3.11 /venv/bin/gunicorn app:app", Server.GUNICORN),
        ("gunicorn: master [app:app]", Server.GUNICORN),  # rewritten by setproctitle
        ("python -u -m celery -A app worker -c 4", Server.CELERY),
        ("/venv/bin/celery -A app worker", Server.CELERY),
        ("/venv/bin/celery -A app beat", Server.PLAIN),  # beat is one process, no pool
        ("[celeryd: worker-00@host:MainProcess] -active- (worker -c 4)", Server.CELERY),
        ("/www/sentry/bin/sentry run worker -c 4 -n w@h", Server.CELERY),
        ("/www/sentry/bin/sentry run cron", Server.PLAIN),
        ("/opt/sentry-memwatch/bin/python /opt/sentry-memwatch/bin/sentry-memwatch -a 1GB", Server.MEMWATCH),
        ("sentry-memwatch --config /etc/sentry-memwatch.conf", Server.MEMWATCH),
        ("python -m listener -a 1GB", Server.MEMWATCH),
        ("python listener.py", Server.PLAIN),  # someone else's script of that name
        ("/usr/bin/redis-server 127.0.0.1:6379", Server.PLAIN),
        ("python -X dev -W ignore app.py", Server.PLAIN),
        ("python", Server.PLAIN),
        ("", Server.PLAIN),
    ],
)
def test_recognise(cmdline: str, server: Server) -> None:
    argv = cmdline.split() if not cmdline.startswith(("uWSGI", "gunicorn:", "[celeryd")) else [cmdline]
    assert recognise(argv) is server


SPAWNED = ["/usr/bin/python3", "-B", "-c",
           "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=10, pipe_handle=12)",
           "--multiprocessing-fork"]
TRACKER = ["/usr/bin/python3", "-B", "-c", "from multiprocessing.resource_tracker import main;main(9)"]
SENTRY_WEB = ["/www/sentry/bin/python", "/www/sentry/bin/sentry", "run", "web"]


@pytest.mark.parametrize(("argv", "modules", "children", "server"), [
    # what a process maps beats what it is called
    (SENTRY_WEB, {"libc", "_granian", "_ssl"}, [], Server.GRANIAN),
    (SENTRY_WEB, {"libc", "pyuwsgi"}, [], Server.UWSGI),
    (["sentry worker-1"], {"_granian"}, [], Server.GRANIAN),  # a worker's setproctitle title
    (["/venv/bin/python", "/venv/bin/uwsgi"], {"pyuwsgi"}, [], Server.UWSGI),
    (["/venv/bin/python", "/venv/bin/app.py"], {"_granian"}, [], Server.GRANIAN),  # embedded
    # the tree: spawned children make a pool; the resource tracker alone does not
    (["/venv/bin/python", "jobs.py"], set(), [TRACKER, SPAWNED, SPAWNED], Server.POOL),
    (["/venv/bin/python", "jobs.py"], set(), [TRACKER], Server.PLAIN),
    # forked children that say nothing (a fork-mode pool, a homemade pre-fork server): auto
    # cannot tell, and says so instead of guessing
    (["/venv/bin/python", "jobs.py"], set(), [["/venv/bin/python", "jobs.py"]], Server.UNRECOGNISED),
    (["/venv/bin/python", "/venv/bin/sentry", "run", "taskworker"], set(), [TRACKER, SPAWNED],
     Server.TASKWORKER),  # a name that says more than the tree keeps its meaning
    # a listener is a listener whatever it maps
    (["sentry-memwatch", "-a", "1GB"], {"_granian"}, [], Server.MEMWATCH),
])
def test_recognise_from_evidence(argv: list[str], modules: set[str], children: list[list[str]],
                                 server: Server) -> None:
    assert recognise(argv, modules, children) is server


@pytest.mark.parametrize(("argv", "helper"), [
    (TRACKER, True),
    (["/usr/bin/python3", "-c", "from multiprocessing.forkserver import main; main(5, 6)"], True),
    (SPAWNED, False),
    (["granian wsgi 127.0.0.1:8000 app:app worker-1"], False),
])
def test_multiprocessings_helpers_are_told_from_workers(argv: list[str], helper: bool) -> None:
    assert is_helper(argv) is helper


@pytest.mark.parametrize(("argv", "wrapper"), [
    (["/bin/sh", "-c", "uwsgi --ini /etc/uwsgi.ini"], True),
    (["sh", "-c", "exec granian app:app"], True),
    (["/bin/bash", "-e", "-c", "gunicorn app:app"], True),
    (["/bin/sh", "/opt/start.sh"], False),  # a script: its own process, judged as one
    (["/venv/bin/uwsgi", "-c", "x"], False),
])
def test_a_shell_that_runs_a_server_is_looked_through(argv: list[str], wrapper: bool) -> None:
    assert is_shell_wrapper(argv) is wrapper
