"""One listener, one rules file, `children = auto` on real servers under a real supervisord:
uWSGI (pyuwsgi), gunicorn and Celery (with a real redis-server as its broker), next to a plain
program, each with its own rule. A worker over its limit is replaced as its server replaces
one: uWSGI's by SIGHUP, gunicorn's by SIGTERM, Celery's by a warm restart of its master."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import PY, ROOT, ListenerProcess, Supervisord, free_port, hog, value, wait_for
from tests.integration.deploy_helpers import require_binary, start, stop

WEBAPP_DIR = ROOT / "deploy" / "demo"
MiB = 2**20
BLOAT_MB = 120  # a worker's PSS at rest is 10-40 MiB here; the limit sits between
LIMIT = "90MB"

celery = pytest.importorskip("celery")


@pytest.fixture
def redis_port(short_tmp: Path) -> Iterator[int]:
    binary = require_binary("redis-server", "apt-get install redis-server")
    port = free_port()
    proc = start([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(short_tmp)], short_tmp / "redis.log")
    client = celery.Celery(broker=f"redis://127.0.0.1:{port}/0")
    wait_for(lambda: client.connection_for_write().ensure_connection(max_retries=1) or True,
             what="redis-server to accept connections")
    yield port
    stop(proc)


def celery_app(root: Path, redis_port: int) -> Path:
    """A Celery app whose `hold` task keeps N MiB in the pool child that runs it."""
    (root / "memapp.py").write_text(textwrap.dedent(f"""\
        import os
        from celery import Celery
        app = Celery("memapp", broker="redis://127.0.0.1:{redis_port}/0",
                     backend="redis://127.0.0.1:{redis_port}/1")
        app.conf.worker_hijack_root_logger = False
        kept = []

        @app.task(name="memapp.hold")
        def hold(mb):
            kept.append(b"\\x01" * (mb * 1024 * 1024))
            return os.getpid()
        """))
    return root


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def workers(master: int) -> set[int]:
    return {c.pid for c in psutil.Process(master).children()}


def rules_file(root: Path) -> Path:
    path = root / "memwatch.conf"
    path.write_text(textwrap.dedent(f"""\
        [memwatch]
        measure = pss

        [group:web]
        limit = {LIMIT}
        children = auto

        [group:gunicorn]
        limit = {LIMIT}
        children = auto

        [group:celery]
        limit = {LIMIT}
        children = auto

        [program:plain]
        limit = 1GB
        children = auto
        """))
    return path


@pytest.fixture
def sentry_like(supervisord, short_tmp: Path, redis_port: int) -> Iterator[tuple[Supervisord, dict]]:
    uwsgi = require_binary("uwsgi", "pip install pyuwsgi")
    gunicorn = require_binary("gunicorn", "pip install gunicorn")
    ports = {"web": free_port(), "gunicorn": free_port()}
    app_dir = celery_app(short_tmp, redis_port)
    web = (f"{uwsgi} --http-socket 127.0.0.1:{ports['web']} --wsgi-file {WEBAPP_DIR / 'webapp.py'} "
           "--master --processes 2 --die-on-term --disable-logging")
    arbiter = (f"{gunicorn} -w 2 -b 127.0.0.1:{ports['gunicorn']} --chdir {WEBAPP_DIR} "
               "--graceful-timeout 10 webapp:application")
    worker = (f"{PY} -m celery -A memapp worker -c 2 --pool prefork -l WARNING "
              "--without-heartbeat --without-gossip --without-mingle")
    sv = supervisord(f"""
[program:web]
command={web}
stopasgroup=true
startsecs=1

[program:gunicorn]
command={arbiter}
stopasgroup=true
startsecs=1

[program:celery]
command={worker}
directory={app_dir}
environment=PYTHONPATH="{app_dir}"
stopsignal=TERM
stopwaitsecs=20
stopasgroup=false
killasgroup=true
startsecs=1

