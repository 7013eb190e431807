"""deploy/supervisor/sentry.conf, today's Sentry (Granian web, taskworkers, taskscheduler), with
its rules file deploy/memwatch/sentry-memwatch.conf: read by the listener's own parser, loaded
by a real supervisord (supervisor_deploy.py says what the test's copy substitutes).

The stand-in `sentry` (tests/sentry_standin.py) runs what the real command runs: `run web` a
real Granian embedded as Sentry embeds it, with the settings of deploy/sentry/sentry.conf.py,
serving a tiny WSGI app; `run taskworker` a real taskbroker-client TaskWorker with the file's
own arguments (spawned children and the resource tracker); `run taskscheduler` one process.
The listener must recognise each by what runs and judge it by its rule.
"""

from __future__ import annotations

import inspect
import runpy
import shlex
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

from listener.core.rules import ROLLING_SECONDS_PER_WORKER
from listener.daemon import SHUTDOWN_GRACE
from tests.harness import free_port, scrape, value, wait_for
from tests.sentry_standin import TODAY_CONF_PY, granian_kwargs

try:
    from . import deploy_helpers as h
    from . import supervisor_deploy as sd
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]
    import supervisor_deploy as sd  # type: ignore[no-redef]

granian = pytest.importorskip("granian")
pytest.importorskip("taskbroker_client")

CONF = sd.DEPLOY / "supervisor" / "sentry.conf"
PROGRAMS = {"sentry-web", "sentry-taskworker", "sentry-taskscheduler"}
MiB = sd.MiB

# taskbroker-client 0.20.30's stop of a parent, from its worker.py: the poll that notices the
# signal (SHUTDOWN_POLL_INTERVAL_SEC), the gRPC server's stop grace, a join of
# WORKER_CHILD_JOIN_TIMEOUT_SEC per child, the result thread's join
GRPC_STOP_GRACE = 5.0
RESULT_THREAD_JOIN = 5.0


def settings() -> dict:
    return runpy.run_path(str(TODAY_CONF_PY))


