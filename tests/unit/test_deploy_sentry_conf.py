"""deploy/sentry/*.conf.py: execute as plain Python and set the tuned web options.

sentry.conf.py is today's Sentry (Granian): its options are handed to a real Granian the way
`sentry run web` hands them (tests.sentry_standin.granian_kwargs). sentry-guide-uwsgi.conf.py
is the guide's Sentry (uWSGI): every option must be a real uWSGI option."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sentry_standin import GUIDE_CONF_PY, TODAY_CONF_PY, granian_kwargs

CONF = GUIDE_CONF_PY
MiB = 2**20


@pytest.fixture(scope="module")
def settings() -> dict:
    return runpy.run_path(str(CONF))


@pytest.fixture(scope="module")
def today() -> dict:
    return runpy.run_path(str(TODAY_CONF_PY))


def test_today_listens_on_loopback_port_9000_and_stays_on_granian(today: dict) -> None:
    assert (today["SENTRY_WEB_HOST"], today["SENTRY_WEB_PORT"]) == ("127.0.0.1", 9000)
    assert today["SENTRY_USE_UWSGI"] is True  # False: wsgiref's one-process server instead
    assert today["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_todays_options_are_what_sentry_hands_to_a_real_granian(today: dict) -> None:
    granian = pytest.importorskip("granian")
    options = today["SENTRY_WEB_OPTIONS"]
    # the keys Sentry's Granian launcher reads, and no uWSGI option it would ignore
    assert set(options) <= {"workers", "threads", "backlog", "reload-on-rss", "process-name",
                            "reload_ignore_worker_failure", "reload", "log-enabled",
                            "disable-logging", "log-format"}
    kwargs = granian_kwargs(today, 9000, "webapp:application")
    server = granian.Granian(**kwargs)  # raises on an argument Granian does not take
    assert server.workers == options["workers"] == 3
    assert server.workers_rss == options["reload-on-rss"] * MiB  # Granian's own recycling
    assert server.respawn_failed_workers is True and server.workers_kill_timeout == 30
    assert server.process_name is None  # no name: no need for setproctitle


def test_sentry_run_web_w_overrides_the_workers(today: dict) -> None:
    pytest.importorskip("granian")
    assert granian_kwargs(today, 9000, "webapp:application", workers_flag=5)["workers"] == 5


def test_web_host_is_loopback_and_port_matches_nginx_upstream(settings: dict) -> None:
    assert settings["SENTRY_WEB_HOST"] == "127.0.0.1"
    assert settings["SENTRY_WEB_PORT"] == 9000
    nginx_conf = (CONF.parents[1] / "nginx" / "sentry.conf").read_text()
    assert "server 127.0.0.1:9000" in nginx_conf


def test_web_options_follow_the_tuning_guide(settings: dict) -> None:
    options = settings["SENTRY_WEB_OPTIONS"]
    assert options["protocol"] == "uwsgi"
    assert options["workers"] == 3


def test_web_options_add_safer_worker_recycling(settings: dict) -> None:
    options = settings["SENTRY_WEB_OPTIONS"]
    assert options["max-requests"] > 0
    assert options["harakiri"] > 0
    assert options["die-on-term"] is True
    assert options["memory-report"] is False


def test_harakiri_fires_before_nginx_gives_up(settings: dict) -> None:
    nginx_conf = (CONF.parents[1] / "nginx" / "sentry.conf").read_text()
    timeout = next(
        line.split()[1].rstrip(";")
        for line in nginx_conf.splitlines()
        if line.strip().startswith("uwsgi_read_timeout")
    )
    assert timeout.endswith("s")
    assert int(timeout[:-1]) > settings["SENTRY_WEB_OPTIONS"]["harakiri"]


def test_tls_proxy_settings(settings: dict) -> None:
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["CSRF_COOKIE_SECURE"] is True


def test_every_option_is_a_real_uwsgi_option(settings: dict) -> None:
    # A virtualenv's bin/ holds pyuwsgi's `uwsgi` even when it is not on PATH.
    uwsgi = shutil.which("uwsgi") or shutil.which("uwsgi", path=str(Path(sys.executable).parent))
    if uwsgi is None:
        pytest.skip("uwsgi binary not found on PATH (pip install pyuwsgi)")
    help_text = subprocess.run([uwsgi, "--help"], capture_output=True, text=True, timeout=30).stdout
    for key in settings["SENTRY_WEB_OPTIONS"]:
        assert f"--{key} " in help_text or f"|--{key} " in help_text, key
