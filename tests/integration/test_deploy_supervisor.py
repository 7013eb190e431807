"""deploy/supervisor/sentry.conf: read by the listener's own flag parser, loaded by a real
supervisord.

The file is parsed section by section and handed to a real supervisord in a temp dir with
only what a test machine cannot have substituted: the `sentry` executable becomes a stand-in
that records how it was started and runs deploy/demo/hog.py with the process tree of the real
command (a master with the web workers of sentry.conf.py, a Celery master with -c children);
`sentry-memwatch` becomes this checkout's listener (with a temp --state-dir); log files and
the working directory move to the temp dir, `user=` becomes the current user and the metrics
ports free ones. Every other key and every argument stays as shipped.
"""

from __future__ import annotations

import configparser
import json
import os
import platform
import pwd
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from listener.config import parse
from listener.daemon import SHUTDOWN_GRACE
from tests.harness import HOG, PY, Samples, Supervisord, scrape, value, wait_for

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

CONF = h.DEPLOY / "supervisor" / "sentry.conf"
SENTRY_CONF_PY = h.DEPLOY / "sentry" / "sentry.conf.py"
PROGRAMS = {"sentry-web", "sentry-worker", "sentry-cron"}
LISTENERS = {"memwatch-web": 9870, "memwatch-workers": 9871}
MiB = 2**20

STANDIN = '''\
"""Stand-in for `sentry` (tests only): `sentry run web|worker|cron [options]` records how it
was started, then becomes hog.py with the process tree of the real command."""
import json, os, sys

HOG, RECORDS, WEB_WORKERS = {hog!r}, {records!r}, {web_workers!r}
args = sys.argv[1:]
if len(args) < 2 or args[0] != "run" or args[1] not in ("web", "worker", "cron"):
    sys.exit("stand-in sentry: unexpected arguments %r" % (args,))
record = os.path.join(RECORDS, "%d.json" % os.getpid())
with open(record + ".tmp", "w") as f:
    json.dump({{"argv": args, "cwd": os.getcwd(), "uid": os.getuid(),
               "SENTRY_CONF": os.environ.get("SENTRY_CONF")}}, f)
os.replace(record + ".tmp", record)


def option(short, long, default):
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return default


if args[1] == "web":  # a uWSGI master and its workers
    tree = ["--mb", "15", "--children", option("-w", "--workers", WEB_WORKERS), "--child-mb", "10"]
elif args[1] == "worker":  # a Celery main process and its prefork children
    tree = ["--mb", "15", "--children", option("-c", "--concurrency", "1"), "--child-mb", "5"]
else:  # Celery beat: one process
    tree = ["--mb", "10"]
os.execv(sys.executable, [sys.executable, HOG, *tree])
'''


