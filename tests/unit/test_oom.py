"""OOM kills: the kernel log parsed (real records of kernel 6.18, and anything at all), kills
attributed by pid and start time, /proc/vmstat read, the reader's EPIPE and fallback paths."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.core.model import ProcessInfo, Sample, Unit
from listener.core.oom import Kill, attribute, parse_record, seen_in, vmstat_oom_kills
from listener.core.rules import Rules, Strategy
from listener.host.oom import KernelKills
from listener.host.oomwatch import ScoreAdjuster

# as this machine's kernel (6.18) wrote them for a process killed in a memory cgroup
KILLED = (b"3,1502,10516958202,-;Memory cgroup out of memory: Killed process 4254 (python3) "
          b"total-vm:221368kB, anon-rss:61056kB, file-rss:1024kB, shmem-rss:0kB, UID:0 "
          b"pgtables:480kB oom_score_adj:0\n")
CONSTRAINT = (b"6,1501,10516958100,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
              b"cpuset=/,mems_allowed=0,oom_memcg=/t,task_memcg=/t,task=python3,pid=4254,uid=0\n")
REAPED = (b"6,1503,10516960000,-;oom_reaper: reaped process 4254 (python3), now anon-rss:0kB, "
          b"file-rss:0kB, shmem-rss:0kB\n")


def test_a_kernel_kill_record_is_parsed() -> None:
    kill = parse_record(KILLED)
    assert kill == Kill(pid=4254, comm="python3", at=10516.958202,
                        rss=(61056 + 1024) * 1024, memcg=True)


def test_a_host_oom_and_a_comm_with_parentheses_and_spaces() -> None:
    kill = parse_record(b"3,9,5000000,-;Out of memory: Killed process 77 (my (odd) name) "
                        b"total-vm:10kB, anon-rss:8kB, file-rss:0kB, shmem-rss:0kB, UID:0\n")
    assert kill is not None and kill.pid == 77 and kill.comm == "my (odd) name"
    assert not kill.memcg and kill.rss == 8 * 1024 and kill.at == 5.0


def test_other_records_are_not_kills() -> None:
    for record in (CONSTRAINT, REAPED, b"6,1,2,-;Killed process 12\n", b"", b";",
                   b"x,y,z;Killed process 5 (a) total-vm:1kB\n"):
        assert parse_record(record) is None


def test_a_record_written_by_a_process_cannot_forge_a_kill() -> None:
    # userspace writes to /dev/kmsg get facility LOG_USER (prio 8 and up): never the kernel's
    assert parse_record(b"12" + KILLED[1:]) is None
    assert parse_record(b"11" + KILLED[1:]) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_to_a_kill_or_none(data: bytes) -> None:
    kill = parse_record(data)
    assert kill is None or (kill.pid > 0 and len(kill.comm) <= 64)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80), st.integers(0, 2**64))
def test_a_kill_record_with_hostile_surroundings(before: bytes, after: bytes, n: int) -> None:
    record = b"3,1,%d,-;" % n + before + b"Killed process 42 (x) " + after
    kill = parse_record(record)
    if b"\n" not in before:
        assert kill is not None and kill.pid == 42


def test_vmstat() -> None:
    assert vmstat_oom_kills(b"nr_free_pages 12\noom_kill 3\npgfault 9\n") == 3
    assert vmstat_oom_kills(b"nr_free_pages 12\n") is None
    assert vmstat_oom_kills(b"oom_kill x\n") is None


BOOT = 1_000_000.0
WEB = ProcessInfo("web", "web", 100, "RUNNING", BOOT + 10)


def sample(*units: tuple[int, float, int]) -> Sample:
    members = tuple(Unit(pid, size, BOOT + started) for pid, started, size in units)
    return Sample(value=max(u.bytes for u in members), measure="pss", children=len(units) - 1,
                  units=members, members=members)


def kill(pid: int, at: float) -> Kill:
    return Kill(pid, "python3", at, 50 << 20, True)


def test_a_worker_killed_between_two_ticks_is_its_program_s() -> None:
    before = seen_in([WEB], {"web:web": sample((100, 10, 5), (101, 11, 80))}, BOOT)
    now = seen_in([WEB], {"web:web": sample((100, 10, 5), (102, 60, 1))}, BOOT)  # respawned
    found = attribute(kill(101, 50.0), [before, now])
    assert found is not None and found.namespec == "web:web" and found.worker
    assert found.bytes == 80


def test_a_pid_reused_after_the_kill_is_not_blamed() -> None:
    # 101 was killed at 50 s; by this tick's sample a new process got pid 101 (started 55 s),
    # and a process elsewhere, not watched; the last tick's sample of 101 is the victim
    before = seen_in([WEB], {"web:web": sample((100, 10, 5), (101, 11, 80))}, BOOT)
    other = ProcessInfo("cron", "cron", 101, "RUNNING", BOOT + 55)
    now = seen_in([other], {"cron:cron": sample((101, 55, 1))}, BOOT)
    found = attribute(kill(101, 50.0), [before, now])
    assert found is not None and found.namespec == "web:web"
    assert attribute(kill(101, 50.0), [now]) is None


def test_a_pid_never_sampled_is_nobody_s() -> None:
    seen = seen_in([WEB], {"web:web": sample((100, 10, 5))}, BOOT)
    assert attribute(kill(555, 50.0), [seen]) is None


def test_the_reader_falls_back_to_vmstat_and_counts(tmp_path: Path) -> None:
    vmstat = tmp_path / "vmstat"
    vmstat.write_bytes(b"oom_kill 4\n")
    kernel = KernelKills(kmsg_path=str(tmp_path / "missing"), vmstat_path=str(vmstat))
    kernel.open()
    assert kernel.source == "vmstat"
    assert kernel.poll([], {}).uncounted == 0
    vmstat.write_bytes(b"oom_kill 6\n")
    assert kernel.poll([], {}).uncounted == 2
    assert kernel.poll([], {}).uncounted == 0


def test_the_reader_reads_records_and_stops_at_the_end(tmp_path: Path) -> None:
    """A FIFO stands in for /dev/kmsg: one read a record, EAGAIN at the end."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    kernel = KernelKills(kmsg_path=str(fifo), vmstat_path=str(tmp_path / "none"),
                         boot_time=BOOT)
    kernel.open()
    try:
        assert kernel.source == "kmsg"
        assert kernel.poll([], {}).watched == ()
        os.write(writer, KILLED)
        found = kernel.poll([WEB], {"web:web": sample((100, 10, 5), (4254, 11, 80))})
        assert [(k.pid, s.namespec) for k, s in found.watched] == [(4254, "web:web")]
        os.write(writer, KILLED.replace(b"4254", b"9999"))
        assert [k.pid for k in kernel.poll([], {}).others] == [9999]
    finally:
        kernel.close()
        os.close(writer)


def test_oom_score_adj_is_written_once_per_process_start(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid in (100, 101):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "oom_score_adj").write_text("0")
    rules = Rules(programs=(("web", 100 << 20, Strategy(oom_score_adj=500)),))
    adjuster = ScoreAdjuster(str(proc))
    samples = {"web:web": sample((100, 10, 5), (101, 11, 80))}
    adjuster.adjust([WEB], samples, rules)
    assert (proc / "101" / "oom_score_adj").read_text() == "500"
    (proc / "101" / "oom_score_adj").write_text("7")  # changed behind our back: left alone
    adjuster.adjust([WEB], samples, rules)
    assert (proc / "101" / "oom_score_adj").read_text() == "7"
    adjuster.adjust([WEB], {"web:web": sample((100, 10, 5), (101, 99, 80))}, rules)  # reused
    assert (proc / "101" / "oom_score_adj").read_text() == "500"
