"""`python -m bench`: every section in one run, on this machine; writes the figures as JSON and
prints a summary with the targets' verdicts."""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import http_load, latency, oomcost, pss, scrape, soak, supcost, ticks
from bench.report import Results, render, write_json
from bench.standin import (
    FLAT_COMM,
    FLAT_COMMAND,
    MIXED_COMMANDS,
    TREE_CHILDREN,
    TREE_COMM,
    TREE_COMMAND,
    mixed_counts,
    wait_mixed,
)
from listener import log as logsetup
from tests.harness import ROOT, ListenerProcess, Supervisord, free_port, program

SHAPES = {"flat": ("none",), "tree": ("sum", "each"), "mixed": ("auto",)}
# Section numbers as bench/RESULTS.md uses them.
SECTIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="a short run (a few minutes): N = 10 and 50 (section 7: 50 and 200), fewer "
                   "repetitions and events")
    p.add_argument("--sizes", help="comma-separated N (default 10,50,200,1000; quick 10,50; "
                   "section 7: 50,200,1000; quick 50,200)")
    p.add_argument("--reps", type=int, help="repetitions of our tick (default 15; quick 5)")
    p.add_argument("--memmon-reps", type=int, help="repetitions of memmon's tick (default 5; quick 3)")
    p.add_argument("--latency-events", type=int, help="events per latency phase (default 2000; quick 300)")
    p.add_argument("--soak-events", type=int, help="TICKs in the soak (default 100000; quick 1000)")
    p.add_argument("--cost-reps", type=int,
                   help="measurements of supervisord's CPU per client and N in section 7 (default 5; "
                   "quick 3)")
    p.add_argument("--sections", default=",".join(map(str, SECTIONS)),
                   help="which sections to run (default all: %(default)s)")
    p.add_argument("--shapes", default="flat,tree,mixed",
                   help="process shapes for sections 1 and 2 (default all: flat, tree, mixed)")
    p.add_argument("--no-memmon", action="store_true",
                   help="skip memmon in sections 1, 3 and 7 (for before/after runs of our own code)")
    p.add_argument("--out", type=Path,
                   help="the figures as JSON (default bench/results/last.json; quick: "
                   "bench/results/last-quick.json)")
    args = p.parse_args(argv)
    q = args.quick
    args.cost_sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
                       else [50, 200] if q else [50, 200, 1000])
    args.sizes = [int(s) for s in (args.sizes or ("10,50" if q else "10,50,200,1000")).split(",")]
    args.reps = args.reps or (5 if q else 15)
    args.memmon_reps = args.memmon_reps or (3 if q else 5)
    args.latency_events = args.latency_events or (300 if q else 2000)
    args.soak_events = args.soak_events or (1000 if q else 100_000)
    args.sections = {int(s) for s in args.sections.split(",")}
    if args.sections - set(SECTIONS):
        p.error(f"--sections: no section {sorted(args.sections - set(SECTIONS))}; "
                f"there are {', '.join(map(str, SECTIONS))}")
    args.shapes = [s for s in SHAPES if s in args.shapes.split(",")]
    args.out = args.out or ROOT / "bench" / "results" / ("last-quick.json" if q else "last.json")
    return args


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # the listener's loggers as in production (info, text), into a buffer nobody reads
    logsetup.setup("INFO", "text", io.StringIO())
    logging.getLogger("memwatch").setLevel(logging.INFO)
    results = Results(command=" ".join(["python -m bench", *(argv or sys.argv[1:])]),
                      quick=args.quick)
    reps = ticks.Reps(ours=args.reps, memmon=args.memmon_reps,
                      memmon_budget=5.0 if args.quick else 60.0)
    began = time.monotonic()
    if args.sections & {1, 2, 5}:
        for shape in args.shapes:
            for n in args.sizes:
                per_size(args, results, reps, shape, SHAPES[shape], n)
    if 3 in args.sections:
        results.pss = pss.run(args.quick, say, memmon=not args.no_memmon)
    if 4 in args.sections:
        n = 10
        say(f"section 4: event-answer latency, {n} programs + 1 slow, {args.latency_events} events")
        sv = Supervisord(latency.sections(n), loglevel="warn", all_running=True)
        try:
            results.latency = latency.run(sv, n, args.latency_events)
        finally:
            sv.stop()
    if 5 in args.sections:
        say("section 5: /metrics with Stats filled directly (1000 judgements)")
        results.scrapes.append(scrape.synthetic(1000, max(20, args.reps * 4)))
        say("section 5: event answers while /metrics is scraped, 1000 processes")
        results.scrape_latency = scrape.latency_under_scrapes(1000, max(50, args.latency_events // 4))
    if 6 in args.sections:
        say(f"section 6: soak, {args.soak_events} TICKs, 200 processes")
        sv = Supervisord(program("flat", FLAT_COMMAND, 200), loglevel="warn", all_running=True,
                        comm=FLAT_COMM)
        try:
            results.soak = soak.run(sv, args.soak_events, args.reps)
        finally:
            sv.stop()
    if 7 in args.sections:
        results.supcost = supcost.run(args.cost_sizes, supcost.Plan.of(args.quick, args.cost_reps),
                                      say, memmon=not args.no_memmon)
    if 8 in args.sections:
        say("section 8: event answers under 50 clients on /, /status and /metrics, 300 processes")
        results.notes += http_load.notes(http_load.run(seconds=3.0 if args.quick else 10.0))
        say("section 9: OOM kills watched, a quiet tick's cost")
        results.notes.extend(f"section 9: {line}" for line in oomcost.run())
    results.seconds = time.monotonic() - began
    write_json(results, args.out)
    print(render(results))
    say(f"figures written to {args.out}")
    return 0


def per_size(args: argparse.Namespace, results: Results, reps: ticks.Reps, shape: str,
             modes: Sequence[str], n: int) -> None:
    command, children, comm = ((FLAT_COMMAND, 0, FLAT_COMM) if shape == "flat"
                               else (TREE_COMMAND, TREE_CHILDREN, TREE_COMM))
    sections = program(shape, command, n)
    if shape == "mixed":  # a fifth each: uWSGI-, Celery-like, Granian, taskworker, plain trees
        counts = mixed_counts(n)
        sections = "".join(program(g, MIXED_COMMANDS[g], counts[g]) for g in MIXED_COMMANDS)
        children, comm = 0, ""  # not one shape: wait_mixed() below says when all are ready
    say(f"{shape} N={n}: starting supervisord")
    try:
        sv = Supervisord(sections, loglevel="warn", all_running=True,
                        tree_children=children, comm=comm)
    except AssertionError as exc:
        results.notes.append(f"{shape} N={n}: supervisord did not start every program: {exc}")
        return
    if shape == "mixed":
        try:
            wait_mixed(sv.client.processes)
        except AssertionError as exc:
            sv.stop()
            results.notes.append(f"{shape} N={n}: the stand-ins are not as they should be: {exc}")
            return
    results.starts[f"{shape} {n}"] = sv.start_seconds
    try:
        processes = sv.client.processes()
        if 1 in args.sections:
            memmon, flags = None, ""
            parse = ticks.measure_parse(str(sv.socket), reps)
            for mode in modes:
                say(f"{shape} N={n} --children {mode}: our tick")
                ours, listed, rest = ticks.measure_ours(sv.url, mode, reps)
                if memmon is None and not args.no_memmon:
                    say(f"{shape} N={n}: memmon {'-c ' if shape != 'flat' else ''}tick")
                    memmon, flags = ticks.measure_memmon(sv.url, ticks.MEMMON_CUMULATIVE[mode], reps)
                results.ticks.append(ticks.TickRow(n, shape, mode, ours, listed, rest, parse,
                                                   memmon, flags))
        if 2 in args.sections:
            for mode in modes:
                say(f"{shape} N={n} --children {mode}: floor")
                results.floors.append(ticks.measure_floor(processes, n, shape, mode, reps))
        if 5 in args.sections and shape == "flat" and n == max(args.sizes):
            say(f"{shape} N={n}: real listener, /metrics and RSS")
            results.scrapes.append(real_scrape(sv, n, args.reps))
    finally:
        sv.stop()


def real_scrape(sv: Supervisord, n: int, reps: int) -> scrape.ScrapeRow:
    port = free_port()
    listener = ListenerProcess(["-a", "100GB"], sv.url, metrics_port=port)
    try:
        for _ in range(5):
            listener.tick()
        http, body = scrape.scrape(port, max(20, reps * 4))
        rss = listener.rss()
    finally:
        listener.close()
    row = scrape.ScrapeRow(f"real listener over a real supervisord, {n} processes", n,
                           scrape.series(body), len(body), http, listener_rss=rss)
    return row
