"""A pre-fork stand-in at realistic sizes (section 3): the master writes MIB MiB, then forks
CHILDREN children that only wait. Each child has the MIB MiB resident, shared with the master
(copy-on-write, never written again) and mapped by its own page tables, as a uWSGI or Celery
worker holds the application its master imported; the machine pays for the memory once per
tree. With EXTRA > 0 every child also writes EXTRA MiB of its own (a worker that grew).

    python -m bench.prefork MIB CHILDREN [EXTRA]

A child dies with its master (PR_SET_PDEATHSIG), so stopping the master frees the whole tree.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
PR_SET_PDEATHSIG = 1


def written(mib: int) -> bytearray:
    """MiB of memory, every page written (a bytearray alone may stay untouched zero pages)."""
    block = bytearray(mib << 20)
    block[::PAGE] = b"\x01" * len(range(0, len(block), PAGE))
    return block


def child(master: int, extra: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != master:  # the master died before the prctl
        os._exit(0)
    _own = written(extra) if extra else None
    while True:
        signal.pause()


def main(argv: list[str]) -> None:
    mib, children = int(argv[0]), int(argv[1])
    extra = int(argv[2]) if len(argv) > 2 else 0
    _held = written(mib)
    master = os.getpid()
    for _ in range(children):
        if os.fork() == 0:
            child(master, extra)
    while True:
        signal.pause()


if __name__ == "__main__":
    main(sys.argv[1:])
