"""Rules with their own strategy: [program:NAME], [group:NAME] and [any] sections of the config
file, NAME=SIZE,key=value on the command line, precedence and inheritance, and `auto`."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from listener.config.parse import parse
from listener.config.settings import Config
from listener.config.values import ConfigError
from listener.core.rules import Rules, Strategy
from listener.core.servers import Server

MiB, GiB = 1024**2, 1024**3

SENTRY = """\
; the deploy/ shape: one listener, one rule per kind of process
[memwatch]
measure = pss
consecutive = 3
grace = 60s

[group:sentry-web]
limit = 700MB
children = auto
child-signal-timeout = 2m

[group:sentry-worker]
limit = 400MB   ; Celery masters and their children
children = auto
max-restarts = 5

[program:sentry-cron]
limit = 400MB

[program:sentry-worker:sentry-worker-03]
limit = 1GB
measure = rss

[any]
limit = 2GB
"""

DEFAULT = Strategy(measure="pss", consecutive=3, grace=60.0)


def parse_file(tmp_path: Path, text: str, extra: str = "") -> Config:
    path = tmp_path / "memwatch.conf"
    path.write_text(text)
    config = parse(["--config", str(path), *shlex.split(extra)], environ={})
    return config


def file_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "memwatch.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        parse(["--config", str(path)], environ={})
    message = str(excinfo.value)
    assert "\n" not in message
    return message.replace(str(path), "FILE")


@pytest.mark.parametrize(
    ("group", "name", "target", "limit", "strategy"),
    [
        ("sentry-web", "sentry-web", "group sentry-web", 700 * MiB,
         Strategy("pss", "auto", child_signal_timeout=120.0, consecutive=3, grace=60.0)),
        ("sentry-worker", "sentry-worker-00", "group sentry-worker", 400 * MiB,
         Strategy("pss", "auto", consecutive=3, grace=60.0, max_restarts=5)),
        # a process rule beats its group's, and inherits [memwatch], not the group rule
        ("sentry-worker", "sentry-worker-03", "program sentry-worker:sentry-worker-03", GiB,
         Strategy("rss", consecutive=3, grace=60.0)),
        ("sentry-cron", "sentry-cron", "program sentry-cron", 400 * MiB, DEFAULT),
        ("redis", "redis", "any", 2 * GiB, DEFAULT),
    ],
)
def test_the_most_specific_rule_wins_with_its_own_strategy(
        tmp_path: Path, group: str, name: str, target: str, limit: int, strategy: Strategy) -> None:
    rule = parse_file(tmp_path, SENTRY).rules.rule_for(group, name)
    assert rule is not None
    assert (rule.target, rule.limit, rule.strategy) == (target, limit, strategy)


def test_the_command_line_form_gives_a_rule_its_own_strategy() -> None:
    config = parse(shlex.split(
        "--measure pss -g sentry-web=700MB,children=auto,child-signal=TERM "
        "-p cron=100MB,measure=uss,consecutive=2 -a 1GB,grace=5m"), environ={})
    rules = config.rules
    assert rules.rule_for("sentry-web", "sentry-web").strategy == Strategy(  # type: ignore[union-attr]
        "pss", "auto", child_signal=signal.SIGTERM)
    assert rules.rule_for("cron", "cron").strategy == Strategy("uss", consecutive=2)  # type: ignore[union-attr]
    assert rules.rule_for("x", "y").strategy == Strategy("pss", grace=300.0)  # type: ignore[union-attr]
    assert rules.describe() == ("program cron=100.0MiB (measure=uss, consecutive=2), group "
                                "sentry-web=700.0MiB (children=auto, child-signal=TERM), "
                                "any=1.0GiB (grace=300s)")


def test_a_rule_on_the_command_line_replaces_the_files_rule_for_the_same_target(tmp_path: Path) -> None:
    rules = parse_file(tmp_path, SENTRY, "-g sentry-web=900MB").rules
    rule = rules.rule_for("sentry-web", "sentry-web")
    assert rule is not None
    assert (rule.limit, rule.strategy) == (900 * MiB, DEFAULT)  # the file's settings went with it


def test_listener_wide_flags_on_the_command_line_change_the_inherited_defaults(tmp_path: Path) -> None:
    rules = parse_file(tmp_path, SENTRY, "--consecutive 5 --measure uss").rules
    assert rules.rule_for("sentry-cron", "sentry-cron").strategy.consecutive == 5  # type: ignore[union-attr]
    web = rules.rule_for("sentry-web", "sentry-web").strategy  # type: ignore[union-attr]
    assert (web.measure, web.consecutive, web.children) == ("uss", 5, "auto")


def test_memmon_flags_in_the_listener_section_are_rules_too(tmp_path: Path) -> None:
    rules = parse_file(tmp_path, "[memwatch]\ngroup = web=1GB\n[group:worker]\nlimit = 2GB\n"
                       "children = sum\n").rules
    assert rules.rule_for("web", "web").limit == GiB  # type: ignore[union-attr]
    assert rules.rule_for("worker", "w").strategy.children == "sum"  # type: ignore[union-attr]


def test_the_old_single_section_files_still_read(tmp_path: Path) -> None:
    for text in ("[sentry-memwatch]\nany = 1GB\n", "any = 1GB\nconsecutive = 2\n"):
        assert parse_file(tmp_path, text).rules.any == GiB


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[grup:web]\nlimit = 1GB\n",
         "FILE:1: unknown section [grup:web]; expected [memwatch], [program:NAME], [group:NAME] or [any]"),
        ("[group:a:b]\nlimit = 1GB\n", "FILE:1: unknown section [group:a:b]"),
        ("[any:web]\nlimit = 1GB\n", "FILE:1: unknown section [any:web]"),
        ("[memwatch]\n\n[group:web]\nchildren = auto\n", "FILE:3: [group:web] has no limit (limit = SIZE)"),
        ("[group:web]\nlimit = 400\n",
         "FILE:2: limit: 400 has no unit (it would be 400 bytes); did you mean 400MB"),
        ("[group:web]\nlimit = 1GB\nchildren = some\n",
         "FILE:3: children: 'some' is not one of none, sum, each, auto"),
        ("[group:web]\nlimit = 1GB\nkids = each\n", "FILE:3: 'kids' is not a setting of a rule"),
        ("[group:web]\nlimit = 1GB\nchildren = sum\nchild-signal = HUP\n",
         "FILE:4: child-signal needs children = each (or auto)"),
        ("[group:web]\nlimit = 1GB\nlimit = 2GB\n", "FILE:3: limit is given twice in [group:web]"),
        ("[group:web]\nlimit = 1GB\n[group:web]\nlimit = 2GB\n", "FILE:3: [group:web] appears twice"),
        ("any = 1GB\n[group:web]\nlimit = 1GB\n", "FILE:1: a setting before the first [section]"),
        ("[memwatch]\nbogus = 1\n", "FILE:2: unknown option 'bogus'"),
        ("[group:web]\nlimit = 1GB\ngrace = soon\n", "FILE:3: grace: "),
        ("[program:web]\nlimit = 1GB\nconsecutive = 0\n", "FILE:3: consecutive: '0' is not a number"),
    ],
)
def test_file_errors_name_the_line_and_the_value(tmp_path: Path, text: str, said: str) -> None:
    assert file_error(tmp_path, text).startswith(said)


def test_a_child_signal_inherited_without_a_children_mode_names_the_rule() -> None:
    with pytest.raises(ConfigError, match="rule group web: child-signal needs children each"):
        parse(shlex.split("--child-signal HUP -g web=1GB,measure=pss -g jobs=1GB,children=each"),
              environ={})


@pytest.mark.parametrize(
    ("server", "children", "child_signal"),
    [
        (Server.UWSGI, "each", signal.SIGHUP),
        (Server.GUNICORN, "each", signal.SIGTERM),
        (Server.CELERY, "each", None),  # no signal recycles a pool child: the master restarts
        (Server.PLAIN, "none", None),
        (Server.MEMWATCH, "none", None),
    ],
)
def test_auto_resolves_by_the_server_found(server: Server, children: str,
                                           child_signal: int | None) -> None:
    strategy = Strategy("pss", "auto", consecutive=3)
    resolved = strategy.resolve(server)
    assert (resolved.children, resolved.child_signal) == (children, child_signal)
    assert (resolved.measure, resolved.consecutive) == ("pss", 3)
    assert resolved.description.endswith(f"(auto: {server.value})")
    assert strategy.resolve(server) is resolved  # built once per strategy, not per tick


def test_an_explicit_child_signal_wins_over_the_servers_own() -> None:
    strategy = Strategy(children="auto", child_signal=signal.SIGQUIT)
    assert strategy.resolve(Server.GUNICORN).child_signal == signal.SIGQUIT
    assert strategy.resolve(Server.PLAIN).child_signal is None  # a plain process has no workers


def test_a_strategy_that_is_not_auto_is_the_same_for_every_server() -> None:
    strategy = Strategy(children="each", child_signal=signal.SIGHUP)
    assert all(strategy.resolve(s) is strategy for s in Server)


def test_rules_without_their_own_strategy_share_the_default() -> None:
    rules = Rules(programs=(("web", GiB),), groups=(("jobs", GiB, Strategy("uss")),), any=GiB)
    assert rules.strategies == {Strategy(), Strategy("uss")}