def read_conf(text: str) -> configparser.RawConfigParser:
    """Parse as supervisord does (inline ; and # comments), but refuse duplicate keys and
    sections, which supervisord would silently take the last of."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def sections(parser: configparser.RawConfigParser, kind: str) -> dict[str, dict[str, str]]:
    """{name: options} of the sections `[kind:name]`."""
    return {s.partition(":")[2]: dict(parser.items(s)) for s in parser.sections()
            if s.startswith(kind + ":")}


def namespecs(parser: configparser.RawConfigParser) -> set[str]:
    """group:process of every process supervisord will run, expanded as supervisord does."""
    names = set()
    for section in parser.sections():
        kind, _, name = section.partition(":")
        assert kind in {"program", "eventlistener"}, section
        opts = dict(parser.items(section))
        start = int(opts.get("numprocs_start", "0"))
        for num in range(start, start + int(opts.get("numprocs", "1"))):
            expand = {"program_name": name, "group_name": name, "process_num": num,
                      "numprocs": int(opts.get("numprocs", "1")), "host_node_name": platform.node()}
            names.add(f"{name}:{opts.get('process_name', '%(program_name)s') % expand}")
    return names


def listener_config(command: str):  # -> listener.config.Config
    argv = shlex.split(command)
    assert Path(argv[0]).name == "sentry-memwatch", command
    config, check = parse(argv[1:], environ={})
    assert not check
    return config


def web_workers() -> int:
    return int(runpy.run_path(str(SENTRY_CONF_PY))["SENTRY_WEB_OPTIONS"]["workers"])


# --- the file as shipped -----------------------------------------------------------------------


def test_the_file_has_sentrys_programs_and_two_listeners() -> None:
    parser = read_conf(CONF.read_text())
    programs = sections(parser, "program")
    listeners = sections(parser, "eventlistener")
    assert set(programs) == PROGRAMS
    assert set(listeners) == set(LISTENERS)

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

    for name, opts in listeners.items():
        assert opts["events"] == "TICK_5", name
        assert opts.get("stderr_logfile", "").startswith("/"), name
        assert "stdout_logfile" not in opts, f"{name}: stdout is the event protocol"
        config = listener_config(opts["command"])
        assert config.metrics_port == LISTENERS[name], name
        strategy = config.strategy
        assert strategy.measure == "pss", name
        assert (strategy.consecutive, strategy.grace, strategy.max_restarts,
                strategy.restart_window, strategy.max_parallel) == (3, 60.0, 5, 3600.0, 1), name
        assert config.rules.any is None, f"{name}: -a would watch the other listener"
        assert not config.dry_run
        # supervisord must not SIGKILL a listener that waits for a restart in flight
        assert int(opts["stopwaitsecs"]) > SHUTDOWN_GRACE, name
    web = listener_config(listeners["memwatch-web"]["command"])
    assert (web.strategy.children, web.strategy.child_signal) == ("each", signal.SIGHUP)
    workers = listener_config(listeners["memwatch-workers"]["command"]).strategy
    assert workers.children in {"each", "sum"} and workers.child_signal is None


def test_every_program_is_guarded_by_exactly_one_listener_that_waits_long_enough() -> None:
    parser = read_conf(CONF.read_text())
    programs = sections(parser, "program")
    guards: dict[str, list[str]] = {}
    for name, opts in sections(parser, "eventlistener").items():
        config = listener_config(opts["command"])
        for group, size in config.rules.groups:
            assert 300 * MiB <= size <= 1024 * MiB, (name, group, size)
            guards.setdefault(group, []).append(name)
            # A restart waits for the stop and then the start in one XML-RPC call each: a
            # timeout shorter than either reports a restart that is under way as failed.
            program = programs[group]
            for key in ("stopwaitsecs", "startsecs"):
                assert config.rpc_timeout > int(program[key]), (name, group, key)
    assert {g: len(ls) for g, ls in guards.items()} == dict.fromkeys(PROGRAMS, 1), guards


# --- the file in a real supervisord ------------------------------------------------------------


@dataclass
class Stack:
    sv: Supervisord
    root: Path
    expected: set[str]
    ports: dict[str, int]  # listener name -> its metrics port in this test
    records: Path


def for_test(text: str, root: Path, standin: Path) -> tuple[str, dict[str, int]]:
    """The file's sections with only commands, paths, ports and the user substituted."""
    parser = read_conf(text)
    user = pwd.getpwuid(os.getuid()).pw_name
    ports: dict[str, int] = {}
    out = []
    for section in parser.sections():
        kind, _, name = section.partition(":")
        out.append(f"[{section}]")
        for key, val in parser.items(section):
            if key == "command":
                exe, rest = val.split(None, 1)
                if kind == "program":
                    assert Path(exe).name == "sentry", val
                    val = f"{PY} {standin} {rest}"
                else:
                    assert Path(exe).name == "sentry-memwatch", val
                    ports[name] = h.free_port()
                    rest, count = re.subn(r"--metrics-port \d+", f"--metrics-port {ports[name]}", rest)
                    assert count == 1, val
                    val = f"{PY} -m listener --state-dir {root / 'state'} {rest}"
            elif key == "directory":
                val = str(root / "www")
            elif key.endswith("logfile") and val.startswith("/"):
                val = str(root / "log" / Path(val).name)
            elif key == "user":
                val = user
            out.append(f"{key}={val}")
        out.append("")
    result = "\n".join(out)
    left = [line for line in result.splitlines() if not line.startswith("environment=")
            and re.search(r"(^|[=\s])/(www|opt|var|etc)/", line)]
    assert not left, f"system paths left in the test's copy: {left}"
    return result, ports


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="mw-sup-", dir="/tmp"))  # short: unix socket path
    for sub in ("www", "log", "state", "records"):
        (root / sub).mkdir()
    standin = root / "sentry-standin.py"
    standin.write_text(STANDIN.format(hog=str(HOG), records=str(root / "records"),
                                      web_workers=str(web_workers())))
    text, ports = for_test(CONF.read_text(), root, standin)
    sv = Supervisord(text, root)
    try:
        yield Stack(sv, root, namespecs(read_conf(text)), ports, root / "records")
    finally:
        sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_supervisord_runs_every_program_and_both_listeners(stack: Stack) -> None:
    assert len(stack.expected) == 1 + 4 + 1 + 2  # web, 4 worker masters, cron, two listeners
    pids = stack.sv.wait_running(*stack.expected, timeout=60)
    assert set(stack.sv.infos()) == stack.expected
    # running, not crash-looping: nothing has exited since the start
    assert "exited" not in stack.sv.log_text(), stack.sv.log_text()

    # the stand-ins were started with the file's own arguments, in its directory, as its user,
    # with its environment; the worker node names come out unique and host-qualified
    def records() -> dict[int, dict] | None:
        found = {int(p.stem): json.loads(p.read_text()) for p in stack.records.glob("*.json")}
        wanted = {pid for n, pid in pids.items() if not n.startswith("memwatch-")}
        return found if wanted <= set(found) else None

    found = wait_for(records, what="stand-in records")
    node_names = []
    for namespec, pid in pids.items():
        if namespec.startswith("memwatch-"):
            continue
        rec = found[pid]
        assert rec["cwd"] == str(stack.root / "www") and rec["uid"] == os.getuid(), rec
        assert rec["SENTRY_CONF"] == "/etc/sentry", rec
        if namespec.startswith("sentry-worker:"):
            argv = rec["argv"]
            node_names.append(argv[argv.index("-n") + 1])
    workers = sorted(n for n in stack.expected if n.startswith("sentry-worker:"))
    assert sorted(node_names) == [f"worker-{i:02d}@{platform.node()}" for i in range(len(workers))]

    # the process trees the listeners will judge: uWSGI-like web, Celery-like workers
    assert len(psutil.Process(pids["sentry-web:sentry-web"]).children()) == web_workers()
    for namespec in workers:
        assert len(psutil.Process(pids[namespec]).children()) == 4
    for name in ("sentry-web.log", "sentry-worker-00.log", "memwatch-web.log",
                 "memwatch-workers.log"):
        assert (stack.root / "log" / name).exists(), name


