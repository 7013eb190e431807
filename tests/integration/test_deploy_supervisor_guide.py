"""deploy/supervisor/sentry-guide-uwsgi-celery.conf, the tuning guide's shape for a Sentry from
before the switches (uWSGI web, Celery workers and beat), with its rules file
deploy/memwatch/sentry-memwatch.conf: read by the listener's own parser, loaded by a real
supervisord (supervisor_deploy.py says what the test's copy substitutes). The stand-in `sentry`
gives each program the process tree of the real command: a master with pyuwsgi mapped and the
web workers of deploy/sentry/sentry-guide-uwsgi.conf.py, Celery-like masters with -c children.
"""

from __future__ import annotations

import platform
import runpy
import shlex
from collections.abc import Iterator

import psutil
import pytest

from listener.daemon import SHUTDOWN_GRACE

try:
    from . import supervisor_deploy as sd
except ImportError:  # tests/integration is not a package
    import supervisor_deploy as sd  # type: ignore[no-redef]

CONF = sd.DEPLOY / "supervisor" / "sentry-guide-uwsgi-celery.conf"
SENTRY_CONF_PY = sd.DEPLOY / "sentry" / "sentry-guide-uwsgi.conf.py"
PROGRAMS = {"sentry-web", "sentry-worker", "sentry-cron"}
MiB = sd.MiB


def web_workers() -> int:
    return int(runpy.run_path(str(SENTRY_CONF_PY))["SENTRY_WEB_OPTIONS"]["workers"])


# --- the file as shipped -----------------------------------------------------------------------


def test_the_file_has_the_guides_programs_and_one_listener_with_one_rules_file() -> None:
    parser = sd.read_conf(CONF.read_text())
    programs = sd.sections(parser, "program")
    listeners = sd.sections(parser, "eventlistener")
    assert set(programs) == PROGRAMS
    assert set(listeners) == {"memwatch"}

    assert shlex.split(programs["sentry-web"]["command"])[1:] == ["run", "web"]
    worker = programs["sentry-worker"]
    argv = shlex.split(worker["command"])
    assert argv[1:8] == ["run", "worker", "-c", "4", "-l", "WARNING", "-n"], argv
    assert argv[8].startswith("worker-%(process_num)02d"), argv  # one node name per master
    assert int(worker["numprocs"]) > 1
    assert "%(process_num)" in worker["process_name"]
    assert shlex.split(programs["sentry-cron"]["command"])[1:] == ["run", "cron"]
    for name, opts in programs.items():
        assert opts.get("user") not in (None, "root"), f"{name} must not run as root"
        # the master is signalled, the whole group killed: see the comments in the file
        assert opts["stopasgroup"] == "false" and opts["killasgroup"] == "true", name

    opts = listeners["memwatch"]
    assert opts["events"] == "TICK_5,PROCESS_STATE,PROCESS_GROUP"  # the table from events
    assert int(opts["buffer_size"]) >= 100
    assert opts.get("stderr_logfile", "").startswith("/")
    assert "stdout_logfile" not in opts, "stdout is the event protocol"
    # supervisord must not SIGKILL a listener that waits for a restart in flight
    assert int(opts["stopwaitsecs"]) > SHUTDOWN_GRACE
    config = sd.listener_config(opts["command"])
    assert config.metrics_port == 9870
    assert not config.dry_run
    assert config.rules.any is None
    default = config.strategy
    assert default.measure == "pss"
    assert (default.consecutive, default.grace, default.max_restarts, default.restart_window,
            default.max_parallel) == (3, 60.0, 5, 3600.0, 1)


RULE_OF = {  # program -> (rule, limit, children) as the rules file says
    "sentry-web": ("group sentry-web", 700 * MiB, "auto"),
    "sentry-worker": ("group sentry-worker", 400 * MiB, "auto"),
    "sentry-cron": ("program sentry-cron", 400 * MiB, "none"),
}


def test_every_program_has_its_own_rule_and_the_listener_waits_long_enough() -> None:
    rules = sd.rules_of_programs(CONF, RULE_OF)
    # a uWSGI worker sent SIGHUP finishes its request, bounded only by harakiri (not by
    # worker-reload-mercy): it gets longer than that before its program is restarted
    harakiri = runpy.run_path(str(SENTRY_CONF_PY))["SENTRY_WEB_OPTIONS"]["harakiri"]
    assert all(r.strategy.child_signal_timeout > harakiri for r in rules.values())
    # the listener's limit for a web worker sits above uWSGI's own reload-on-rss (MiB of RSS)
    rss = runpy.run_path(str(SENTRY_CONF_PY))["SENTRY_WEB_OPTIONS"]["reload-on-rss"]
    assert RULE_OF["sentry-web"][1] > rss * MiB


# --- the file in a real supervisord ------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[sd.Stack]:
    with sd.running(CONF) as stack:
        yield stack


def test_supervisord_runs_every_program_and_the_listener(stack: sd.Stack) -> None:
    assert len(stack.expected) == 1 + 4 + 1 + 1  # web, 4 worker masters, cron, the listener
    pids = stack.sv.wait_running(*stack.expected, timeout=60)
    assert set(stack.sv.infos()) == stack.expected
    # running, not crash-looping: nothing has exited since the start
    assert "exited" not in stack.sv.log_text(), stack.sv.log_text()

    # the stand-ins were started with the file's own arguments, in its directory, as its user,
    # with its environment; the worker node names come out unique and host-qualified
    found = sd.records(stack, pids)
    node_names = []
    for namespec, pid in pids.items():
        if namespec.startswith("sentry-worker:"):
            argv = found[pid]["argv"]
            node_names.append(argv[argv.index("-n") + 1])
    workers = sorted(n for n in stack.expected if n.startswith("sentry-worker:"))
    assert sorted(node_names) == [f"worker-{i:02d}@{platform.node()}" for i in range(len(workers))]

    # the process trees the listeners will judge: uWSGI-like web, Celery-like workers
    assert len(psutil.Process(pids["sentry-web:sentry-web"]).children()) == web_workers()
    for namespec in workers:
        assert len(psutil.Process(pids[namespec]).children()) == 4
    for name in ("sentry-web.log", "sentry-worker-00.log", "memwatch.log"):
        assert (stack.root / "log" / name).exists(), name


def test_the_listener_judges_each_program_by_its_own_rule_and_check_agrees(
        stack: sd.Stack) -> None:
    stack.sv.wait_running(*stack.expected, timeout=60)
    workers = {n.partition(":")[2] for n in stack.expected if n.startswith("sentry-worker:")}
    strategies = {("sentry-web", "sentry-web"): "pss, each, HUP (auto: uwsgi)",
                  ("sentry-cron", "sentry-cron"): "pss"}
    strategies |= {("sentry-worker", w): "pss, each (auto: celery)" for w in workers}

    samples, _ = sd.judged(stack, strategies)
    # `auto` found uWSGI (its module) in `sentry run web` and judges each of its workers
    assert sd.value(samples, "memwatch_process_children", group="sentry-web",
                    process="sentry-web") == web_workers()
    sd.check_agrees(stack, strategies)
