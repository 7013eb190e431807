"""`children = auto` on real Granian under a real supervisord, started the three ways people start
it: the `granian` CLI, embedded through its Python API as Sentry's `sentry run web` does (with
setproctitle retitling master and workers), and behind a shell that does not exec. Each is
recognised by the module it maps, not by its name; a worker over its limit gets its master a
SIGHUP, which replaces the workers one by one while the server keeps answering."""

from __future__ import annotations

import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import PY, ROOT, Supervisord, free_port, wait_for

pytest.importorskip("granian")

WEBAPP_DIR = ROOT / "deploy" / "demo"
BLOAT_MB = 120  # a Granian worker holds 10-30 MiB PSS here; the limit sits between
LIMIT = "90MB"


def launcher(root: Path) -> Path:
    """Granian embedded as Sentry's launcher does it: the Python API, workers retitled."""
    path = root / "sentry_like_web.py"
    path.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(WEBAPP_DIR)!r})
        from granian import Granian
        from granian.constants import Interfaces
        Granian("webapp:application", address="127.0.0.1", port=int(sys.argv[1]),
                interface=Interfaces.WSGI, workers=2, respawn_failed_workers=True,
                process_name="sentry-web-like").serve()
        """))
    return path


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def server_master(supervised: int) -> psutil.Process:
    """The Granian master: the supervised process, or the one child of a wrapping shell."""
    process = psutil.Process(supervised)
    return process.children()[0] if process.name() in ("sh", "dash") else process


def workers(master: psutil.Process) -> set[int]:
    return {c.pid for c in master.children() if "resource_tracker" not in " ".join(c.cmdline())}


class Load:
    """Requests back to back from a thread until stopped; counts the ones that failed."""

    def __init__(self, port: int) -> None:
        self.port, self.done, self.failed = port, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                get(self.port, "/")
                self.done += 1
            except OSError:
                self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def granians(supervisord, short_tmp: Path) -> Iterator[tuple[Supervisord, dict[str, int]]]:
    granian = ROOT / ".venv" / "bin" / "granian"
    cli = [str(granian) if granian.exists() else f"{PY} -m granian", "--interface", "wsgi",
           "--host", "127.0.0.1", "--workers", "2", "--working-dir", str(WEBAPP_DIR)]
    ports = {"cli": free_port(), "embedded": free_port(), "wrapped": free_port()}
    sv = supervisord(f"""
[program:cli]
command={' '.join(cli)} --port {ports['cli']} webapp:application
stopasgroup=true
startsecs=1

[program:embedded]
command={PY} {launcher(short_tmp)} {ports['embedded']}
stopasgroup=true
startsecs=1

[program:wrapped]
command=/bin/sh -c "{' '.join(cli)} --port {ports['wrapped']} webapp:application; true"
stopasgroup=true
killasgroup=true
startsecs=1
""")
    sv.wait_running("cli:cli", "embedded:embedded", "wrapped:wrapped")
    for name, port in ports.items():
        wait_for(lambda port=port: get(port, "/"), timeout=60, what=f"granian {name} answers")
        wait_for(lambda name=name: len(workers(server_master(sv.pid(f"{name}:{name}")))) == 2,
                 timeout=60, what=f"2 workers of {name}")
    yield sv, ports


def rules(root: Path) -> Path:
    path = root / "memwatch.conf"
    path.write_text("[memwatch]\nmeasure = pss\n\n[any]\nlimit = " + LIMIT + "\nchildren = auto\n")
    return path


@pytest.mark.parametrize("name", ["cli", "embedded", "wrapped"])
def test_a_granian_worker_over_its_limit_is_replaced_by_its_masters_roll_without_a_failed_request(
        granians, listener, short_tmp: Path, name: str) -> None:
    sv, ports = granians
    port, namespec = ports[name], f"{name}:{name}"
    lst = listener("--config", rules(short_tmp), server_url=sv.url)
    lst.tick()
    wait_for(lambda: f'process={namespec}' in lst.stderr() and "server=granian" in lst.stderr(),
             what=f"{namespec} recognised as granian")
    master = server_master(sv.pid(namespec))
    before = workers(master)

    leaker = int(get(port, f"/leak?mb={BLOAT_MB}").split()[-1])
    assert leaker in before
    load = Load(port)
    try:
        lst.tick()
        wait_for(lambda: "signalled the master" in lst.stderr(), what="the master signalled")
        # the roll replaces every worker, one by one, the master staying
        wait_for(lambda: not (workers(master) & before) and len(workers(master)) == 2,
                 timeout=60, what="every worker of the roll replaced")
        lst.tick()
    finally:
        load.stop()
    assert master.is_running() and sv.pid(namespec) == master.pid or name == "wrapped"
    # 0 failed in 12 quiet runs (4 of each way; the CLI's took 11,000-14,000 requests); on a
    # loaded machine the kernel has reset 1 in ~12,000, a connection queued on the leaving
    # worker's socket (Granian's own warning: net.ipv4.tcp_migrate_req=1 hands such connections
    # to a sibling)
    assert load.done > 0 and load.failed <= load.done // 1000, (load.done, load.failed)
    assert lst.stderr().count("signalled the master") == 1  # one roll, never a second signal
    assert "restarting process" not in lst.stderr()
