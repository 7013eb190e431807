"""Process trees: a real uWSGI with 4 workers, and a Celery-shaped prefork master."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.harness import ROOT, free_port, hog, value, wait_for

UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
WEBAPP = ROOT / "deploy" / "demo" / "webapp.py"
MiB = 2**20

needs_uwsgi = pytest.mark.skipif(UWSGI is None, reason="uwsgi (the pyuwsgi wheel) is not installed")


def uwsgi_program(port: int) -> str:
    command = (f"{UWSGI} --http-socket 127.0.0.1:{port} --wsgi-file {WEBAPP} --master "
               "--processes 4 --die-on-term --disable-logging")
    return f"""
[program:web]
command={command}
stopasgroup=true
startsecs=1
"""


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


def workers(master: int) -> set[int]:
    return {c.pid for c in psutil.Process(master).children()}


def bloat_one_worker(port: int, master: int) -> int:
    """Make one uWSGI worker hold 80 MiB more; returns its pid."""
    wait_for(lambda: len(workers(master)) == 4, what="4 uWSGI workers")
    leaker = int(get(port, "/leak?mb=80").split()[-1])
    assert leaker in workers(master)
    return leaker


@needs_uwsgi
def test_child_signal_hup_replaces_only_the_bloated_uwsgi_worker(supervisord, listener):
    port = free_port()
    sv = supervisord(uwsgi_program(port))
    master = sv.wait_running()["web:web"]
    leaker = bloat_one_worker(port, master)
    others = workers(master) - {leaker}
    lst = listener("-p", "web=60MB", "--children", "each", "--child-signal", "HUP",
                   "--measure", "pss", server_url=sv.url)
    lst.tick()
    wait_for(lambda: leaker not in workers(master) and len(workers(master)) == 4,
             what="the bloated worker replaced by its master")
    assert sv.pid("web:web") == master
    assert others <= workers(master)
    assert get(port, "/").startswith("ok ")
    samples = lst.metrics()
    assert value(samples, "memwatch_child_signals_total", group="web", process="web") == 1
    assert value(samples, "memwatch_restarts_total", group="web", process="web") == 0
    assert value(samples, "memwatch_process_children", group="web", process="web") == 4
    # the figure for `each` is the largest unit: the bloated worker, by PSS
    biggest = value(samples, "memwatch_process_memory_bytes", group="web", process="web",
                    measure="pss")
    assert biggest is not None and biggest > 80 * MiB


@needs_uwsgi
def test_children_each_without_a_signal_restarts_the_program(supervisord, listener):
    port = free_port()
    sv = supervisord(uwsgi_program(port))
    master = sv.wait_running()["web:web"]
    bloat_one_worker(port, master)
    lst = listener("-p", "web=60MB", "--children", "each", server_url=sv.url)
    lst.tick()
    wait_for(lambda: sv.infos()["web:web"]["pid"] not in (0, master)
             and sv.infos()["web:web"]["statename"] == "RUNNING", what="web restarted")
    wait_for(lambda: value(lst.metrics(), "memwatch_restarts_total", group="web", process="web") == 1,
             what="restart counted")
    new_master = sv.pid("web:web")
    wait_for(lambda: get(port, "/").startswith("ok "), what="the new uWSGI to answer")
    assert not psutil.pid_exists(master) or master not in {p.pid for p in
                                                          psutil.Process(new_master).parents()}


SHARED_MB, CHILD_MB, GROW_MB, KIDS = 200, 10, 40, 4
CELERY = f"""
[program:celery]
command={hog('--shared-mb', SHARED_MB, '--children', KIDS, '--child-mb', CHILD_MB, '--grow-child', 0,
             '--grow-mb', GROW_MB)}
