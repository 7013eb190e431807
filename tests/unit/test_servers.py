"""Which server a command line runs: the pre-fork servers `children = auto` knows, and
sentry-memwatch itself (never judged)."""

from __future__ import annotations

import pytest

from listener.core.servers import Server, recognise


@pytest.mark.parametrize(
    ("cmdline", "server"),
    [
        ("/usr/bin/uwsgi --ini /etc/uwsgi.ini", Server.UWSGI),
        ("/venv/bin/python /venv/bin/uwsgi --master --processes 4", Server.UWSGI),  # pyuwsgi's script
        ("python3 -m pyuwsgi --http-socket :9000", Server.UWSGI),
        ("/www/sentry/bin/python /www/sentry/bin/sentry run web", Server.UWSGI),
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