[program:plain]
command={hog('--mb', 5)}
startsecs=1
""")
    masters = sv.wait_running("web:web", "gunicorn:gunicorn", "celery:celery", "plain:plain")
    for name in ("web:web", "gunicorn:gunicorn", "celery:celery"):
        wait_for(lambda name=name: len(workers(masters[name])) >= 2, timeout=60,
                 what=f"2 workers of {name}")
    wait_for(lambda: get(ports["web"], "/") and get(ports["gunicorn"], "/"), what="web servers answer")
    yield sv, {"ports": ports, "masters": masters, "app_dir": app_dir, "redis": redis_port}


def status(lst: ListenerProcess) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/status", timeout=10) as resp:
        return {f"{p['group']}:{p['process']}": p for p in json.load(resp)["processes"]}


def check_rows(sv: Supervisord, config: Path) -> dict[str, dict[str, str]]:
    """`sentry-memwatch check --config FILE`, as rows by namespec."""
    out = subprocess.run([PY, "-m", "listener", "check", "--config", str(config)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "SUPERVISOR_SERVER_URL": sv.url, "PYTHONPATH": str(ROOT)})
    assert out.returncode in (0, 1), out.stderr
    header, *lines = out.stdout.splitlines()
    starts = [header.index(h) for h in header.split()] + [None]
    names = header.split()
    rows = {}
    for line in lines:
        cells = {n: line[a:b].strip() for n, a, b in zip(names, starts, starts[1:], strict=False)}
        rows[f"{cells['GROUP']}:{cells['PROCESS']}"] = cells
    return rows


def test_one_listener_replaces_each_servers_bloated_worker_its_own_way(sentry_like, listener):
    sv, env = sentry_like
    ports, masters = env["ports"], env["masters"]
    config = rules_file(env["app_dir"])
    lst = listener("--config", config, server_url=sv.url)
    lst.tick()

    # what was recognised, said alike by the listener and by `check --config` of the same file
    seen = status(lst)
    expected = {"web:web": "pss, each, HUP (auto: uwsgi)",
                "gunicorn:gunicorn": "pss, each, TERM (auto: gunicorn)",
                "celery:celery": "pss, each (auto: celery)",
                "plain:plain": "pss (auto: plain)"}
    assert {n: seen[n]["strategy"] for n in expected} == expected
    assert all(seen[n]["verdict"] == "ok" for n in expected), seen
    checked = check_rows(sv, config)
    assert {n: checked[n]["STRATEGY"] for n in expected} == expected
    assert {n: checked[n]["VERDICT"] for n in expected} == {n: "ok" for n in expected}

    # one worker of each server grows past the limit
    web_leaker = int(get(ports["web"], f"/leak?mb={BLOAT_MB}").split()[-1])
    gunicorn_leaker = int(get(ports["gunicorn"], f"/leak?mb={BLOAT_MB}").split()[-1])
    redis = f"redis://127.0.0.1:{env['redis']}"
    client = celery.Celery("memapp", broker=f"{redis}/0", backend=f"{redis}/1")
    celery_leaker = client.send_task("memapp.hold", args=[BLOAT_MB]).get(timeout=60)
    assert celery_leaker in workers(masters["celery:celery"])
    web_others = workers(masters["web:web"]) - {web_leaker}
    plain = sv.pid("plain:plain")

    lst.tick()
    # the metrics name the worker whose figure each one is
    whose = {g: value(lst.metrics(), "memwatch_process_memory_pid", group=g, process=g)
             for g in ("web", "gunicorn", "celery")}
    assert whose == {"web": web_leaker, "gunicorn": gunicorn_leaker, "celery": celery_leaker}
    wait_for(lambda: web_leaker not in workers(masters["web:web"])
             and len(workers(masters["web:web"])) == 2, timeout=60,
             what="uWSGI's bloated worker replaced by its master")
    wait_for(lambda: gunicorn_leaker not in workers(masters["gunicorn:gunicorn"])
             and len(workers(masters["gunicorn:gunicorn"])) == 2, timeout=60,
             what="gunicorn's bloated worker replaced by its arbiter")
    wait_for(lambda: sv.infos()["celery:celery"]["pid"] not in (0, masters["celery:celery"])
             and sv.infos()["celery:celery"]["statename"] == "RUNNING", timeout=60,
             what="the Celery master restarted (warm shutdown)")
    assert sv.pid("web:web") == masters["web:web"] and web_others <= workers(masters["web:web"])
    assert sv.pid("gunicorn:gunicorn") == masters["gunicorn:gunicorn"]
    assert sv.pid("plain:plain") == plain
    assert get(ports["web"], "/").startswith("ok ") and get(ports["gunicorn"], "/").startswith("ok ")

    wait_for(lambda: value(lst.metrics(), "memwatch_restarts_total", group="celery",
                           process="celery") == 1, what="the Celery restart counted")
    samples = lst.metrics()
    counts = {g: (value(samples, "memwatch_child_signals_total", group=g, process=g),
                  value(samples, "memwatch_restarts_total", group=g, process=g))
              for g in ("web", "gunicorn", "celery", "plain")}
    assert counts == {"web": (1, 0), "gunicorn": (1, 0), "celery": (0, 1), "plain": (0, 0)}
    log = lst.stderr()
    assert f"child_pid={web_leaker}" in log and f"child_pid={gunicorn_leaker}" in log
    assert f"child_pid={celery_leaker}" in log  # the restart names the child that caused it
    recognised = {line.split("process=")[1].split()[0]: line.split("server=")[1].split()[0]
                  for line in log.splitlines() if "msg=recognised" in line}
    assert recognised == {"web:web": "uwsgi", "gunicorn:gunicorn": "gunicorn",
                          "celery:celery": "celery"}  # the logs say what `auto` found


def test_a_memwatch_listener_under_supervisord_is_never_judged(supervisord, listener):
    """Any sentry-memwatch, not only the one judging: here another listener, running as the
    console script would, far over a limit that applies to everything."""
    sv = supervisord(f"""
