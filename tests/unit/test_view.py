"""listener.web.view: the /status JSON is a contract (its keys are what users' scripts read), and
what another listener answers is checked before anything is shown of it."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from listener.core.rows import ProcessRow
from listener.web.stats import Counter
from listener.web.view import StatusError, StatusView, from_json, to_json

MiB = 1024**2
README = Path(__file__).resolve().parents[2] / "README.md"

WORKER = ProcessRow("sentry-worker", "worker_00", 150 * MiB, "pss", 100 * MiB, 2, 4, pid=4343,
                    verdict="act", strategy="pss, each, HUP", budget_left=4, memory_pid=4350,
                    state="RUNNING", restarts=1, child_signals=2, last_action="restarts",
                    last_action_at=1010.0, history=((1000.0, 80 * MiB), (1005.0, 150 * MiB)))
IDLE = ProcessRow("cron", "cron", None, "rss", 50 * MiB, 0, None, state="STOPPED")
VIEW = StatusView("0.1.0", True, 1005.0, 0, (WORKER, IDLE))

# The documented keys (README "Status page and /status"): renaming one breaks users' scripts.
PROCESS_KEYS = {
    "group", "process", "pid", "state", "memory_bytes", "memory_pid", "memory_age_seconds",
    "time_to_limit_seconds",
    "limit_bytes", "measure",
    "verdict", "strategy", "over_limit_samples", "children", "restarts", "restart_failures",
    "child_signals", "child_signal_escalations", "restarts_suppressed", "dry_run_actions",
    "forced_stops", "budget_left", "oom_kills", "last_action", "history"}


def served(view: StatusView) -> Any:
    """What /status answers, decoded as a client decodes it."""
    return json.loads(json.dumps(to_json(view)))


def test_status_keeps_its_documented_keys() -> None:
    answer = served(VIEW)
    assert set(answer) == {"version", "supervisor_up", "last_tick", "stopped_not_running",
                           "processes", "host_oom_kills", "oom_source", "tick_problem",
                           "supervisor_url", "supervisor_error"}
    worker, idle = answer["processes"]
    assert set(worker) == set(idle) == PROCESS_KEYS
    assert worker["memory_bytes"] == 150 * MiB and worker["limit_bytes"] == 100 * MiB
    assert worker["over_limit_samples"] == 2 and worker["memory_pid"] == 4350
    assert worker["last_action"] == {"kind": "restarts", "at": 1010.0}
    assert worker["history"] == [[1000.0, 80 * MiB], [1005.0, 150 * MiB]]
    assert idle["memory_bytes"] is None and idle["last_action"] is None and idle["pid"] == 0


def test_a_served_view_reads_back_as_the_same_rows() -> None:
    assert from_json(served(VIEW)) == VIEW


def test_the_rows_figures_that_status_leaves_out_read_back_as_unknown() -> None:
    sampled = replace(WORKER, tree_memory_bytes=300 * MiB, cpu_seconds=12.5)
    (back,) = from_json(served(replace(VIEW, processes=(sampled,)))).processes
    assert back == WORKER and back.tree_memory_bytes is None and back.cpu_seconds is None


def test_the_readmes_example_is_a_valid_answer() -> None:
    example = re.search(r"`/status` is the same as JSON.*?```json\n(.*?)```", README.read_text(),
                        re.S)
    assert example, "README's /status example moved"
    answer = json.loads(example.group(1))
    assert set(answer["processes"][0]) == PROCESS_KEYS  # the example shows every key
    assert from_json(answer).processes[0].memory_bytes == 231000000


def test_every_counter_is_a_row_field() -> None:
    # Stats adds to the row's field named by the counter; the metric is named after it too
    names = {f.name for f in fields(ProcessRow)}
    assert {c.value for c in Counter} <= names


def mutated(path: str, value: Any) -> Any:
    """The served answer with one value replaced (`path` like processes.0.pid), or removed."""
    answer = copy.deepcopy(served(VIEW))
    *parents, last = path.split(".")
    node = answer
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is REMOVE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return answer


class _Remove:
    def __repr__(self) -> str:  # a stable test id under pytest-xdist, unlike object()'s
        return "REMOVE"


REMOVE = _Remove()
HOSTILE = [
    ("processes.0.memory_bytes", "a lot", "processes[0].memory_bytes: expected a whole number "
                                          "from 0 or null, got 'a lot'"),
    ("processes.0.pid", -1, "processes[0].pid: expected a whole number from 0, got -1"),
    ("processes.0.pid", True, "processes[0].pid: expected a whole number from 0, got True"),
    ("processes.0.pid", 2**64, "processes[0].pid: expected a whole number from 0"),
    ("processes.0.limit_bytes", 1.5, "processes[0].limit_bytes: expected a whole number"),
    ("processes.0.group", None, "processes[0].group: expected a string, got None"),
    ("processes.0.pid", REMOVE, "processes[0]: no 'pid'"),
    ("processes.0.last_action", {"kind": "restarts"}, "processes[0].last_action: no 'at'"),
    ("processes.0.last_action", [], "processes[0].last_action: expected an object or null"),
    ("processes.0.history.1", [1.0], "processes[0].history[1]: expected a list of 2, got [1.0]"),
    ("processes.1", "cron", "processes[1]: expected an object, got 'cron'"),
    ("processes", {}, "processes: expected a list, got {}"),
    ("last_tick", float("inf"), "last_tick: expected a finite number, got inf"),
    ("last_tick", "1005", "last_tick: expected a finite number, got '1005'"),
    ("supervisor_up", 1, "supervisor_up: expected true or false, got 1"),
    ("version", REMOVE, "the answer: no 'version'"),
]


@pytest.mark.parametrize(("path", "value", "said"), HOSTILE,
                         ids=[f"{h[0]}={h[1]!r}"[:40] for h in HOSTILE])
def test_a_malformed_answer_is_one_line_saying_where(path: str, value: Any, said: str) -> None:
    with pytest.raises(StatusError) as raised:
        from_json(mutated(path, value))
    assert str(raised.value).startswith(said) and "\n" not in str(raised.value)


@pytest.mark.parametrize("answer", [None, [], "ok", 42, [VIEW.version]])
def test_an_answer_that_is_no_object_is_refused(answer: Any) -> None:
    with pytest.raises(StatusError, match="^the answer: expected an object"):
        from_json(answer)


def test_a_long_bad_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(StatusError) as raised:
        from_json(mutated("processes.0.pid", "9" * 10_000))
    assert len(str(raised.value)) < 120


def test_keys_a_newer_listener_adds_are_ignored_and_an_older_ones_may_be_missing() -> None:
    answer = mutated("processes.0.memory_pid", REMOVE)
    del answer["processes"][0]["state"]
    answer["processes"][0]["something_new"] = {"nested": [1, 2]}
    answer["uptime"] = 12
    (worker, _) = from_json(answer).processes
    assert worker.memory_pid is None and worker.state == "" and worker.memory_bytes == 150 * MiB
