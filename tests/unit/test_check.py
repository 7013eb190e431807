"""listener.tools.check: the `check` table, its verdicts and its exit code."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from listener.config.settings import Config
from listener.core import policy
from listener.core.model import ProcessInfo, Sample, Unit
from listener.core.policy import Verdict
from listener.core.rules import Rule, Rules, Strategy
from listener.core.servers import Server
from listener.tools.check import check, render, verdict_text
from tests.fakes import FakeSampler

MiB = 1024**2
LIMIT = 100 * MiB
ANY_100MB = Config(rules=Rules(any=LIMIT))

WEB = ProcessInfo("web", "web_00", 4242, "RUNNING", 0.0)


def judgement(verdict: Verdict, over: bool, sample: Sample | None = None, limit: int | None = LIMIT,
              process: ProcessInfo = WEB) -> policy.Judgement:
    rule = Rule("any", limit, Strategy()) if limit is not None else None
    return policy.Judgement(process, sample, rule, over, verdict, 1 if over else 0)


# --- verdicts ---


VERDICT_TEXTS = [
    (Verdict.OK, False, "ok"),
    (Verdict.COUNTING, True, "OVER"),
    (Verdict.ACT, True, "OVER"),
    (Verdict.DEFERRED, True, "OVER"),
    (Verdict.SUPPRESSED, True, "OVER"),
    (Verdict.GRACE, True, "OVER (grace)"),
    (Verdict.DRAINING, True, "OVER (draining)"),  # a signalled child still there, still big
    (Verdict.BUSY, False, "ok"),
    (Verdict.SELF, True, "self"),  # over or not, these say why the process is not judged
    (Verdict.SELF, False, "self"),
    (Verdict.LISTENER, True, "memwatch listener"),  # another sentry-memwatch
    (Verdict.EXCLUDED, True, "excluded"),
    (Verdict.STOPPED, False, "not running"),
    (Verdict.NO_LIMIT, False, "no limit"),
    (Verdict.NO_SAMPLE, False, "no sample"),
]


@pytest.mark.parametrize(("verdict", "over", "text"), VERDICT_TEXTS)
def test_verdict_text(verdict: Verdict, over: bool, text: str) -> None:
    said = verdict_text(judgement(verdict, over))
    assert said == text
    assert type(said) is str  # the plain word, not the enum


def test_every_verdict_has_a_text() -> None:
    assert {verdict for verdict, _, _ in VERDICT_TEXTS} == set(Verdict)


# --- the table ---


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_render_a_table() -> None:
    judgements = [
        judgement(Verdict.ACT, True, Sample(150 * MiB, "rss", 3, ())),
        judgement(Verdict.OK, False, Sample(50 * MiB, "rss", 0, ()),
                  process=ProcessInfo("worker", "worker_00", 11, "RUNNING", 0.0)),
        judgement(Verdict.STOPPED, False, None, None,
                  process=ProcessInfo("cron", "cron", 0, "STOPPED", 0.0)),
    ]
    lines = render(judgements).splitlines()
    assert [columns(line) for line in lines] == [
        ["GROUP", "PROCESS", "PID", "STATE", "STRATEGY", "MEMORY", "LIMIT", "VERDICT"],
        ["web", "web_00", "4242", "RUNNING", "rss", "150.0MiB rss (sum of 4)", "100.0MiB", "OVER"],
        ["worker", "worker_00", "11", "RUNNING", "rss", "50.0MiB rss", "100.0MiB", "ok"],
        ["cron", "cron", "-", "STOPPED", "-", "-", "-", "not running"],
    ]


def test_render_names_the_worker_whose_figure_it_is_and_the_strategy_of_each_row() -> None:
    workers = (Unit(4242, 20 * MiB, 0.0), Unit(4243, 210 * MiB, 0.0), Unit(4244, 90 * MiB, 0.0))
    web = policy.Judgement(WEB, Sample(210 * MiB, "pss", 2, workers, Server.UWSGI),
                           Rule("group web", 200 * MiB, Strategy("pss", "auto")), True, Verdict.ACT)
    cron = policy.Judgement(ProcessInfo("cron", "cron", 7, "RUNNING", 0.0),
                            Sample(30 * MiB, "rss", 0, ()),
                            Rule("any", LIMIT, Strategy("pss")), False, Verdict.OK)
    rows = [columns(line) for line in render([web, cron]).splitlines()[1:]]
    assert rows == [
        ["web", "web_00", "4242", "RUNNING", "pss, each, HUP (auto: uwsgi)",
         "210.0MiB pss (pid 4243, largest of 3)", "200.0MiB", "OVER"],
        ["cron", "cron", "7", "RUNNING", "pss", "30.0MiB rss (not pss: denied)", "100.0MiB", "ok"],
    ]


def test_render_aligns_columns_and_ends_with_a_newline() -> None:
    judgements = [
        judgement(Verdict.OK, False, Sample(5 * MiB, "pss", 0, ()),
                  process=ProcessInfo("a-very-long-group-name", "p", 1, "RUNNING", 0.0)),
        judgement(Verdict.OK, False, Sample(5 * 1024**3, "pss", 0, ()),
                  process=ProcessInfo("g", "a-very-long-process-name", 123456, "RUNNING", 0.0)),
    ]
    text = render(judgements)
    assert text.endswith("\n")
    header, *rows = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    for row in rows:
        assert row == row.rstrip()
        row_starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", row)]
        assert row_starts == starts


def test_render_with_no_processes_is_just_the_header() -> None:
    assert columns(render([])) == ["GROUP", "PROCESS", "PID", "STATE", "STRATEGY", "MEMORY", "LIMIT",
                                   "VERDICT"]


def test_render_without_children_says_nothing_about_them() -> None:
    text = render([judgement(Verdict.OK, False, Sample(5 * MiB, "rss", 0, ()))])
    assert "sum" not in text and "largest" not in text


# --- one look at supervisord, with an exit code ---


PROCESSES = [WEB, ProcessInfo("worker", "worker_00", 11, "RUNNING", 0.0),
             ProcessInfo("memwatch", "memwatch", 12, "RUNNING", 0.0)]
SUPERVISED = {"SUPERVISOR_PROCESS_NAME": "memwatch", "SUPERVISOR_GROUP_NAME": "memwatch"}


def run_check(config: Config, memory: dict[str, int], processes: Sequence[ProcessInfo] = PROCESSES,
              environ: dict[str, str] | None = None) -> tuple[int, list[list[str]]]:
    out = io.StringIO()
    sampler = FakeSampler(memory)
    code = check(config, processes, sampler, out, environ=SUPERVISED if environ is None else environ)
    assert sampler.asked == [processes]
    return code, [columns(line) for line in out.getvalue().splitlines()[1:]]


def with_strategy(config: Config, **knobs: object) -> Config:
    """`config` with some strategy knobs changed (--consecutive, --grace...)."""
    rules = config.rules
    return replace(config, rules=replace(rules, strategy=replace(rules.strategy, **knobs)))


def verdict_column(rows: list[list[str]]) -> dict[str, str]:
    return {f"{row[0]}:{row[1]}": row[-1] for row in rows}


def test_check_exits_0_when_nothing_is_over() -> None:
    code, rows = run_check(ANY_100MB, {"web:web_00": 50 * MiB, "worker:worker_00": 60 * MiB,
                                       "memwatch:memwatch": 20 * MiB})
    assert code == 0
    assert verdict_column(rows) == {"web:web_00": "ok", "worker:worker_00": "ok", "memwatch:memwatch": "self"}


def test_check_exits_1_when_something_is_over() -> None:
    code, rows = run_check(ANY_100MB, {"web:web_00": 150 * MiB, "worker:worker_00": 60 * MiB})
    assert code == 1
    assert verdict_column(rows)["web:web_00"] == "OVER"


def test_check_ignores_the_listener_itself() -> None:
    code, rows = run_check(ANY_100MB, {"memwatch:memwatch": 500 * MiB})
    assert code == 0
    assert verdict_column(rows)["memwatch:memwatch"] == "self"


def test_check_ignores_its_own_pid() -> None:
    me = ProcessInfo("tools", "check", os.getpid(), "RUNNING", 0.0)
    code, rows = run_check(ANY_100MB, {"tools:check": 500 * MiB}, [me], environ={})
    assert code == 0
    assert verdict_column(rows) == {"tools:check": "self"}


def test_check_ignores_excluded_processes() -> None:
    config = replace(ANY_100MB, rules=replace(ANY_100MB.rules, exclude=("web:*",)))
    code, rows = run_check(config, {"web:web_00": 500 * MiB})
    assert code == 0
    assert verdict_column(rows)["web:web_00"] == "excluded"


def test_check_reports_over_at_the_first_look_whatever_consecutive_says() -> None:
    config = with_strategy(ANY_100MB, consecutive=5)
    code, rows = run_check(config, {"web:web_00": 150 * MiB})
    assert code == 1
    assert verdict_column(rows)["web:web_00"] == "OVER"


def test_check_shows_a_young_process_over_its_limit_as_in_grace() -> None:
    young = replace(WEB, start=time.time())
    config = with_strategy(ANY_100MB, grace=3600.0)
    code, rows = run_check(config, {"web:web_00": 150 * MiB}, [young])
    assert code == 1
    assert verdict_column(rows) == {"web:web_00": "OVER (grace)"}


def test_check_shows_the_strategy_of_each_row() -> None:
    out = io.StringIO()
    config = with_strategy(ANY_100MB, measure="pss")
    check(config, PROCESSES, FakeSampler({"web:web_00": 50 * MiB}), out, environ=SUPERVISED)
    header, web = (columns(line) for line in out.getvalue().splitlines()[:2])
    assert dict(zip(header, web, strict=True))["STRATEGY"] == "pss"


def test_check_without_limits_exits_0() -> None:
    code, rows = run_check(Config(), {"web:web_00": 150 * MiB})
    assert code == 0
    assert verdict_column(rows)["web:web_00"] == "no limit"