def test_each_listener_watches_its_own_groups_with_its_own_settings(stack: Stack) -> None:
    stack.sv.wait_running(*stack.expected, timeout=60)
    since = time.time()
    workers = {n.partition(":")[2] for n in stack.expected if n.startswith("sentry-worker:")}
    wanted = {"memwatch-web": {("sentry-web", "sentry-web")},
              "memwatch-workers": {("sentry-cron", "sentry-cron")}
              | {("sentry-worker", w) for w in workers}}

    for name, port in stack.ports.items():
        samples = wait_for(lambda port=port: ticked(port, since), timeout=30,
                           what=f"{name} to handle a TICK_5")
        assert value(samples, "memwatch_supervisor_up") == 1, name
        limited = {(dict(labels)["group"], dict(labels)["process"])
                   for metric, labels in samples if metric == "memwatch_process_memory_limit_bytes"}
        assert limited == wanted[name], (name, limited)
        # memory is measured as PSS, for every process the listener watches
        for group, process in wanted[name]:
            assert value(samples, "memwatch_process_memory_bytes", group=group, process=process,
                         measure="pss"), (name, group, process)
            assert value(samples, "memwatch_restarts_total", group=group, process=process) == 0
        # neither listener judges itself or the other one
        for other in LISTENERS:
            assert value(samples, "memwatch_process_memory_limit_bytes", group=other,
                         process=other) is None

    web = scrape(stack.ports["memwatch-web"])
    # --children each sees the web master's workers
    assert value(web, "memwatch_process_children", group="sentry-web",
                 process="sentry-web") == web_workers()


def ticked(port: int, since: float) -> Samples | None:
    """The listener's samples once it has handled a TICK_5 after `since` (TICK_5 comes every
    5 s; programs count as RUNNING only after their startsecs, and are judged from then on)."""
    samples = scrape(port)
    last = value(samples, "memwatch_last_tick_timestamp_seconds") or 0.0
    return samples if last >= since else None


def test_promtool_finds_nothing_to_complain_about_in_either_listeners_metrics(stack: Stack) -> None:
    promtool = h.require_binary("promtool", "apt-get install prometheus")
    stack.sv.wait_running(*stack.expected, timeout=60)
    since = time.time()
    for name, port in stack.ports.items():
        wait_for(lambda port=port: ticked(port, since), timeout=30, what=f"{name} to tick")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read()
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                                timeout=60)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), (
            name, result, textwrap.shorten(text.decode(), 2000))
