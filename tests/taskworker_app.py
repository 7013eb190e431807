"""A taskbroker-client app for the taskworker tests, and `sentry run taskworker` in miniature.

`main()` is what tests/integration/test_taskworker.py's stand-in `sentry` script runs: it takes
`run taskworker` with the options self-hosted passes and starts a real taskbroker-client
TaskWorker in push mode (tasks arrive through its gRPC endpoint from tests.taskbroker_standin),
with spawned children and multiprocessing's resource tracker, as Sentry's does.

Tasks log what they do, one line each, to $TASKWORKER_TEST_DIR/tasks.log:
`<epoch> <pid> start|end <task> <tag>`. `hold` keeps its task in flight (and optionally MiB of
memory in its child) until the test creates $TASKWORKER_TEST_DIR/release-<tag>: the test, not
the clock, decides when a task ends. Its memory is freed when it returns."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from taskbroker_client.app import TaskbrokerApp

NAMESPACE = "memtest"
APP_NAME = "memwatch-test"
DIR = Path(os.environ.get("TASKWORKER_TEST_DIR", "/tmp"))

# children log too (spawned children do not inherit the parent's logging): "sigterm_received"
# with the child's pid tells the test when a child was asked to stop
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(created).3f %(process)d %(levelname)s %(name)s %(message)s")

app = TaskbrokerApp(name=APP_NAME, producer_factory=lambda topic: None)  # nothing is produced
app.set_modules([__name__])
namespace = app.create_namespace(NAMESPACE, processing_deadline_duration=60)


def _log(event: str, task: str, tag: str) -> None:
    with open(DIR / "tasks.log", "a") as f:
        f.write(f"{time.time():.3f} {os.getpid()} {event} {task} {tag}\n")


@namespace.register(name="hold")
def hold(tag: str, mb: int = 0, seconds: float = 120.0) -> None:
    """In flight until released (or `seconds`), with `mb` MiB touched in this child meanwhile."""
    _log("start", "hold", tag)
    held = bytearray(mb * 2**20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    _log("grown", "hold", tag)
    end = time.monotonic() + seconds
    while not (DIR / f"release-{tag}").exists() and time.monotonic() < end:
        time.sleep(0.05)
    del held
    _log("end", "hold", tag)


@namespace.register(name="mark")
def mark(tag: str) -> None:
    _log("start", "mark", tag)
    _log("end", "mark", tag)


# `sentry` for the tests: `sentry run taskworker ...` runs main() with the real TaskWorker
STANDIN = """\
#!{py}
# Stand-in for `sentry` (tests only): `sentry run taskworker ...` starts a real TaskWorker
import sys
sys.path.insert(0, {root!r})
from tests.taskworker_app import main
if __name__ == "__main__":  # spawned children import this script again, as __mp_main__
    sys.exit(main(sys.argv[1:]))
"""


def install_sentry(bin_dir: Path, python: str, root: Path) -> Path:
    """The stand-in `sentry` script in `bin_dir`, run by `python` from checkout `root`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    sentry = bin_dir / "sentry"
    sentry.write_text(STANDIN.format(py=python, root=str(root)))
    sentry.chmod(0o755)
    return sentry


def main(argv: list[str]) -> int:
    """`sentry run taskworker [options]`: a TaskWorker in push mode, as Sentry starts one."""
    parser = argparse.ArgumentParser(prog="sentry")
    parser.add_argument("run", choices=["run"])
    parser.add_argument("service", choices=["taskworker"])
    parser.add_argument("--rpc-host", required=True)  # the broker: results go there
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-child-task-count", type=int, default=None)
    parser.add_argument("--grpc-port", type=int, default=50052)  # where tasks are pushed
    parser.add_argument("--process-type", default="spawn")
    args = parser.parse_args(argv)
    common = dict(app_module=f"{__name__}:app", concurrency=args.concurrency,
                  max_child_task_count=args.max_child_task_count, grpc_port=args.grpc_port,
                  process_type=args.process_type)
    from taskbroker_client.worker import worker
    if hasattr(worker, "PushTaskWorker"):  # 0.20.x (the newer generation, see the findings)
        push = worker.PushTaskWorker(broker_service=args.rpc_host, drain_file_path=None, **common)
        return int(push.start())
    # 26.5.0 (April 2026): push mode is a flag of TaskWorker
    old = worker.TaskWorker(broker_hosts=[args.rpc_host], push_mode=True, **common)
    return int(old.start())
