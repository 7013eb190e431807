"""Wiring: one place that builds the listener's parts from a Config (used by cli and bench)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import make_wsgi_app

from listener.actions.journal import Journal, default_state_dir
from listener.actions.mail import Mailer
from listener.actions.restarts import Restarter
from listener.config.settings import Config
from listener.core.recovery import PRODUCTION, RetryTiming
from listener.daemon import Daemon
from listener.host.child_signals import ChildSignaller
from listener.host.hostmem import HostMemoryWatch
from listener.host.oomwatch import OomWatch
from listener.host.sampler import Sampler
from listener.supervisord.rpc import Supervisor
from listener.web import status
from listener.web.host_metrics import HostMemoryCollector
from listener.web.httpserver import HttpServer, tls_context
from listener.web.metrics import make_registry
from listener.web.stats import Stats

# A stop waits for the program's stopwaitsecs (Celery's warm shutdown can take minutes) and a
# start for its startsecs; supervisord itself bounds both (SIGKILL after stopwaitsecs), so the
# restarts' calls get this long timeout, not --rpc-timeout, which guards the event loop.
ACTION_TIMEOUT = 3600.0


def connect(config: Config, timeout: float | None = None) -> Supervisor:
    """A client of config's supervisord. Raises ValueError for an unsupported URL."""
    return Supervisor(config.server_url, config.username, config.password,
                      timeout or config.rpc_timeout)


def serve_metrics(config: Config, stats: Stats, host: HostMemoryWatch) -> HttpServer:
    """/metrics, /status and the status page / on config's address. Raises OSError (address in
    use, unreadable TLS files)."""
    tls = None
    if config.metrics_tls_cert and config.metrics_tls_key:
        tls = tls_context(config.metrics_tls_cert, config.metrics_tls_key,
                          config.metrics_tls_client_ca)
    registry = make_registry(stats)
    registry.register(HostMemoryCollector(host))
    routes = status.app(stats, make_wsgi_app(registry), time.time)
    return HttpServer(routes, config.metrics_addr, config.metrics_port, tls)


@dataclass
class Parts:
    daemon: Daemon
    stats: Stats
    server: HttpServer | None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def build(config: Config, reload: Callable[[], Config] | None = None,
          environ: Mapping[str, str] = os.environ,
          retry_timing: RetryTiming = PRODUCTION) -> Parts:
    """The listener, ready to run; /metrics is served already unless metrics_port is 0.
    Raises OSError if /metrics cannot be served, ValueError for an unsupported server URL."""
    stats = Stats()
    host = HostMemoryWatch(config.pressure)
    supervisor = connect(config)
    server = serve_metrics(config, stats, host) if config.metrics_port else None
    try:
        mailer = (Mailer(config.email, config.sendmail, config.name, config.uptime)
                  if config.email else None)
        journal = Journal.open(config.state_dir or default_state_dir(), environ, config.server_url)
        restarter = Restarter(lambda: connect(config, max(config.rpc_timeout, ACTION_TIMEOUT)),
                              stats, journal, mailer, timing=retry_timing)
        sampler = Sampler(configured=supervisor.configured_commands)
        daemon = Daemon(config, supervisor, sampler, restarter, ChildSignaller(stats), stats,
                        reload=reload, environ=environ, host=host, oom=OomWatch(stats))
    except BaseException:
        if server is not None:
            server.close()
        raise
    return Parts(daemon, stats, server)
