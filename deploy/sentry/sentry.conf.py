# Web-server settings for today's Sentry, for sentry.conf.py: `sentry run web` is an embedded
# Granian since January 2026 (getsentry/sentry PR #106089). For an older Sentry, whose
# `sentry run web` is uWSGI, use deploy/sentry/sentry-guide-uwsgi.conf.py instead
# (deploy/README.md says how to tell which you have).
#
# Merge these settings into the sentry.conf.py that `sentry init` generated (it starts with
# `from sentry.conf.server import *`). This file is plain Python on purpose: it imports
# nothing from Sentry, so it can be read and tested without Sentry installed.
#
# What `sentry run web` reads (src/sentry/services/http.py, the Granian version as stored in
# the code search, quoted in docs/findings/granian-and-taskworker.md): SENTRY_WEB_HOST and
# SENTRY_WEB_PORT, and from SENTRY_WEB_OPTIONS `workers`, `threads`, `backlog`,
# `reload-on-rss`, `process-name`, `reload_ignore_worker_failure`, `reload`, `log-enabled`
# (or uWSGI's `disable-logging`) and `log-format`. uWSGI's other options (protocol,
# max-requests, harakiri, die-on-term...) are ignored. Two Granian settings are not options:
# `respawn_failed_workers=True` and `workers_kill_timeout=30` are written into the call.
# tests/unit/test_deploy_sentry_conf.py hands these options to a real Granian the way that
# code does, and tests/integration/test_deploy_supervisor.py serves with them.

# Granian speaks HTTP (not uWSGI's uwsgi protocol): nginx proxies to it with proxy_pass.
# Loopback only: nginx on the same host is the only client it needs, and a client that
# reached Granian directly could set X-Forwarded-Proto itself, which Sentry trusts below.
SENTRY_WEB_HOST = "127.0.0.1"
SENTRY_WEB_PORT = 9000

# Sentry's default, spelled out: despite its name, False makes `sentry run web` serve with
# wsgiref's development server (one process, one request at a time) instead of Granian.
SENTRY_USE_UWSGI = True

SENTRY_WEB_OPTIONS = {
    # Granian worker processes (each one a full copy of Sentry in memory). Size for memory,
    # not CPUs: workers x per-worker budget must fit in RAM next to the taskworkers. Sentry
    # defaults to 1; `sentry run web -w N` overrides this.
    "workers": 3,
    # Granian's `workers_max_rss` (MiB of RSS), Sentry's default spelled out: Granian checks
    # each worker every 30 s and replaces one above it gracefully (a new worker first, then
    # the old one drains its requests, for at most workers_kill_timeout = 30 s). This is the
    # first line: free, one worker at a time. sentry-memwatch's limit for these workers
    # (deploy/memwatch/sentry-memwatch.conf, [group:sentry-web]: 700MB of PSS, which is never
    # above RSS) sits above it, so memwatch acts only on what Granian's check misses: a worker
    # that grows more than 100 MiB within Granian's 30 s between checks, or a master that
    # stopped checking. Keep it below memwatch's limit if you change either.
    "reload-on-rss": 600,
    # Granian's `process_name` (the title of master and workers). None: Granian's own titles
    # (`granian wsgi 127.0.0.1:9000 sentry.wsgi:application worker-1` with setproctitle
    # installed, the command line without it). A name needs setproctitle, else Granian
    # refuses to start. The version of http.py read passes options["process-name"] and
    # options["reload_ignore_worker_failure"] without a default of its own (its defaults are
    # set under other spellings), so both keys are set here; where they are not read they
    # change nothing. memwatch recognises Granian by its module, whatever the title.
    "process-name": None,
    # Only matters with `reload` (code reloading, for development), which stays off.
    "reload_ignore_worker_failure": False,
}

# nginx terminates TLS and tells Sentry so with X-Forwarded-Proto (nginx overrides whatever
# the client sent in that header). Without these, Sentry builds http:// links and sends
# cookies without the Secure flag.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SOCIAL_AUTH_REDIRECT_IS_HTTPS = True
