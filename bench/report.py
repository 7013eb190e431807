"""What a run leaves: its figures as data (JSON), the targets judged on them, and a short printed
summary. What the sections measure and what the figures mean is written once, by hand, in
bench/RESULTS.md; this module only formats numbers."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import pssreport
from bench.latency import LatencyRun
from bench.measure import Summary, ms, ratio, span, us
from bench.pss import PssRun
from bench.scrape import ScrapeLatencyRun, ScrapeRow
from bench.soak import SoakRun
from bench.supcost import RESYNC, TICK_PERIOD, CostRow, SupervisordCost
from bench.ticks import RULES, FloorRow, TickRow
from listener.tools.table import table
from tests.harness import ROOT

MiB = 2**20
OURS_FLAGS = {"none": "-a 100GB", "sum": "--children sum -a 100GB", "each": "--children each -a 100GB",
              "auto": " ".join(RULES["auto"])}  # a rule per group of the mixed shape


@dataclass
class Results:
    command: str
    quick: bool
    starts: dict[str, float] = field(default_factory=dict)  # "shape N" -> seconds to all RUNNING
    ticks: list[TickRow] = field(default_factory=list)
    floors: list[FloorRow] = field(default_factory=list)
    latency: list[LatencyRun] = field(default_factory=list)
    scrapes: list[ScrapeRow] = field(default_factory=list)
    scrape_latency: list[ScrapeLatencyRun] = field(default_factory=list)
    soak: SoakRun | None = None
    supcost: SupervisordCost | None = None
    pss: PssRun | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    commit: str = field(default_factory=lambda: commit())
    machine: str = field(default_factory=lambda: machine())


@dataclass(frozen=True)
class Target:
    target: str
    measured: str
    met: bool | None  # None: not judged at this size (a quick run)


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    versions = ", ".join(f"{p} {_version(p)}" for p in ("supervisor", "superlance", "psutil",
                                                         "prometheus_client"))
    return (f"{model}, {os.cpu_count()} cores, {total / 2**30:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {versions}")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "listener")
    return head + (" + uncommitted changes in listener/" if dirty else "")


def write_json(results: Results, path: Path) -> None:
    """Every figure of the run, and the targets' verdicts, as one JSON document."""
    data: dict[str, Any] = dataclasses.asdict(results)
    data["targets"] = [dataclasses.asdict(t) for t in targets(results)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


# --- targets ---


def _tick(r: Results, n: int, shape: str, mode: str) -> TickRow | None:
    return next((t for t in r.ticks if (t.n, t.shape, t.mode) == (n, shape, mode)), None)


def targets(r: Results) -> list[Target]:
    out = tick_targets(r)
    if r.soak:
        growth = r.soak.rss_end - r.soak.rss_warm
        out.append(Target(f"RSS growth < 2 MB over the soak ({r.soak.events} TICKs)",
                          f"{growth / MiB:+.2f} MiB after warm-up", growth < 2e6))
    for run in r.latency:
        out.append(Target(f"event-answer p99 < 5 ms, {run.phase}", f"{ms(run.answers.p99)} ms",
                          run.answers.p99 < 0.005))
    out += scrape_targets(r)
    if r.pss:
        out += [Target(*t) for t in pssreport.targets(r.pss)]
    if r.supcost:
        out += supcost_targets(r.supcost)
    return out


def tick_targets(r: Results) -> list[Target]:
    out = []
    for shape, mode, want in (("flat", "none", 30), ("tree", "sum", 50), ("tree", "each", 50),
                              ("mixed", "auto", 50)):
        t = _tick(r, 50, shape, mode)
        if t and t.memmon:
            speed = t.memmon.median / t.ours.median
            out.append(Target(f"tick at 50 programs, {shape} `{OURS_FLAGS[mode]}`: ≥{want}x faster "
                              "than memmon", f"{speed:.0f}x ({ms(t.ours.median)} ms vs "
                              f"{ms(t.memmon.median)} ms)", speed >= want))
    if r.floors:
        worst = max(r.floors, key=lambda f: f.ours.median / f.floor.median)
        x = worst.ours.median / worst.floor.median
        out.append(Target("sampling step within 3x of the raw /proc floor",
                          f"worst {x:.2f}x ({worst.shape} N={worst.n} --children {worst.mode})",
                          x <= 3))
    for shape, mode in (("flat", "none"), ("tree", "sum"), ("tree", "each")):
        n = 1000 if shape == "flat" else 200  # 1000 processes: 200 masters with 4 children each
        t = _tick(r, n, shape, mode)
        if t:  # listing every tick; section 7 has the same with the event-kept table
            out.append(Target(f"total tick at 1000 processes < 100 ms ({shape} N={n} "
                              f"`{OURS_FLAGS[mode]}`)", f"{ms(t.ours.median)} ms, of which "
                              f"supervisord's answer {ms(t.ours_list.median - t.parse.median)} ms",
                              t.ours.median < 0.1))
    return out


def scrape_targets(r: Results) -> list[Target]:
    out = []
    for s in r.scrapes:
        if s.listener_rss is not None:
            out.append(Target(f"listener RSS < 40 MB at {s.processes} processes",
                              f"{s.listener_rss / MiB:.1f} MiB",
                              s.listener_rss < 40e6 if s.processes >= 1000 else None))
        if s.processes >= 1000:
            out.append(Target(f"/metrics with {s.processes} processes < 100 ms "
                              f"({s.source.split(',')[0]})",
                              f"{ms(s.http.median)} ms median", s.http.median < 0.1))
    for run in r.scrape_latency:
        delay = run.scraped.p50 - run.quiet.p50
        out.append(Target(f"scraping delays a {run.event} answer by a few ms at most (< 5 ms, median, "
                          f"{run.processes} processes)", f"{ms(delay)} ms", delay < 0.005))
    return out


def supcost_targets(sc: SupervisordCost) -> list[Target]:
    out = []
    table_rows = sorted((c for c in sc.costs if c.client == "table"), key=lambda c: c.n)
    if table_rows:
        t = table_rows[-1]
        out.append(Target(f"whole tick at 1000 processes with the event-kept table < 60 ms "
                          f"(N={t.n})", f"{ms(t.tick.median)} ms",
                          t.tick.median < 0.06 if t.n == 1000 else None))
    if sc.burst:
        state = sc.burst.rows[0]
        out.append(Target(f"event-answer p99 < 5 ms, burst of {state.answers.n} PROCESS_STATE "
                          f"events ({sc.burst.n} processes)", f"{ms(state.answers.p99)} ms",
                          state.answers.p99 < 0.005))
    return out


# --- the printed summary: one plain table per section, the JSON has the rest ---


def render(r: Results) -> str:
    verdict = {True: "met", False: "MISSED", None: "n/a"}
    out = [f"Benchmarks{' (quick run)' if r.quick else ''}: `{r.command}`, {r.seconds / 60:.1f} min, "
           f"{r.when}, commit {r.commit}\n{r.machine}\n",
           "Targets\n" + table([["target", "measured", "verdict"]]
                               + [[t.target, t.measured, verdict[t.met]] for t in targets(r)])]
    for title, rows in sections(r):
        if len(rows) > 1:
            out.append(f"{title}\n" + table(rows))
    out += [f"note: {n}\n" for n in [*r.notes, *(r.supcost.notes if r.supcost else [])]]
    return "\n".join(out)


def sections(r: Results) -> list[tuple[str, list[list[str]]]]:
    """(title, rows with a header row first) for every section the run measured."""
    found = [("1. per-tick cost, ours vs memmon (ms, median (min–max))", tick_rows(r.ticks)),
             ("2. sampling step vs raw /proc reads (µs)",
              [["N", "shape", "children", "pids", "raw floor", "ours", "ours/floor"]]
              + [[str(f.n), f.shape, f.mode, str(f.pids), span(f.floor, us), span(f.ours, us),
                  ratio(f.ours.median, f.floor.median)] for f in r.floors]),
             ("4. event-answer latency (ms)",
              [["phase", "events", "in flight", "stops", "p50", "p99", "max"]]
              + [[x.phase, str(x.answers.n), str(x.in_flight), str(x.restarts), ms(x.answers.p50),
                  ms(x.answers.p99), ms(x.answers.max)] for x in r.latency]),
             ("5. GET /metrics (ms)",
              [["source", "series", "KiB", "GET /metrics", "listener RSS"]]
              + [[s.source, str(s.series), f"{s.size / 1024:.0f}", span(s.http),
                  f"{s.listener_rss / MiB:.1f} MiB" if s.listener_rss else ""] for s in r.scrapes]),
             ("5. event answers while /metrics is scraped (ms)",
              [["event", "N", "quiet p50", "quiet p99", "scraped p50", "scraped p99", "scrapes"]]
              + [[x.event, str(x.processes), ms(x.quiet.p50), ms(x.quiet.p99), ms(x.scraped.p50),
                  ms(x.scraped.p99), str(x.scrapes)] for x in r.scrape_latency])]
    if r.pss:
        found[2:2] = pssreport.sections(r.pss)
    if r.soak:
        s = r.soak
        found.append((f"6. soak: {s.events} TICKs, {s.processes} processes (stand-in supervisord)",
                      [["RSS first", "after warm-up", "end", "max", "CPU per tick", "wall per tick"],
                       [*(f"{v / MiB:.1f} MiB" for v in (s.rss_first, s.rss_warm, s.rss_end,
                                                         s.rss_max)),
                        f"{s.cpu_per_tick * 1000:.2f} ms", f"{s.wall_per_tick * 1000:.2f} ms"]]))
    if r.supcost:
        found += supcost_sections(r.supcost)
    return found


def tick_rows(ticks: list[TickRow]) -> list[list[str]]:
    rows = [["N", "shape", "our flags", "tick", "list", "ours alone", "memmon flags", "memmon tick",
             "speedup"]]
    for t in ticks:
        m = t.memmon
        rows.append([str(t.n), t.shape, OURS_FLAGS[t.mode], span(t.ours), ms(t.ours_list.median),
                     ms(t.ours_rest.median + t.parse.median), t.memmon_flags,
                     f"{span(m)} n={m.n}" if m else "not run",
                     ratio(m.median, t.ours.median) if m else ""])
    return rows


def _cost(sc: SupervisordCost, n: int, client: str) -> CostRow | None:
    return next((c for c in sc.costs if (c.n, c.client) == (n, client)), None)


def _cpu(s: Summary) -> str:
    # above idle can dip just below nothing: no "-0.000"
    return ms(max(0.0, s.median))


def supcost_sections(sc: SupervisordCost) -> list[tuple[str, list[list[str]]]]:
    costs = [["N", "client", "RPC/tick", "supervisord CPU/tick", "above idle (schedstat)",
              "amortized", "tick (ms)"]]
    for c in sc.costs:
        listing = _cost(sc, c.n, "listing")
        # the table's ticks plus the default --resync: one listing every RESYNC seconds
        amortized = (ms(max(0.0, c.oncpu_above_idle.median + listing.oncpu_above_idle.median
                                * TICK_PERIOD / RESYNC)) if c.client == "table" and listing else "")
        costs.append([str(c.n), c.client, f"{c.rpc_per_tick:.2f}", _cpu(c.cpu),
                      _cpu(c.oncpu_above_idle), amortized, span(c.tick)])
    idle = [["N", f"CPU per {TICK_PERIOD:g} s", "schedstat", "share of a core"]] + [
        [str(i.n), ms(i.per_period.median), ms(i.oncpu_per_period.median),
         f"{i.oncpu_rate * 100:.2f}%"] for i in sc.idle]
    found = [("7. supervisord's CPU per tick (ms)", costs), ("7. supervisord idle (ms)", idle)]
    if sc.burst:
        b = sc.burst
        found.append((f"7. event answers, burst of state events, {b.n} processes (ms); counted "
                      f"{b.events_counted}, resyncs {len(b.resyncs)}",
                      [["events", "n", "p50", "p99", "max", "supervisord CPU/event"]]
                      + [[a.what, str(a.answers.n), ms(a.answers.p50), ms(a.answers.p99),
                          ms(a.answers.max), ms(max(0.0, a.supervisord_oncpu))] for a in b.rows]))
    found.append(("7. boot burst through supervisord's event buffer",
                  [["buffer_size", "N", "boot (s)", "through (s)", "answered", "discarded",
                    "listener restarts"]]
                  + [[str(b.buffer_size), str(b.n), f"{b.boot:.1f}", f"{b.drained:.1f}",
                      str(b.received), str(b.discarded), str(b.listener_restarts)]
                     for b in sc.boot]))
    return found
