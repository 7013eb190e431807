# Web-server part of Sentry's performance-tuning guide, for the sentry.conf.py of a Sentry
# whose `sentry run web` is uWSGI: releases before January 2026. A newer Sentry (Granian)
# takes deploy/sentry/sentry.conf.py instead (deploy/README.md says how to tell which you
# have). It goes with deploy/supervisor/sentry-guide-uwsgi-celery.conf.
#
# Merge these settings into the sentry.conf.py that `sentry init` generated (it starts with
# `from sentry.conf.server import *`). This file is plain Python on purpose: it imports
# nothing from Sentry, so it can be read and tested without Sentry installed.
#
# That `sentry run web` turns SENTRY_WEB_OPTIONS into uWSGI options (key = uWSGI long option
# name without the dashes, passed as UWSGI_* environment variables, None skipped); keys set
# here override Sentry's own defaults for the same option. The result: a uWSGI master with 3
# worker processes speaking the binary uwsgi protocol to nginx (deploy/nginx/sentry.conf),
# kept inside a memory budget by sentry-memwatch.

# Listen on loopback only. The guide's examples (and `sentry init`) use 0.0.0.0, but the
# uwsgi protocol has no authentication, and whoever can reach the socket can send uWSGI's
# "magic variables" (UWSGI_FILE and friends) that load and run code: an exposed uwsgi socket
# is a remote-code-execution hole. nginx on the same host is the only client it needs.
SENTRY_WEB_HOST = "127.0.0.1"
SENTRY_WEB_PORT = 9000

SENTRY_WEB_OPTIONS = {
    # Binary uwsgi protocol instead of uWSGI's built-in HTTP router: nginx talks it natively
    # (uwsgi_pass), and it saves uWSGI's extra HTTP router process and a parse per request.
    "protocol": "uwsgi",
    # Worker processes (each one a full copy of Sentry in memory). Size for memory, not
    # CPUs: workers x per-worker budget must fit in RAM next to the Celery workers.
    "workers": 3,
    # Better practice beyond the guide: recycle every worker after this many requests, so
    # slow leaks are shed gracefully between requests instead of growing until memwatch
    # (or the kernel's OOM killer) has to step in.
    "max-requests": 5000,
    # Better practice beyond the guide: kill a worker stuck in one request for 60 s. Keep
    # nginx's uwsgi_read_timeout a little above this (deploy/nginx/sentry.conf: 65s) so uWSGI
    # gives up first and nginx answers 502 at once rather than waiting on a dead request.
    "harakiri": 60,
    # SIGTERM means "stop" (as supervisord and systemd expect), not uWSGI 2.0's "reload".
    # Sentry already sets this by default; it is spelled out because memwatch's restarts
    # depend on it: a stop that reloads instead would never end.
    "die-on-term": True,
    # Sentry turns memory-report on by default: a memory line in the log for every request.
    # That is log noise and per-request overhead; memory is watched by sentry-memwatch now,
    # which exports it as Prometheus metrics (memwatch_process_memory_bytes).
    "memory-report": False,
    # Sentry's default per-worker RSS ceiling (MB), checked by the worker after each request.
    # Kept as a cheap first line of defence; give memwatch a per-child limit above it (e.g.
    # `--children each -g sentry-web=700MB --child-signal HUP`): memwatch catches what this
    # check misses (a worker that has grown while idle, PSS rather than RSS, a limit per
    # worker that Prometheus can alert on). Growth inside one long request is bounded by
    # `harakiri`: a worker sent HUP finishes its current request before it is replaced.
    "reload-on-rss": 600,
}

# nginx terminates TLS and tells Sentry so with X-Forwarded-Proto (nginx overrides whatever
# the client sent in that header). Without these, Sentry builds http:// links and sends
# cookies without the Secure flag.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SOCIAL_AUTH_REDIRECT_IS_HTTPS = True