[eventlistener:other-memwatch]
command={PY} -m listener -a 1GB --metrics-port 0
events=TICK_60
startsecs=1
environment=PYTHONPATH="{ROOT}"
""")
    sv.wait_running("other-memwatch:other-memwatch")
    lst = listener("-a", "1MB", server_url=sv.url)
    lst.tick()
    other = status(lst).get("other-memwatch:other-memwatch")
    assert other is None  # not among the watched processes at all
    assert value(lst.metrics(), "memwatch_restarts_total", group="other-memwatch",
                 process="other-memwatch") in (None, 0)
    assert "memwatch listener" in subprocess.run(
        [PY, "-m", "listener", "check", "-a", "1MB"], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "SUPERVISOR_SERVER_URL": sv.url, "PYTHONPATH": str(ROOT)}).stdout


def test_a_program_that_calls_itself_sentry_memwatch_is_judged_all_the_same(supervisord, listener):
    """A process can rename itself (`exec -a`), not what supervisord is configured to run: only
    a program configured as sentry-memwatch is never judged."""
    sv = supervisord(f"""
[program:impostor]
command=bash -c 'exec -a sentry-memwatch {hog("--mb", 150)}'
startsecs=1
""")
    pid = sv.wait_allocated({"impostor:impostor": 150})["impostor:impostor"]
    assert psutil.Process(pid).cmdline()[0] == "sentry-memwatch"
    lst = listener("-p", "impostor=80MB", server_url=sv.url)
    lst.tick()
    wait_for(lambda: "restarting process over its memory limit" in lst.stderr(), what="a restart")
    assert "calls itself sentry-memwatch, but supervisord is not configured" in lst.stderr()
    wait_for(lambda: sv.infos()["impostor:impostor"]["pid"] not in (0, pid), what="restarted")
    lst.tick()
    assert status(lst)["impostor:impostor"]["verdict"] != "memwatch listener"


def run_check(sv: Supervisord, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "listener", "check", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60,
                          env={**os.environ, "SUPERVISOR_SERVER_URL": sv.url, "PYTHONPATH": str(ROOT)})


def test_bare_check_judges_with_the_rules_of_the_listener_supervisord_runs(supervisord, short_tmp):
    (short_tmp / "memwatch.conf").write_text("[memwatch]\nmeasure = rss\n\n[program:big]\n"
                                             "limit = 20MB\n\n[program:small]\nlimit = 1GB\n")
    sv = supervisord(f"""
[eventlistener:memwatch]
command={PY} -m listener --config memwatch.conf --metrics-port 0 --dry-run
directory={short_tmp}
events=TICK_60
startsecs=1
environment=PYTHONPATH="{ROOT}"

{hog_program("big", 40)}
{hog_program("small", 5)}
""")
    sv.wait_running("memwatch:memwatch", "big:big", "small:small")
    sv.wait_allocated({"big:big": 40})
    done = run_check(sv)
    assert done.returncode == 1, done.stderr
    assert "judging with the rules of listener memwatch:memwatch: --config" in done.stderr
    verdicts = {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines()[1:]}
    assert verdicts == {"memwatch": "listener", "big": "OVER", "small": "ok"}


def test_bare_check_without_a_listener_or_limits_says_what_to_give(supervisord):
    sv = supervisord(hog_program("small", 5))
    sv.wait_running("small:small")
    done = run_check(sv)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("give --config FILE or limits (-p, -g, -a)")
    assert len(done.stderr.strip().splitlines()) == 1


def hog_program(name: str, mb: int) -> str:
    return f"[program:{name}]\ncommand={hog('--mb', mb)}\nstartsecs=1\n"


def test_sighup_rereads_the_rules_and_the_next_tick_measures_by_them(supervisord, listener, short_tmp):
    sv = supervisord(f"[program:tree]\ncommand={hog('--mb', 5, '--children', 2, '--child-mb', 5)}\n"
                     "startsecs=1\n")
    sv.wait_running("tree:tree")
    rules = short_tmp / "memwatch.conf"
    rules.write_text("[memwatch]\nmeasure = pss\n[group:tree]\nlimit = 1GB\nchildren = sum\n")
    lst = listener("--config", rules, server_url=sv.url)
    wait_for(lambda: len(workers(sv.pid("tree:tree"))) == 2, what="the tree's 2 children")
    lst.tick()
    assert status(lst)["tree:tree"]["strategy"] == "pss, sum"
    rules.write_text("[memwatch]\nmeasure = uss\n[group:tree]\nlimit = 1GB\nchildren = each\n")
    lst.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lst.tick() or status(lst)["tree:tree"]["strategy"] == "uss, each",
             what="the new rules in force")
    row = status(lst)["tree:tree"]
    assert (row["measure"], row["children"]) == ("uss", 2)
