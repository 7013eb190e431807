"""`sentry-memwatch advise` live, on stand-ins of known sizes under a real supervisord: a prefork
master whose children share its pages and hold their own, a flat process, a CPU-busy one."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.harness import PY, ROOT, Supervisord, free_port, hog

MiB = 2**20
SHARED_MB, KIDS, CHILD_MB, FLAT_MB = 200, 3, 60, 120
BUSY = f'{PY} -c "while True: pass"'


def advise(sv_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "listener", "advise", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120,
                          env={**os.environ, "SUPERVISOR_SERVER_URL": sv_url, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def stand_ins(supervisord) -> Supervisord:
    sv = supervisord(f"""
[program:tree]
command={hog('--shared-mb', SHARED_MB, '--children', KIDS, '--child-mb', CHILD_MB)}
startsecs=1
stopasgroup=true

[program:flat]
command={hog('--mb', FLAT_MB)}
startsecs=1

[program:busy]
command={BUSY}
startsecs=1
""")
    sv.wait_running("tree:tree", "flat:flat", "busy:busy")
    sv.wait_allocated({"tree:tree": SHARED_MB, "flat:flat": FLAT_MB})
    return sv


def within(measured: float, expected: float, share: float = 0.15) -> bool:
    return abs(measured - expected) <= share * expected


def test_advise_reports_what_was_allocated_and_a_limit_and_a_count_that_fit(stand_ins, short_tmp):
    rules = short_tmp / "memwatch.conf"
    rules.write_text("[memwatch]\nmeasure = rss\n[group:tree]\nlimit = 100MB\nchildren = each\n")
    spinner = psutil.Process(stand_ins.pid("busy:busy"))
    cpu_before, started = sum(spinner.cpu_times()[:2]), time.monotonic()
    done = advise(stand_ins.url, "--config", str(rules), "--duration", "4s", "--interval", "1s",
                  "--format", "json")
    cpu_used = (sum(spinner.cpu_times()[:2]) - cpu_before) / (time.monotonic() - started)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    host = data["host"]
    programs = {p["program"]: p for p in data["programs"]}
    assert set(programs) == {"tree", "flat", "busy"}
    tree, flat, busy = programs["tree"], programs["flat"], programs["busy"]

    # PSS: the shared pages split between the master and its children, as allocated
    assert (tree["processes"], tree["children_per_process"]) == (1, KIDS)
    allocated = SHARED_MB + KIDS * CHILD_MB
    assert within(tree["process_memory_bytes"]["p99"], allocated * MiB)
    assert within(tree["worker_memory_bytes"]["p50"], (CHILD_MB + SHARED_MB / (KIDS + 1)) * MiB)
    assert within(flat["process_memory_bytes"]["p50"], FLAT_MB * MiB)
    assert flat["worker_memory_bytes"] is None
    # the CPU-busy one gets what the shared machine gives it (the kernel's own count, over a window
    # a little wider than advise's); the others next to nothing
    assert within(busy["cpu_cores"], cpu_used, share=0.5)
    assert tree["cpu_cores"] < 0.2 and flat["cpu_cores"] < 0.2 and busy["cpu_cores"] > 0.1

    for p in programs.values():
        judged = p["worker_memory_bytes"] or p["process_memory_bytes"]
        assert p["recommended_limit_bytes"] > judged["max"]
    # idle programs: memory decides, with 10% of the host kept free (a program that used a
    # little CPU on the shared machine may be held lower by CPU, never higher than memory)
    for p in (tree, flat):
        room = host["memory_available_bytes"] - 0.10 * host["memory_total_bytes"]
        per = p["process_memory_bytes"]["p99"]
        if p["cpu_cores"] / p["processes"] < 0.01:
            assert int(room // per) <= p["recommended_processes"]
        in_use = p["processes"] * p["process_memory_bytes"]["max"]
        assert p["recommended_processes"] <= int((room + in_use) // per)
    # the rules in force are compared with what was seen
    said = " ".join(tree["advice"])
    assert "below a worker's normal peak" in said and "measure = pss" in said
    assert any("no rule covers this program" in line for line in flat["advice"])


def test_advise_prints_a_table_for_people(stand_ins):
    done = advise(stand_ins.url, "-a", "1GB", "--duration", "2s", "--interval", "1s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("host: ")
    assert lines[1].split()[:3] == ["PROGRAM", "KIND", "PROCS"]
    assert sorted(line.split()[0] for line in lines[2:5]) == ["busy", "flat", "tree"]


@pytest.mark.parametrize("case", ["no supervisord", "not prometheus", "nothing running"])
def test_bad_input_gets_one_line_and_exit_2(case: str, supervisord, short_tmp: Path) -> None:
    if case == "no supervisord":
        done = advise(f"unix://{short_tmp}/none.sock", "--duration", "1s")
        expected = "cannot reach supervisord"
    elif case == "not prometheus":
        sv = supervisord(f"[program:flat]\ncommand={hog('--mb', 5)}\nstartsecs=1\n")
        done = advise(sv.url, "-a", "1GB", "--prometheus", f"http://127.0.0.1:{free_port()}")
        expected = "--prometheus"
    else:
        sv = supervisord(f"[program:off]\ncommand={hog('--mb', 5)}\nautostart=false\n")
        done = advise(sv.url, "-a", "1GB", "--duration", "1s")
        expected = "no process to observe"
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
