"""Pre-fork trees at realistic sizes under one real supervisord (section 3): the layouts, and
starting and stopping them. Each master is bench.prefork: it writes its MiB, then forks its
children, which share that memory; the machine pays for it once per tree."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from tests.harness import PY, Supervisord, program, wait_for

LEAK_MIB = 64  # what a leaky child writes on top of its master's memory
LEAKY_CHILDREN = 2
MARGIN_MIB = 32  # the few-over variant's limit: the layout's largest size + this


@dataclass(frozen=True)
class Program:
    name: str
    masters: int
    children: int  # per master
    mib: int  # written by the master, shared by its children
    extra: int = 0  # written by each child on top


@dataclass(frozen=True)
class Layout:
    name: str
    programs: tuple[Program, ...]
    leaky: bool = True  # a leaky tree for the few-over variant

    def all_programs(self) -> tuple[Program, ...]:
        if not self.leaky:
            return self.programs
        top = max(p.mib for p in self.programs)
        return (*self.programs, Program("leaky", 1, LEAKY_CHILDREN, top, LEAK_MIB))

    @property
    def limit_mib(self) -> int:
        return max(p.mib for p in self.programs) + MARGIN_MIB

    def count(self, workers_only: bool = False) -> int:
        return sum(p.masters * (p.children + (0 if workers_only else 1))
                   for p in self.all_programs())

    @property
    def written_gib(self) -> float:
        """What the trees wrote: the machine's memory they hold, the interpreters aside."""
        return sum(p.masters * (p.mib + p.children * p.extra) for p in self.all_programs()) / 1024


# The guide's shape (deploy/supervisor/sentry.conf): 36 web workers under one master, 16 worker
# masters with 4 children each. Sizes: the 500 MiB web workers; 300 MiB for a task
# worker child (under the guide's 400MB limit) is this bench's choice.
GUIDE = Layout("guide: 36 web + 16x4 workers", (Program("web", 1, 36, 500),
                                                Program("worker", 16, 4, 300)), leaky=False)


def sized(workers: int, mib: int) -> Layout:
    masters = 2 if workers <= 50 else 6
    return Layout(f"{workers} x {mib} MiB", (Program("web", masters, workers // masters, mib),))


def layouts(quick: bool) -> list[Layout]:
    if quick:
        return [sized(50, 150), sized(300, 600), GUIDE]
    return [sized(50, 150), sized(50, 600), sized(300, 150), sized(300, 600), GUIDE]



def tree_pids(sv: Supervisord) -> dict[int, str]:
    """pid -> program of every process of the trees (masters and their children)."""
    found: dict[int, str] = {}
    for info in sv.infos().values():
        master = psutil.Process(int(info["pid"]))
        found[master.pid] = str(info["group"])
        found.update((c.pid, str(info["group"])) for c in master.children(recursive=True))
    return found


def complete(sv: Supervisord, layout: Layout) -> dict[int, str] | None:
    """The trees' pids once every master has its children and every process its memory."""
    programs = {p.name: p for p in layout.all_programs()}
    try:
        pids = tree_pids(sv)
        if len(pids) != layout.count():
            return None
        for pid, name in pids.items():
            p = programs[name]
            want = p.mib + (p.extra if psutil.Process(pid).ppid() in pids else 0)
            if psutil.Process(pid).memory_info().rss < want << 20:
                return None
    except psutil.NoSuchProcess:
        return None
    return pids


def start(layout: Layout) -> tuple[Supervisord, dict[int, str]]:
    sections = "".join(program(p.name, f"{PY} -m bench.prefork {p.mib} {p.children} {p.extra}",
                               p.masters) for p in layout.all_programs())
    sv = Supervisord(sections, loglevel="warn", all_running=True)
    try:
        pids = wait_for(lambda: complete(sv, layout), 300.0, interval=0.5,
                        what=f"{layout.name}: every tree forked and written")
    except BaseException:
        stop(sv, {})
        raise
    return sv, pids


def stop(sv: Supervisord, pids: dict[int, str]) -> None:
    """supervisord stops every tree (SIGTERM to each program's group; a child also dies with
    its master); then no process of ours may be left, zombies aside."""
    sv.stop()

    def alive() -> list[int]:
        found = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(pid)
            except psutil.NoSuchProcess:
                continue
        return found
    try:
        wait_for(lambda: not alive(), 60.0, interval=0.2, what="every tree gone")
    finally:
        for pid in alive():
            psutil.Process(pid).kill()


