"""deploy/nginx/sentry.conf, loaded by a real nginx in front of a real uWSGI.

uWSGI runs with the options of deploy/sentry/sentry-guide-uwsgi.conf.py (the way the guide's
`sentry run web` passes them) and a tiny WSGI app instead of Sentry; nginx runs a copy of
deploy/nginx/sentry.conf with only the ports, the certificate paths and the upstream address
changed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import runpy
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

NGINX_CONF = h.DEPLOY / "nginx" / "sentry.conf"
SENTRY_CONF = h.DEPLOY / "sentry" / "sentry-guide-uwsgi.conf.py"  # uWSGI: the uwsgi protocol

APP = """
import json

def application(environ, start_response):
    body = environ["wsgi.input"].read()
    keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR",
            "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR")
    seen = {key: environ.get(key) for key in keys}
    seen["body_length"] = len(body)
    seen["greeting"] = "hello from the test app"
    data = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
"""


@dataclass
class Stack:
    http_port: int
    https_port: int
    tls: ssl.SSLContext


def nginx_binary() -> str:
    return h.require_binary("nginx", "apt-get install nginx-light")


def uwsgi_command(socket_addr: str, app: Path) -> list[str]:
    """uWSGI's command line from SENTRY_WEB_OPTIONS, as `sentry run web` would build it."""
    options = dict(runpy.run_path(str(SENTRY_CONF))["SENTRY_WEB_OPTIONS"])
    options[f"{options['protocol']}-socket"] = socket_addr
    cmd = [h.require_binary("uwsgi", "pip install pyuwsgi"), "--strict", "--master"]
    for key, value in options.items():
        if value is True:
            cmd.append(f"--{key}")
        elif value is not False:
            cmd += [f"--{key}", str(value)]
    return cmd + ["--wsgi-file", str(app), "--need-app"]


def rewrite_site(
    text: str, http_port: int, https_port: int, cert: Path, key: Path, upstream: str
) -> str:
    """Point the deploy file at the test's ports and files; fail if its shape changed."""
    subs = [
        (r"^(\s*)listen 80;$", rf"\1listen 127.0.0.1:{http_port};"),
        (r"^(\s*)listen 443 ssl(.*);$", rf"\1listen 127.0.0.1:{https_port} ssl\2;"),
        (r"^\s*listen \[::\]:\d+.*;\n", ""),
        (r"^(\s*)ssl_certificate\s+\S+;$", rf"\1ssl_certificate {cert};"),
        (r"^(\s*)ssl_certificate_key\s+\S+;$", rf"\1ssl_certificate_key {key};"),
        (r"^(\s*)server 127\.0\.0\.1:9000;$", rf"\1server {upstream};"),
    ]
    for pattern, replacement in subs:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count >= 1, f"deploy/nginx/sentry.conf no longer matches {pattern!r}"
    return text


def main_conf(tmp: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp}"
        f"    include {site};\n}}\n"
    )


def make_cert(tmp: Path) -> tuple[Path, Path]:
    openssl = h.require_binary("openssl", "apt-get install openssl")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def uwsgi_params_file() -> Path:
    """The uwsgi_params that ships with nginx, next to its default nginx.conf."""
    out = subprocess.run([nginx_binary(), "-V"], capture_output=True, text=True).stderr
    match = re.search(r"--conf-path=(\S+)", out)
    conf_dir = Path(match.group(1)).parent if match else Path("/etc/nginx")
    return conf_dir / "uwsgi_params"


