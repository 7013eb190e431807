"""deploy/sentry/sentry.conf.py: executes as plain Python and sets the tuned web options."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "deploy" / "sentry" / "sentry.conf.py"


@pytest.fixture(scope="module")
def settings() -> dict:
    return runpy.run_path(str(CONF))


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
