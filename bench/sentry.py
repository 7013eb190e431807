"""A stand-in for today's Sentry in the benchmark's mixed shape: `python bench/sentry.py run web
--workers=N` and `... run taskworker --concurrency=N`, named `sentry` as Sentry's console script
is (`python .../bin/sentry run ...`), presenting the evidence the listener recognises them by
(listener/core/servers.py), at the cost of idle processes:

- `run web`: Sentry's embedded Granian. The name says nothing (`sentry run web` was uWSGI before
  2026); the master maps Granian's native module `_granian` (imported, never started) and forks
  N workers, as Granian does with the fork start method: each a copy of the master, its
  command line and mappings included.
- `run taskworker`: taskbroker-client's TaskWorker, recognised by `sentry run taskworker`; its
  N children are started by multiprocessing's spawn (`... spawn_main(...) --multiprocessing-fork`,
  fresh interpreters as taskbroker-client's default), which also starts the resource tracker,
  the helper that is never judged.

Every process then waits for a signal: supervisord's stop (stopasgroup) ends the tree.
docs/findings/granian-and-taskworker.md has what the real servers show."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys


def idle() -> None:
    while True:
        signal.pause()


def web(workers: int) -> None:
    import granian._granian  # noqa: F401  the native module, Granian's evidence in /proc/PID/maps

    for _ in range(workers):
        if os.fork() == 0:
            idle()
    idle()


def taskworker(concurrency: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=idle, daemon=True) for _ in range(concurrency)]
    for child in children:
        child.start()
    idle()


def main(argv: list[str]) -> None:
    if argv[:1] != ["run"] or len(argv) != 3 or "=" not in argv[2]:
        sys.exit("usage: sentry.py run web --workers=N | run taskworker --concurrency=N")
    count = int(argv[2].partition("=")[2])
    if argv[1] == "web":
        web(count)
    elif argv[1] == "taskworker":
        taskworker(count)
    else:
        sys.exit(f"sentry.py: no stand-in for `run {argv[1]}`")


if __name__ == "__main__":
    main(sys.argv[1:])
