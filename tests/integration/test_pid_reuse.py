"""A respawn that really gets the pid of the process it replaces, on a real supervisord.

supervisord runs as the init of a new pid namespace (unshare), and the listener joins that
namespace (nsenter), so that pids mean the same to both. Before it crashes, the program writes
its own pid minus one to the namespace's /proc/sys/kernel/ns_last_pid: the next pid the kernel
hands out, supervisord's respawn of it, is the same pid."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import Supervisord, recorder_section, value, wait_for

pytestmark = pytest.mark.both_modes  # listing every tick, and the table from events

# The first run allocates, says so, waits for the test to open the `crash` FIFO, hands its pid
# on (ns_last_pid) and exits 1; supervisord respawns it (autorestart) with that pid; the second
# run allocates, says so and stays.
PHOENIX = """\
import os, signal, sys
root = sys.argv[1]
kept = b"\\x01" * (60 * 2**20)
run = sum(name.startswith("ready-") for name in os.listdir(root))
open(os.path.join(root, f"ready-{run}-{os.getpid()}"), "w").close()
if run == 0:
    with open(os.path.join(root, "crash")) as fifo:
        fifo.read()
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(os.getpid() - 1))
    os._exit(1)
while True:
    signal.pause()
"""


@pytest.fixture
def namespaced(short_tmp: Path, process_table: str) -> Iterator[Callable[[str], Supervisord]]:
    """A real supervisord as the init of a pid namespace of its own."""
    started: list[Supervisord] = []

    def start(sections: str) -> Supervisord:
        if process_table == "events":
            sections = recorder_section(short_tmp) + sections
        sv = Supervisord(sections, short_tmp,
                         prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"))
        started.append(sv)
        return sv

    yield start
    for sv in started:  # unshare ignores SIGTERM: ask supervisord itself
        with contextlib.suppress(Exception):
            sv.rpc().supervisor.shutdown()
        sv.stop()


def enter(sv: Supervisord) -> tuple[str, ...]:
    """The command prefix that runs a command in supervisord's pid and mount namespaces."""
    (init,) = psutil.Process(sv.proc.pid).children()  # unshare's child: supervisord, pid 1 inside
    return ("nsenter", "-t", str(init.pid), "-p", "-m", "--")


def ready(root: Path, run: int) -> int | None:
    """The pid (inside the namespace) of the given run of the program, once it has allocated."""
    for path in root.glob(f"ready-{run}-*"):
        return int(path.name.rsplit("-", 1)[1])
    return None


def crash(fifo: Path) -> bool:
    """Let the first run go on to crash (False while it is not waiting on the FIFO yet)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return False
        raise
    os.close(fd)
    return True


def test_a_respawn_that_got_the_same_pid_starts_a_new_count(namespaced, listener, short_tmp):
    runs = short_tmp / "runs"
    runs.mkdir()
    os.mkfifo(runs / "crash")
    (short_tmp / "phoenix.py").write_text(PHOENIX)
    sv = namespaced(f"""
[program:phoenix]
command={sys.executable} {short_tmp / 'phoenix.py'} {runs}
startsecs=0
autorestart=true
""")
    pid = wait_for(lambda: ready(runs, 0), what="the first run allocated")
    lst = listener("-p", "phoenix=30MB", "--consecutive", "3", server_url=sv.url,
                   prefix=enter(sv))

    def over() -> float | None:
        return value(lst.metrics(), "memwatch_process_over_limit_samples",
                     group="phoenix", process="phoenix")

    lst.tick()
    lst.tick()
    assert over() == 2  # one sample short of a restart
    wait_for(lambda: crash(runs / "crash"), what="the first run waiting to crash")
    respawned = wait_for(lambda: ready(runs, 1), what="the respawn allocated")
    assert respawned == pid, "the namespace did not hand the same pid out again"
    info = sv.infos()["phoenix:phoenix"]
    assert (info["statename"], info["pid"]) == ("RUNNING", pid)

    lst.tick()  # the respawn's first sample: a new run of one, not the third of the old one
    assert over() == 1
    lst.tick()
    assert over() == 2
    assert sv.infos()["phoenix:phoenix"]["pid"] == pid  # still not restarted
    assert value(lst.metrics(), "memwatch_restarts_total", group="phoenix", process="phoenix") == 0
    lst.tick()  # its own third sample: restarted
    wait_for(lambda: value(lst.metrics(), "memwatch_restarts_total", group="phoenix",
                           process="phoenix") == 1, what="the respawn restarted on its 3rd sample")
