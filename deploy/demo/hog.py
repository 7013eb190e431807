"""A stand-in for a Sentry process: really allocates memory, optionally forks children.

--mb N              touch N MiB in this process at start
--mb-list A,B,C --index I   touch the I-th size of the list (for numprocs groups)
--children K        fork K children (a prefork master); they inherit --shared-mb copy-on-write
--shared-mb S       touch S MiB before forking, shared with every child until written
--child-mb M        each child touches M MiB of its own
--grow-child I --grow-mb G   child I touches G MiB more after start
--leak-mb-per-sec L grow by L MiB every second (a leak), in the master or, with --children,
                    in child --grow-child only
--leak-cap-mb C     stop leaking once C MiB have leaked (the demo's leaks stay bounded when
                    nothing restarts them)
--churn             fork a short-lived child again and again (children come and go)
--ignore-term       ignore SIGTERM (a slow stop: supervisord escalates to SIGKILL)
--child-drain S     a child given SIGHUP exits S seconds later (a worker finishing its request);
                    negative: it never does
--ready-file PATH   write the pid list there once everything is allocated
"""

import argparse
import contextlib
import os
import signal
import sys
import time

MiB = 1024 * 1024


def touch(mb: float) -> bytes:
    return b"\x01" * int(mb * MiB)  # written, so the pages are really resident


def drain_then_exit(seconds: float):  # type: ignore[no-untyped-def]
    def handler(signum, frame):  # type: ignore[no-untyped-def]
        if seconds >= 0:
            signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    return handler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=float, default=0)
    p.add_argument("--mb-list")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--children", type=int, default=0)
    p.add_argument("--shared-mb", type=float, default=0)
    p.add_argument("--child-mb", type=float, default=0)
    p.add_argument("--grow-child", type=int, default=-1)
    p.add_argument("--grow-mb", type=float, default=0)
    p.add_argument("--leak-mb-per-sec", type=float, default=0)
    p.add_argument("--leak-cap-mb", type=float, default=float("inf"))
    p.add_argument("--churn", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--child-drain", type=float)
    p.add_argument("--ready-file")
    args = p.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mb = args.mb
    if args.mb_list:
        mb = float(args.mb_list.split(",")[args.index])
    own = touch(mb)
    shared = touch(args.shared_mb)
    kids = []
    for i in range(args.children):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if args.child_drain is not None:
                signal.signal(signal.SIGHUP, drain_then_exit(args.child_drain))
            mine = [touch(args.child_mb + (args.grow_mb if i == args.grow_child else 0))]
            leak = args.leak_mb_per_sec if i == args.grow_child else 0
            leaked = 0.0
            while os.getppid() != 1:  # exit with the master
                time.sleep(0.5)
                if leak and leaked < args.leak_cap_mb:
                    more = min(leak / 2, args.leak_cap_mb - leaked)
                    mine.append(touch(more))
                    leaked += more
            os._exit(0)
        kids.append(pid)
    if not args.ignore_term:
        def stop(signum, frame):
            for kid in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGTERM)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(" ".join(map(str, [os.getpid(), *kids])))
        os.replace(args.ready_file + ".tmp", args.ready_file)
    print(f"hog {os.getpid()} holds {mb} MiB, {len(kids)} children", flush=True)
    while args.churn:
        pid = os.fork()
        if pid == 0:
            time.sleep(0.002)
            os._exit(0)
        os.waitpid(pid, 0)
    leaked, total = [own, shared], 0.0
    while True:
        leaking = args.leak_mb_per_sec and not kids and total < args.leak_cap_mb
        time.sleep(1 if leaking else 3600)
        if leaking:
            more = min(args.leak_mb_per_sec, args.leak_cap_mb - total)
            leaked.append(touch(more))
            total += more


if __name__ == "__main__":
    main()
