"""deploy/supervisor/sentry.conf and its rules file deploy/memwatch/sentry-memwatch.conf: read
by the listener's own parser, loaded by a real supervisord.

The file is parsed section by section and handed to a real supervisord in a temp dir with
only what a test machine cannot have substituted: the `sentry` executable becomes a stand-in
(a script named `sentry`, so that its command line reads `sentry run web` as the real one's
does) that records how it was started and runs deploy/demo/hog.py in-process with the process
tree of the real command (a master with the web workers of sentry.conf.py, a Celery master
with -c children); `sentry-memwatch` becomes this checkout's listener (with a temp
--state-dir) reading a copy of the rules file whose metrics port is a free one; log files and
the working directory move to the temp dir, `user=` becomes the current user. Every other key
and every argument stays as shipped.
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

from listener.config.parse import parse
from listener.daemon import SHUTDOWN_GRACE
from tests.harness import HOG, PY, ROOT, Samples, Supervisord, scrape, value, wait_for

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

CONF = h.DEPLOY / "supervisor" / "sentry.conf"
SENTRY_CONF_PY = h.DEPLOY / "sentry" / "sentry.conf.py"
PROGRAMS = {"sentry-web", "sentry-worker", "sentry-cron"}
RULES = h.DEPLOY / "memwatch" / "sentry-memwatch.conf"
RULES_PATH = "/etc/sentry-memwatch.conf"  # where sentry.conf's listener reads it
MiB = 2**20

STANDIN = '''\
"""Stand-in for `sentry` (tests only): `sentry run web|worker|cron [options]` records how it
was started, then becomes hog.py with the process tree of the real command."""
import json, os, runpy, sys

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
    # uWSGI's module mapped, as in the real one's master and workers: `auto` goes by what runs
    import pyuwsgi  # noqa: F401
    tree = ["--mb", "15", "--children", option("-w", "--workers", WEB_WORKERS), "--child-mb", "10"]
elif args[1] == "worker":  # a Celery main process and its prefork children
    tree = ["--mb", "15", "--children", option("-c", "--concurrency", "1"), "--child-mb", "5"]
else:  # Celery beat: one process
    tree = ["--mb", "10"]
sys.argv = [HOG, *tree]  # hog runs in this process, whose command line stays `sentry run ...`
runpy.run_path(HOG, run_name="__main__")
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


def listener_config(command: str):  # -> listener.config.parse.Config
    """The listener's Config, as its command line and the shipped rules file make it."""
    argv = shlex.split(command)
    assert Path(argv[0]).name == "sentry-memwatch", command
    assert argv[1:] == ["--config", RULES_PATH], command
    config = parse(["--config", str(RULES)], environ={})
    assert config.command == "listen"
    return config


def web_workers() -> int:
    return int(runpy.run_path(str(SENTRY_CONF_PY))["SENTRY_WEB_OPTIONS"]["workers"])


# --- the file as shipped -----------------------------------------------------------------------