stopasgroup=true
startsecs=0
"""


def wait_tree_allocated(sv) -> int:
    """The master and its 4 children have touched what they were told to."""
    master = sv.wait_running("celery:celery")["celery:celery"]

    def ready() -> bool:
        kids = psutil.Process(master).children()
        return len(kids) == KIDS and all(
            k.memory_full_info().uss >= CHILD_MB * MiB * 0.9 for k in kids)
    wait_for(ready, what="the prefork tree allocated")
    return master


def test_rss_sums_mislead_where_pss_sums_are_honest(supervisord, listener):
    sv = supervisord(CELERY)
    master = wait_tree_allocated(sv)
    pss = listener("-c", "--measure", "pss", "-p", "celery=500MB", server_url=sv.url)
    rss = listener("-c", "-p", "celery=500MB", "--dry-run", server_url=sv.url)
    for _ in range(3):
        pss.tick()
        rss.tick()
    pss_samples, rss_samples = pss.metrics(), rss.metrics()
    pss_sum = value(pss_samples, "memwatch_process_memory_bytes", group="celery", process="celery",
                    measure="pss")
    rss_sum = value(rss_samples, "memwatch_process_memory_bytes", group="celery", process="celery",
                    measure="rss")
    allocated = (SHARED_MB + KIDS * CHILD_MB + GROW_MB) * MiB
    assert pss_sum is not None and rss_sum is not None
    assert abs(pss_sum - allocated) <= 0.15 * allocated, (pss_sum / MiB, allocated / MiB)
    assert rss_sum > 2 * allocated, (rss_sum / MiB, allocated / MiB)
    assert value(pss_samples, "memwatch_process_children", group="celery", process="celery") == KIDS
    # the honest figure leaves the healthy tree alone; the RSS sum would have restarted it
    assert value(pss_samples, "memwatch_restarts_total", group="celery", process="celery") == 0
    assert value(pss_samples, "memwatch_process_over_limit_samples", group="celery",
                 process="celery") == 0
    assert value(rss_samples, "memwatch_dry_run_actions_total", group="celery", process="celery") == 3
    assert sv.pid("celery:celery") == master


def test_a_tree_whose_children_come_and_go_is_sampled_without_failing(supervisord, listener):
    # a master that forks short-lived children all the time: some exit between scan and read
    sv = supervisord(f"""
[program:churn]
command={hog('--churn')}
startsecs=0
""")
    sv.wait_running()
    lst = listener("-c", "-a", "1GB", "--measure", "pss", server_url=sv.url)
    for _ in range(200):
        lst.tick()
    assert lst.proc.poll() is None
    samples = lst.metrics()
    assert value(samples, "memwatch_events_total", event="TICK_5") == 200
    assert value(samples, "memwatch_process_memory_bytes", group="churn", process="churn",
                 measure="pss") is not None
    assert "Traceback" not in lst.stderr()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the sampler as another user")
def test_pss_denied_by_permissions_falls_back_to_rss_visibly_and_is_counted():
    # A sampler running as `nobody` may read statm (RSS) of a root process but not its smaps.
    # Fork and drop privileges after the imports: nobody may not read this interpreter's files.
    import io
    import logging

    from listener.core.model import ProcessInfo
    from listener.core.rules import Rules
    from listener.host.sampler import Sampler

    target = ProcessInfo("g", "root", os.getpid(), "RUNNING", 0.0)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            log = io.StringIO()
            logging.getLogger("memwatch").addHandler(logging.StreamHandler(log))
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            sampler, rules = Sampler(), Rules.uniform("pss", "none")
            results = [sampler.sample([target], rules) for _ in range(2)]
            s = results[0].samples["g:root"]
            out = {"measure": s.measure, "value": s.value,
                   "errors": [dict(r.errors) for r in results], "log": log.getvalue()}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        out = json.loads(f.read())
    os.waitpid(child, 0)
    assert out["measure"] == "rss"
    assert out["value"] > 0
    assert out["errors"] == [{"pss_denied": 1}, {"pss_denied": 1}]
    assert out["log"].count("pss of pid") == 1  # said once, counted every time
