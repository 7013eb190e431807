"""A stand-in for Sentry's web app: a tiny WSGI app with a memory-leak knob.

GET /            -> "ok <pid>"
GET /leak?mb=N   -> the worker that serves it keeps N more MiB (resident), answers its pid
GET /rss         -> the worker's pid and RSS in bytes
"""

import os
import urllib.parse

_leaked: list[bytes] = []


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/leak":
        mb = float(query.get("mb", ["10"])[0])
        _leaked.append(b"\x01" * int(mb * 1024 * 1024))
        body = f"leaked {mb} MiB in {os.getpid()}\n"
    elif path == "/rss":
        body = f"{os.getpid()} {_rss()}\n"
    else:
        body = f"ok {os.getpid()}\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body.encode()]