@dataclass
class Site:
    """nginx.conf in a tmp dir, including the deploy site pointed at free ports."""

    tmp: Path
    conf: Path
    http_port: int
    https_port: int
    uwsgi_port: int

    def nginx(self, *args: str) -> list[str]:
        return [nginx_binary(), *args, "-c", str(self.conf), "-e", str(self.tmp / "error.log")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    nginx_binary()
    tmp = tmp_path_factory.mktemp("nginx")
    cert, key = make_cert(tmp)
    (tmp / "uwsgi_params").write_bytes(uwsgi_params_file().read_bytes())
    ports = Site(tmp, tmp / "nginx.conf", h.free_port(), h.free_port(), h.free_port())
    upstream = f"127.0.0.1:{ports.uwsgi_port}"
    text = rewrite_site(
        NGINX_CONF.read_text(), ports.http_port, ports.https_port, cert, key, upstream
    )
    (tmp / "sentry.conf").write_text(text)
    ports.conf.write_text(main_conf(tmp, tmp / "sentry.conf"))
    return ports


def test_nginx_accepts_the_config(site: Site) -> None:
    result = subprocess.run(site.nginx("-t"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture(scope="module")
def stack(site: Site) -> Iterator[Stack]:
    app = site.tmp / "app.py"
    app.write_text(APP)
    uwsgi_log = site.tmp / "uwsgi.log"
    uwsgi = h.start(uwsgi_command(f"127.0.0.1:{site.uwsgi_port}", app), uwsgi_log, cwd=site.tmp)
    nginx = None
    try:
        h.wait_for(
            lambda: h.port_accepts(site.uwsgi_port), what="uWSGI socket", proc=uwsgi, log=uwsgi_log
        )
        nginx = h.start(site.nginx(), site.tmp / "nginx.out")
        h.wait_for(
            lambda: h.port_accepts(site.https_port),
            what="nginx HTTPS port",
            proc=nginx,
            log=site.tmp / "error.log",
        )
        tls = ssl.create_default_context(cafile=str(site.tmp / "cert.pem"))
        yield Stack(site.http_port, site.https_port, tls)
    finally:
        if nginx is not None:
            h.stop(nginx)
        h.stop(uwsgi)


def https(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", stack.https_port, context=stack.tls, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def app_ready(stack: Stack) -> tuple[int, dict[str, str], bytes] | None:
    """The first answer that came from the app itself (not a 502 while uWSGI starts)."""
    answer = https(stack, "GET", "/")
    return answer if answer[0] != 502 else None


def test_https_request_reaches_the_wsgi_app(stack: Stack) -> None:
    h.wait_for(lambda: app_ready(stack), what="the app behind nginx")
    status, headers, body = https(stack, "GET", "/api/0/?x=1")
    assert status == 200, body
    seen = json.loads(body)
    assert seen["greeting"] == "hello from the test app"
    assert seen["PATH_INFO"] == "/api/0/"
    assert seen["QUERY_STRING"] == "x=1"
    assert headers["strict-transport-security"].startswith("max-age=")


def test_client_cannot_spoof_forwarded_headers(stack: Stack) -> None:
    h.wait_for(lambda: app_ready(stack), what="the app behind nginx")
    status, _, body = https(
        stack, "GET", "/", headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7"}
    )
    assert status == 200, body
    seen = json.loads(body)
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"
    assert seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"


def test_request_body_is_passed_to_the_app(stack: Stack) -> None:
    h.wait_for(lambda: app_ready(stack), what="the app behind nginx")
    payload = os.urandom(3 * 1024 * 1024)  # above client_body_buffer_size: via a temp file
    status, _, body = https(
        stack,
        "POST",
        "/api/1/store/",
        body=payload,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, body
    assert json.loads(body)["body_length"] == len(payload)


def test_body_over_client_max_body_size_is_refused_by_nginx(stack: Stack) -> None:
    # Only the headers are sent: nginx must refuse on Content-Length alone.
    raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=30)
    with stack.tls.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(
            b"POST /api/1/store/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: 104857600\r\nConnection: close\r\n\r\n"
        )
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413", status_line


def test_plain_http_redirects_to_https(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=30)
    try:
        conn.request("GET", "/organizations/x/?a=1", headers={"Host": "sentry.example.com"})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://sentry.example.com/organizations/x/?a=1"
