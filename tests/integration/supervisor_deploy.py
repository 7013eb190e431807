"""Shared by the tests of deploy/supervisor/*.conf: read a file as supervisord does, load it into
a real supervisord with only what a test machine cannot have substituted, and read back what the
listener made of it.

In the test's copy the `sentry` executable becomes tests/sentry_standin.py behind a script named
`sentry` (so that its command line reads `sentry run ...` as the real one's does);
`sentry-memwatch` becomes this checkout's listener (with a temp --state-dir) reading a copy of
deploy/memwatch/sentry-memwatch.conf whose metrics port is a free one; log files and the working
directory move to the temp dir, `user=` becomes the current user. Every other key and every
argument stays as shipped.
"""

from __future__ import annotations

import configparser
import json
import os
import platform
import pwd
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listener.config.parse import parse
from tests.harness import PY, ROOT, Samples, Supervisord, free_port, scrape, short_dir, value
from tests.harness import wait_for as wait_for

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "memwatch" / "sentry-memwatch.conf"
RULES_PATH = "/etc/sentry-memwatch.conf"  # where the supervisor files' listener reads it
MiB = 2**20

STANDIN = """\
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.sentry_standin import main
if __name__ == "__main__":  # spawned taskworker children import this script again
    sys.exit(main(sys.argv[1:], Path({records!r}), {web_port}))
"""


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


@dataclass
class Stack:
    sv: Supervisord
    root: Path
    expected: set[str]
    port: int  # the listener's metrics port in this test
    records: Path
    web_port: int  # today's Granian web (0: the guide's shape, nothing served)


def for_test(text: str, root: Path, standin: Path) -> tuple[str, int]:
    """The file's sections with only commands, paths, ports and the user substituted."""
    parser = read_conf(text)
    user = pwd.getpwuid(os.getuid()).pw_name
    port = 0
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
                    assert Path(exe).name == "sentry-memwatch" and not port, val
                    assert rest == f"--config {RULES_PATH}", val
                    port = free_port()
                    rules, count = re.subn(r"(?m)^metrics-port = 9870$",
                                           f"metrics-port = {port}", RULES.read_text())
                    assert count == 1, "the rules file sets metrics-port = 9870"
                    (root / "sentry-memwatch.conf").write_text(rules)
                    val = (f"{PY} -m listener --state-dir {root / 'state'} "
                           f"--config {root / 'sentry-memwatch.conf'}")
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
    return result, port


@contextmanager
def running(conf: Path, web_port: int = 0) -> Iterator[Stack]:
    """The file in a real supervisord; `web_port` for today's Granian web (0: the guide's)."""
    root = short_dir("mw-sup-")  # short: unix socket path
    for sub in ("www", "log", "state", "records", "bin"):
        (root / sub).mkdir()
    standin = root / "bin" / "sentry"
    standin.write_text(STANDIN.format(root=str(ROOT), records=str(root / "records"),
                                      web_port=web_port))
    text, port = for_test(conf.read_text(), root, standin)
    sv = Supervisord(text, root)
    try:
        yield Stack(sv, root, namespecs(read_conf(text)), port, root / "records", web_port)
    finally:
        sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def records(stack: Stack, pids: dict[str, int]) -> dict[int, dict[str, Any]]:
    """How each program's stand-in was started, once every one has said so."""
    def found() -> dict[int, dict[str, Any]] | None:
        got = {int(p.stem): json.loads(p.read_text()) for p in stack.records.glob("*.json")}
        wanted = {pid for n, pid in pids.items() if not n.startswith("memwatch:")}
        return got if wanted <= set(got) else None

    got = wait_for(found, what="stand-in records")
    for namespec, pid in pids.items():
        if not namespec.startswith("memwatch:"):
            rec = got[pid]
            assert rec["cwd"] == str(stack.root / "www") and rec["uid"] == os.getuid(), rec
            assert rec["SENTRY_CONF"] == "/etc/sentry", rec
    return got


def ticked(port: int, since: float) -> Samples | None:
    """The listener's samples once it has handled a TICK_5 after `since` (TICK_5 comes every
    5 s; programs count as RUNNING only after their startsecs, and are judged from then on)."""
    samples = scrape(port)
    last = value(samples, "memwatch_last_tick_timestamp_seconds") or 0.0
    return samples if last >= since else None


def judged(stack: Stack, strategies: dict[tuple[str, str], str], timeout: float = 30,
           until: Callable[[Samples], bool] = lambda samples: True,
           ) -> tuple[Samples, dict[tuple[str, str], dict[str, Any]]]:
    """Once the listener has ticked with every program judged as `strategies` says (each with
    its PSS and no restart) and `until` holds of its samples: its samples and its /status,
    per (group, process)."""
    since = time.time()

    def seen() -> tuple[Samples, dict[tuple[str, str], dict[str, Any]]] | None:
        samples = ticked(stack.port, since)
        if samples is None or not until(samples):
            return None
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/status", timeout=10) as resp:
            status = {(p["group"], p["process"]): p for p in json.load(resp)["processes"]}
        if {k: p["strategy"] for k, p in status.items()} != strategies:
            return None
        return samples, status

    samples, status = wait_for(seen, timeout=timeout, what=f"the listener to judge {strategies}")
    assert value(samples, "memwatch_supervisor_up") == 1
    limited = {(dict(labels)["group"], dict(labels)["process"])
               for metric, labels in samples if metric == "memwatch_process_memory_limit_bytes"}
    assert limited == set(strategies)  # never itself
    for group, process in strategies:
        assert value(samples, "memwatch_process_memory_bytes", group=group, process=process,
                     measure="pss"), (group, process)
        assert value(samples, "memwatch_restarts_total", group=group, process=process) == 0
    return samples, status


def check_agrees(stack: Stack, strategies: dict[tuple[str, str], str]) -> None:
    """A bare `check` finds the listener in supervisord and judges with its rules file."""
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


def rules_of_programs(conf: Path, rule_of: dict[str, tuple[str, int, str]]) -> dict[str, Any]:
    """Each [program:x] of the supervisor file under the rule the listener's own command line
    (its --config) gives it, as `rule_of` says: (rule, limit, children); measured in PSS, no
    explicit child signal, and stopwaitsecs/startsecs within a restart's own calls (not
    --rpc-timeout, which guards the loop: test_restart_policy.py). {group: rule}."""
    from listener.app import ACTION_TIMEOUT
    parser = read_conf(conf.read_text())
    config = listener_config(sections(parser, "eventlistener")["memwatch"]["command"])
    rules = {}
    for group, program in sections(parser, "program").items():
        rule = config.rules.rule_for(group, group)
        assert rule is not None, group
        assert (rule.target, rule.limit, rule.strategy.children) == rule_of[group]
        assert rule.strategy.measure == "pss" and rule.strategy.child_signal is None, group
        for key in ("stopwaitsecs", "startsecs"):
            assert int(program[key]) < ACTION_TIMEOUT, (group, key)
        rules[group] = rule
    return rules