def option(argv: list[str], name: str) -> str:
    (found,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return found


def programs() -> dict[str, dict[str, str]]:
    return sd.sections(sd.read_conf(CONF.read_text()), "program")


# --- the file as shipped -----------------------------------------------------------------------


def test_the_file_has_todays_programs_and_one_listener_with_the_shared_rules_file() -> None:
    parser = sd.read_conf(CONF.read_text())
    progs = sd.sections(parser, "program")
    assert set(progs) == PROGRAMS
    assert set(sd.sections(parser, "eventlistener")) == {"memwatch"}
    assert shlex.split(progs["sentry-web"]["command"])[1:] == ["run", "web"]
    assert shlex.split(progs["sentry-taskscheduler"]["command"])[1:] == ["run", "taskscheduler"]
    worker = progs["sentry-taskworker"]
    argv = shlex.split(worker["command"])
    assert argv[1:3] == ["run", "taskworker"], argv
    assert int(option(argv, "concurrency")) >= 1 and int(option(argv, "max-child-task-count")) > 0
    assert option(argv, "rpc-host")
    assert int(worker["numprocs"]) > 1 and "%(process_num)" in worker["process_name"]
    for name, opts in progs.items():
        assert opts.get("user") not in (None, "root"), f"{name} must not run as root"
        # the parent is signalled and stops its own children; the whole group killed at the end
        assert opts["stopasgroup"] == "false" and opts["killasgroup"] == "true", name
    # the listener's section is the guide file's, to the letter: one listener, whichever file
    guide = sd.read_conf((sd.DEPLOY / "supervisor" / "sentry-guide-uwsgi-celery.conf").read_text())
    opts = sd.sections(parser, "eventlistener")["memwatch"]
    assert opts == sd.sections(guide, "eventlistener")["memwatch"]
    assert int(opts["stopwaitsecs"]) > SHUTDOWN_GRACE


def test_stopwaitsecs_outlast_the_servers_own_bounded_stops() -> None:
    from taskbroker_client import constants

    progs = programs()
    # Granian stops every worker at once with one deadline, workers_kill_timeout
    kill_timeout = granian_kwargs(settings(), 9000, "app:app")["workers_kill_timeout"]
    assert int(progs["sentry-web"]["stopwaitsecs"]) > kill_timeout
    # a taskworker parent joins its children one after another
    concurrency = int(option(shlex.split(progs["sentry-taskworker"]["command"]), "concurrency"))
    parent_stop = (constants.SHUTDOWN_POLL_INTERVAL_SEC + GRPC_STOP_GRACE
                   + constants.WORKER_CHILD_JOIN_TIMEOUT_SEC * concurrency + RESULT_THREAD_JOIN)
    assert int(progs["sentry-taskworker"]["stopwaitsecs"]) > parent_stop


RULE_OF = {  # program -> (rule, limit, children) as the rules file says
    "sentry-web": ("group sentry-web", 700 * MiB, "auto"),
    "sentry-taskworker": ("group sentry-taskworker", 700 * MiB, "auto"),
    "sentry-taskscheduler": ("program sentry-taskscheduler", 400 * MiB, "none"),
}


def test_every_program_has_its_own_rule_and_granian_recycles_first() -> None:
    rules = sd.rules_of_programs(CONF, RULE_OF)
    # Granian's own recycling (workers_max_rss, MiB of RSS) is the first line: below the
    # listener's limit, which is PSS (never above RSS)
    kwargs = granian_kwargs(settings(), 9000, "app:app")
    assert kwargs["workers_max_rss"] * MiB < RULE_OF["sentry-web"][1]
    # a roll by SIGHUP (respawn_interval, then each old worker's drain up to the kill
    # timeout) ends before the listener gives up on it and restarts the program
    respawn = inspect.signature(granian.Granian).parameters["respawn_interval"].default
    roll = kwargs["workers"] * (respawn + kwargs["workers_kill_timeout"])
    rule = rules["sentry-web"]
    assert roll < rule.strategy.child_signal_timeout + ROLLING_SECONDS_PER_WORKER * kwargs["workers"]


# --- the file in a real supervisord ------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[sd.Stack]:
    with sd.running(CONF, web_port=free_port()) as stack:
        yield stack


def workers_and_helpers(pid: int) -> tuple[list[psutil.Process], list[psutil.Process]]:
    children = psutil.Process(pid).children()
    helpers = [c for c in children if "multiprocessing.resource_tracker" in " ".join(c.cmdline())]
    return [c for c in children if c not in helpers], helpers


def test_supervisord_runs_granian_taskworkers_and_the_scheduler(stack: sd.Stack) -> None:
    pids = stack.sv.wait_running(*stack.expected, timeout=90)
    assert set(stack.sv.infos()) == stack.expected
    assert "exited" not in stack.sv.log_text(), stack.sv.log_text()
    sd.records(stack, pids)  # the file's arguments, directory, user and environment

    # Granian serves on the test's port with the workers of sentry.conf.py, all forked
    web = pids["sentry-web:sentry-web"]
    n_web = granian_kwargs(settings(), 0, "")["workers"]
    wait_for(lambda: len(workers_and_helpers(web)[0]) == n_web, 60, what="Granian's workers")
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.web_port}/", timeout=10) as resp:
        assert resp.read().startswith(b"ok ")
    assert any(".so" in m.path and "_granian" in m.path for m in psutil.Process(web).memory_maps())

    # each taskworker parent: --concurrency spawned children and one resource tracker
    concurrency = int(option(shlex.split(programs()["sentry-taskworker"]["command"]),
                             "concurrency"))
    for name, pid in pids.items():
        if name.startswith("sentry-taskworker:"):
            def full(pid: int = pid) -> bool:
                workers, helpers = workers_and_helpers(pid)
                return len(workers) == concurrency and len(helpers) == 1
            wait_for(full, 90, interval=0.2, what=f"{name}'s children")
            workers, _ = workers_and_helpers(pid)
            assert all("--multiprocessing-fork" in w.cmdline() for w in workers)
    assert not psutil.Process(pids["sentry-taskscheduler:sentry-taskscheduler"]).children()


def test_the_listener_recognises_granian_and_the_taskworkers_and_check_agrees(
        stack: sd.Stack) -> None:
    stack.sv.wait_running(*stack.expected, timeout=90)
    taskworkers = sorted(n.partition(":")[2] for n in stack.expected
                         if n.startswith("sentry-taskworker:"))
    strategies = {("sentry-web", "sentry-web"): "pss, each, HUP to master (auto: granian)",
                  ("sentry-taskscheduler", "sentry-taskscheduler"): "pss"}
    taskworker = "pss, each, TERM or INT, as caught (auto: taskworker)"
    strategies |= {("sentry-taskworker", t): taskworker for t in taskworkers}
    concurrency = int(option(shlex.split(programs()["sentry-taskworker"]["command"]),
                             "concurrency"))

    def every_child(samples: sd.Samples) -> bool:  # a taskworker's children come after it
        return all(value(samples, "memwatch_process_children", group="sentry-taskworker",
                         process=t) == concurrency for t in taskworkers)

    samples, status = sd.judged(stack, strategies, timeout=90, until=every_child)
    n_web = granian_kwargs(settings(), 0, "")["workers"]
    assert value(samples, "memwatch_process_children", group="sentry-web",
                 process="sentry-web") == n_web
    for key, proc in status.items():
        assert proc["verdict"] == "ok", (key, proc)
    sd.check_agrees(stack, strategies)


def test_promtool_finds_nothing_to_complain_about_in_the_listeners_metrics(
        stack: sd.Stack) -> None:
    promtool = h.require_binary("promtool", "apt-get install prometheus")
    stack.sv.wait_running(*stack.expected, timeout=90)
    wait_for(lambda: sd.ticked(stack.port, 0.1), timeout=30, what="the listener to tick")
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/metrics", timeout=10) as resp:
        text = resp.read()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), (
        result, textwrap.shorten(text.decode(), 2000))
    assert scrape(stack.port)