def test_the_file_has_sentrys_programs_and_one_listener_with_one_rules_file() -> None:
    parser = read_conf(CONF.read_text())
    programs = sections(parser, "program")
    listeners = sections(parser, "eventlistener")
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
    config = listener_config(opts["command"])
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
    parser = read_conf(CONF.read_text())
    config = listener_config(sections(parser, "eventlistener")["memwatch"]["command"])
    for group, program in sections(parser, "program").items():
        rule = config.rules.rule_for(group, group)
        assert rule is not None, group
        assert (rule.target, rule.limit, rule.strategy.children) == RULE_OF[group]
        assert rule.strategy.measure == "pss" and rule.strategy.child_signal is None, group
        # A restart waits for the stop and then the start in one XML-RPC call each: a
        # timeout shorter than either reports a restart that is under way as failed.
        for key in ("stopwaitsecs", "startsecs"):
            assert config.rpc_timeout > int(program[key]), (group, key)
        # a signalled uWSGI worker gets longer than uWSGI's own worker-reload-mercy (60 s)
        assert rule.strategy.child_signal_timeout > 60


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
                    rules = root / "sentry-memwatch.conf"
                    text, count = re.subn(r"(?m)^metrics-port = 9870$", f"metrics-port = {ports[name]}",
                                          RULES.read_text())
                    assert count == 1, "the rules file sets metrics-port = 9870"
                    rules.write_text(text)
                    assert rest == f"--config {RULES_PATH}", val
                    val = f"{PY} -m listener --state-dir {root / 'state'} --config {rules}"
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
    for sub in ("www", "log", "state", "records", "bin"):
        (root / sub).mkdir()
    standin = root / "bin" / "sentry"
    standin.write_text(STANDIN.format(hog=str(HOG), records=str(root / "records"),
                                      web_workers=str(web_workers())))
    text, ports = for_test(CONF.read_text(), root, standin)
    sv = Supervisord(text, root)
    try:
        yield Stack(sv, root, namespecs(read_conf(text)), ports, root / "records")
    finally:
        sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_supervisord_runs_every_program_and_the_listener(stack: Stack) -> None:
    assert len(stack.expected) == 1 + 4 + 1 + 1  # web, 4 worker masters, cron, the listener
    pids = stack.sv.wait_running(*stack.expected, timeout=60)
    assert set(stack.sv.infos()) == stack.expected
    # running, not crash-looping: nothing has exited since the start
    assert "exited" not in stack.sv.log_text(), stack.sv.log_text()

    # the stand-ins were started with the file's own arguments, in its directory, as its user,
    # with its environment; the worker node names come out unique and host-qualified
    def records() -> dict[int, dict] | None:
        found = {int(p.stem): json.loads(p.read_text()) for p in stack.records.glob("*.json")}
        wanted = {pid for n, pid in pids.items() if not n.startswith("memwatch:")}
        return found if wanted <= set(found) else None

    found = wait_for(records, what="stand-in records")
    node_names = []
    for namespec, pid in pids.items():
        if namespec.startswith("memwatch:"):
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
    for name in ("sentry-web.log", "sentry-worker-00.log", "memwatch.log"):
        assert (stack.root / "log" / name).exists(), name


def test_the_listener_judges_each_program_by_its_own_rule_and_check_agrees(stack: Stack) -> None:
    stack.sv.wait_running(*stack.expected, timeout=60)
    since = time.time()
    (port,) = stack.ports.values()
    workers = {n.partition(":")[2] for n in stack.expected if n.startswith("sentry-worker:")}
    strategies = {("sentry-web", "sentry-web"): "pss, each, HUP (auto: uwsgi)",
                  ("sentry-cron", "sentry-cron"): "pss"}
    strategies |= {("sentry-worker", w): "pss, each (auto: celery)" for w in workers}

    samples = wait_for(lambda: ticked(port, since), timeout=30, what="the listener to handle a TICK_5")
    assert value(samples, "memwatch_supervisor_up") == 1
    limited = {(dict(labels)["group"], dict(labels)["process"])
               for metric, labels in samples if metric == "memwatch_process_memory_limit_bytes"}
    assert limited == set(strategies)  # never itself
    for group, process in strategies:  # PSS, for every process
        assert value(samples, "memwatch_process_memory_bytes", group=group, process=process,
                     measure="pss"), (group, process)
        assert value(samples, "memwatch_restarts_total", group=group, process=process) == 0
    # `auto` found uWSGI (its module) in `sentry run web` and judges each of its workers
    assert value(samples, "memwatch_process_children", group="sentry-web",
                 process="sentry-web") == web_workers()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
        seen = {(p["group"], p["process"]): p["strategy"] for p in json.load(resp)["processes"]}
    assert seen == strategies

    # a bare `check` finds the listener in supervisord and judges with its rules file
    done = subprocess.run([PY, "-m", "listener", "check"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT,
                          env={**os.environ, "SUPERVISOR_SERVER_URL": stack.sv.url,
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "judging with the rules of listener memwatch:memwatch" in done.stderr
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[1:]]
    checked = {(r[0], r[1]): r[4] for r in rows if r[0] != "memwatch"}
    assert checked == strategies
    assert [r[-1] for r in rows if r[0] == "memwatch"] == ["memwatch listener"]


def ticked(port: int, since: float) -> Samples | None:
    """The listener's samples once it has handled a TICK_5 after `since` (TICK_5 comes every
    5 s; programs count as RUNNING only after their startsecs, and are judged from then on)."""
    samples = scrape(port)
    last = value(samples, "memwatch_last_tick_timestamp_seconds") or 0.0
    return samples if last >= since else None


def test_promtool_finds_nothing_to_complain_about_in_the_listeners_metrics(stack: Stack) -> None:
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
