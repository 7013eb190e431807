"""The report: Markdown tables (readable as plain text too), printed and written to a file."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

from bench.latency import LatencyRun
from bench.measure import Summary, ms, percentile, ratio, span, us
from bench.scrape import ScrapeLatencyRun, ScrapeRow
from bench.soak import SoakRun
from bench.supcost import RESYNC, TICK_PERIOD, CostRow, SupervisordCost
from bench.ticks import FloorRow, MeasureRow, TickRow
from tests.harness import ROOT

MiB = 2**20
NOTES = ROOT / "bench" / "NOTES.md"
OURS_FLAGS = {"none": "-a 100GB", "sum": "--children sum -a 100GB", "each": "--children each -a 100GB",
              "auto": "-g web=100GB,children=auto -g worker=100GB,children=auto -g plain=100GB"}


@dataclass
class Results:
    command: str
    quick: bool
    starts: dict[tuple[str, int], float] = field(default_factory=dict)
    ticks: list[TickRow] = field(default_factory=list)
    floors: list[FloorRow] = field(default_factory=list)
    measures: list[MeasureRow] = field(default_factory=list)
    latency: list[LatencyRun] = field(default_factory=list)
    scrapes: list[ScrapeRow] = field(default_factory=list)
    scrape_latency: list[ScrapeLatencyRun] = field(default_factory=list)
    soak: SoakRun | None = None
    supcost: SupervisordCost | None = None  # section 7 (absent from older pickles: the default)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    when: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    commit: str = field(default_factory=lambda: commit())
    machine: str = field(default_factory=lambda: machine())


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


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


def render(r: Results) -> str:
    out = [f"# Benchmarks{' (quick run)' if r.quick else ''}\n",
           f"Command: `{r.command}` (from the repository root; {r.seconds / 60:.1f} minutes). "
           f"Run {r.when} at commit {r.commit}.\n",
           f"Machine: {r.machine}.\n",
           "Times are medians of several repetitions, shown as `median (min–max)`; "
           "`n` is the number of repetitions. Stand-ins: `sleep infinity` (flat) and "
           "`sh -c 'sleep infinity & ... & wait'` with 4 children (trees), under a real supervisord "
           "with one program of N processes. Mixed: the same trees under bash, one listener "
           "with a rule per group and `children = auto`; a third of the N masters read as uWSGI "
           "(`exec -a uwsgi`, judged per worker), a third as Celery workers, a third plain "
           "(the pid alone); memmon gets `-c -a 100GB`.\n",
           targets(r)]
    if r.ticks:
        out.append(section_ticks(r))
    if r.floors:
        out.append(section_floors(r))
    if r.measures:
        out.append(section_measures(r))
    if r.latency:
        out.append(section_latency(r))
    if r.scrapes:
        out.append(section_scrapes(r))
    if r.soak:
        out.append(section_soak(r.soak))
    if r.supcost:
        out.append(section_supcost(r.supcost))
    if r.notes:
        out.append("## Run notes\n\n" + "".join(f"- {n}\n" for n in r.notes))
    out.append("Notes on these figures (what was missed and why, what changed): "
               "[bench/NOTES.md](NOTES.md).\n")
    return "\n".join(out)


# --- targets ---


def _tick(r: Results, n: int, shape: str, mode: str) -> TickRow | None:
    return next((t for t in r.ticks if (t.n, t.shape, t.mode) == (n, shape, mode)), None)


def targets(r: Results) -> str:
    rows: list[list[str]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append([target, measured, "n/a" if met is None else ("met" if met else "**missed**")])

    for shape, mode, want in (("flat", "none", 30), ("tree", "sum", 50), ("tree", "each", 50),
                              ("mixed", "auto", 50)):
        t = _tick(r, 50, shape, mode)
        if t and t.memmon:
            speed = t.memmon.median / t.ours.median
            add(f"tick at 50 programs, {shape} `{OURS_FLAGS[mode]}`: ≥{want}x faster than memmon",
                f"{speed:.0f}x ({ms(t.ours.median)} ms vs {ms(t.memmon.median)} ms)", speed >= want)
    if r.floors:
        worst = max(r.floors, key=lambda f: f.ours.median / f.floor.median)
        x = worst.ours.median / worst.floor.median
        add("sampling step within 3x of the raw /proc floor",
            f"worst {x:.2f}x ({worst.shape} N={worst.n} --children {worst.mode}); "
            f"best {min(f.ours.median / f.floor.median for f in r.floors):.2f}x", x <= 3)
    for shape, mode in (("flat", "none"), ("tree", "sum"), ("tree", "each")):
        n = 1000 if shape == "flat" else 200  # 1000 processes: 200 masters with 4 children each
        t = _tick(r, n, shape, mode)
        if t:
            own = t.ours_rest.median + t.parse.median
            add(f"total tick at 1000 processes < 100 ms ({shape} N={n} `{OURS_FLAGS[mode]}`)",
                f"{ms(t.ours.median)} ms, of which supervisord's answer "
                f"{ms(t.ours_list.median - t.parse.median)} ms; without it {ms(own)} ms",
                t.ours.median < 0.1)
    for s in r.scrapes:
        if s.listener_rss is not None:
            add(f"listener RSS < 40 MB at {s.processes} processes", mib(s.listener_rss),
                s.listener_rss < 40e6 if s.processes >= 1000 else None)
    if r.soak:
        growth = r.soak.rss_end - r.soak.rss_warm
        add(f"RSS growth < 2 MB over the soak ({r.soak.events} TICKs)",
            f"{growth / MiB:+.2f} MiB after warm-up ({(r.soak.rss_end - r.soak.rss_first) / MiB:+.2f} MiB "
            "from the first tick)", growth < 2e6)
    for run in r.latency:
        p99 = percentile(run.times, 99)
        add(f"event-answer p99 < 5 ms, {run.phase}", f"{ms(p99)} ms", p99 < 0.005)
    for s in r.scrapes:
        if s.processes >= 1000:
            add(f"/metrics with {s.processes} processes < 100 ms ({s.source.split(',')[0]})",
                f"{ms(s.http.median)} ms median, {ms(s.http.max)} ms max", s.http.median < 0.1)
    for run in r.scrape_latency:
        delay = percentile(run.scraped, 50) - percentile(run.quiet, 50)
        add(f"scraping delays a {run.event} answer by a few ms at most (median, {run.processes} "
            "processes)", f"{ms(delay)} ms ({ms(percentile(run.quiet, 50))} → "
            f"{ms(percentile(run.scraped, 50))} ms)", delay < 0.005)
    if r.supcost:
        supcost_targets(r.supcost, add)
    return "## Targets\n\n" + table(["target", "measured", "verdict"], rows)


# --- sections ---


def section_ticks(r: Results) -> str:
    rows = []
    for t in r.ticks:
        m = t.memmon
        own = t.ours_rest.median + t.parse.median
        rows.append([str(t.n), t.shape, f"`{OURS_FLAGS[t.mode]}`", f"{span(t.ours)} n={t.ours.n}",
                     ms(t.ours_list.median), ms(t.parse.median), ms(t.ours_rest.median), ms(own),
                     f"`{t.memmon_flags}`", f"{span(m)} n={m.n}" if m else "not run",
                     f"{t.ours.median / m.median:.4f}" if m else "", ratio(m.median, t.ours.median) if m
                     else ""])
    starts = ", ".join(f"{s} N={n}: {sec:.0f} s" for (s, n), sec in sorted(r.starts.items()))
    return ("## 1. Per-tick cost: ours vs memmon (ms)\n\n"
            "One full check of N supervised programs (list over XML-RPC, sample, decide; limits so "
            "high that nothing is restarted), in process, through the same supervisord and the "
            "same TICK event: our `Daemon.handle()` behind the protocol reader, and superlance's "
            "`Memmon.runforever(test=True)` reading one TICK. Of each of our ticks: *list*, the "
            "getAllProcessInfo round trip (mostly waiting for supervisord), of which *parse* is our "
            "client's share (timed apart on supervisord's answer); *rest* = tick − list, tick by "
            "tick (sampling, policy, stats, protocol). *ours alone* = parse + rest: the tick "
            "without supervisord's time.\n\n"
            + table(["N", "shape", "ours", "ours tick", "list", "parse", "rest", "ours alone",
                     "memmon", "memmon tick", "ours/memmon", "speedup"], rows)
            + f"\nsupervisord start-up to every program RUNNING: {starts}.\n")


def section_floors(r: Results) -> str:
    rows = [[str(f.n), f.shape, f.mode, str(f.pids), span(f.floor, us), span(f.ours, us),
             ratio(f.ours.median, f.floor.median)] for f in r.floors]
    return ("## 2. The floor: sampling step vs raw /proc reads (µs)\n\n"
            "Floor: a bare Python loop reading `/proc/PID/statm` for the same pids; for trees it "
            "also lists `/proc` and reads every `/proc/PID/stat` to find the children (the work "
            "any tree walk must do). Ours: `Sampler.sample(processes)` alone, processes already "
            "listed.\n\n"
            + table(["N", "shape", "--children", "pids read", "raw floor", "ours (Sampler.sample)",
                     "ours/floor"], rows))


def section_measures(r: Results) -> str:
    rows = []
    for m in r.measures:
        rss = next(x for x in r.measures if (x.n, x.shape, x.measure) == (m.n, m.shape, "rss"))
        rows.append([str(m.n), m.shape, m.mode, m.measure, span(m.sample), ratio(m.sample.median,
                     rss.sample.median), span(m.tick), ratio(m.tick.median, rss.tick.median),
                     span(m.floor), ratio(m.sample.median, m.floor.median)])
    return ("## 3. PSS/USS cost vs RSS (ms)\n\n"
            "Same processes, `--measure rss|pss|uss`. Floor: raw reads of `statm` (rss) or "
            "`smaps_rollup` (pss, uss), plus the /proc scan for trees. The stand-ins have few "
            "mappings; smaps_rollup costs grow with a process's mappings (a real Sentry worker "
            "has far more).\n\n"
            + table(["N", "shape", "--children", "measure", "sample", "vs rss", "full tick",
                     "vs rss", "raw floor", "sample/floor"], rows))


def section_latency(r: Results) -> str:
    rows = []
    for run in r.latency:
        rows.append([run.phase, str(run.programs), str(len(run.times)), str(run.in_flight),
                     str(run.restarts), ms(percentile(run.times, 50)), ms(percentile(run.times, 99)),
                     ms(max(run.times)), ms(statistics.fmean(run.times))])
    return ("## 4. Event-answer latency (ms)\n\n"
            "The real listener process (`python -m listener -a 100GB`, plus `-p slow=10MB` in the "
            "restart phase) with pipes; this process plays supervisord's side: write a TICK, read "
            "the RESULT. The slow program ignores SIGTERM (`stopwaitsecs=10`) and holds 30 MiB, "
            "so each restart keeps a stop in flight for 10 s. Restart phase: events in chunks of "
            "250, a chunk counted only if supervisord reported the slow program STOPPING, same "
            "pid, before and after it (*in flight*; *stops*: how many distinct stops they "
            "spanned); nothing polls supervisord while events are timed.\n\n"
            + table(["phase", "programs", "events", "in flight", "stops", "p50", "p99", "max",
                     "mean"], rows))


def section_scrapes(r: Results) -> str:
    rows = [[s.source, str(s.series), f"{s.size / 1024:.0f} KiB", f"{span(s.http)} n={s.http.n}",
             span(s.library) if s.library else "", mib(s.listener_rss) if s.listener_rss else ""]
            for s in r.scrapes]
    text = ("## 5. Scrape cost (ms)\n\n"
            "`GET /metrics` over HTTP, a new connection each time as Prometheus does; the body is "
            "prometheus_client's own encoding (`make_wsgi_app`) behind `listener.web.httpserver`. "
            "*prometheus_client*: its `generate_latest()` of the same registry in process, "
            "without HTTP.\n\n"
            + table(["source", "series", "size", "GET /metrics", "prometheus_client",
                     "listener RSS"], rows))
    if r.scrape_latency:
        lat = [[run.event, str(run.processes), str(len(run.quiet)), ms(percentile(run.quiet, 50)),
                ms(percentile(run.quiet, 99)), ms(percentile(run.scraped, 50)),
                ms(percentile(run.scraped, 99)), str(run.scrapes)] for run in r.scrape_latency]
        text += ("\n### Event answers while /metrics is scraped (ms)\n\n"
                 "The real listener process watching N processes (a local stand-in supervisord "
                 "lists the benchmark's own process N times under N names, so each sample is a "
                 "real /proc read); events written and answered over pipes, first with nothing "
                 "scraping, then while a client GETs /metrics back to back (far more often than "
                 "any Prometheus would). The scrape runs in the listener's HTTP thread and "
                 "competes with the event loop for the interpreter lock.\n\n"
                 + table(["event", "N", "events", "quiet p50", "quiet p99", "scraped p50",
                          "scraped p99", "scrapes"], lat))
    return text


def section_soak(s: SoakRun) -> str:
    rows = [[str(s.events), str(s.processes), s.server, mib(s.rss_first), mib(s.rss_warm),
             mib(s.rss_end), mib(s.rss_max), f"{(s.rss_end - s.rss_warm) / MiB:+.2f} MiB",
             f"{s.cpu_per_tick * 1000:.2f} ms", f"{s.wall_per_tick * 1000:.2f} ms", str(s.scrapes)]]
    trace = ", ".join(f"{n}: {rss / MiB:.1f}" for n, rss in s.trace)
    return ("## 6. Soak (the real listener process over pipes)\n\n"
            f"{s.events} TICKs written to `python -m listener -a 100GB` (metrics on, one `GET "
            f"/metrics` every 100 TICKs); its XML-RPC peer is a local stand-in that answers "
            f"getAllProcessInfo with a snapshot of a real supervisord's {s.processes} real "
            f"running processes (so the listener samples real /proc entries). Why: the real "
            f"supervisord takes {span(s.real_list)} ms per getAllProcessInfo at {s.processes} "
            f"processes (the stand-in {span(s.standin_list)} ms), which would make the soak "
            f"take hours and measure supervisord. Warm-up: the first {s.warmup} TICKs. CPU "
            "time is the listener's user+system time after warm-up.\n\n"
            + table(["TICKs", "processes", "server", "RSS first tick", "RSS after warm-up",
                     "RSS end", "RSS max", "growth", "CPU per tick", "wall per tick", "scrapes"],
                    rows)
            + f"\nRSS (MiB) by TICKs done: {trace}.\n")


# --- section 7 ---


def _cost(sc: SupervisordCost, n: int, client: str) -> CostRow | None:
    return next((c for c in sc.costs if (c.n, c.client) == (n, client)), None)


def supcost_targets(sc: SupervisordCost, add: Callable[[str, str, bool | None], None]) -> None:
    sizes = sorted({c.n for c in sc.costs if c.client == "table"})
    if sizes:
        n = 1000 if 1000 in sizes else sizes[-1]
        t, listing = _cost(sc, n, "table"), _cost(sc, n, "listing")
        assert t is not None
        against = f"; listing each tick {span(listing.tick)} ms" if listing else ""
        add("whole tick at 1000 processes with the event-kept table < 60 ms"
            + ("" if n == 1000 else f" (not run at 1000: N={n} here)"),
            f"{span(t.tick)} ms, n={t.tick.n}{against}", t.tick.median < 0.06 if n == 1000 else None)
    if sc.burst:
        state = sc.burst.rows[0]
        p99 = percentile(state.times, 99)
        add(f"event-answer p99 < 5 ms, burst of {len(state.times)} PROCESS_STATE events "
            f"({sc.burst.n} processes)", f"{ms(p99)} ms", p99 < 0.005)


def cpu_ms(seconds: float) -> str:
    """ms() without the minus sign of a figure that rounds to nothing (above idle can dip below)."""
    return ms(0.0) if abs(seconds) < 5e-7 else ms(seconds)


def section_supcost(sc: SupervisordCost) -> str:
    rows = []
    for c in sc.costs:
        amortized = ""
        if c.client == "table" and (listing := _cost(sc, c.n, "listing")):
            amortized = cpu_ms(c.oncpu_above_idle.median
                           + listing.oncpu_above_idle.median * TICK_PERIOD / RESYNC)
        busy = max(0.0, c.oncpu_above_idle.median) / TICK_PERIOD * 100
        rows.append([str(c.n), c.client, f"`{c.flags}`", f"{c.ticks} × {c.measurements}",
                     span(c.cpu, cpu_ms), span(c.above_idle, cpu_ms),
                     span(c.oncpu_above_idle, cpu_ms), amortized,
                     f"{busy:.2f}%",
                     f"{c.rpc_per_tick:.2f}", f"{span(c.tick)} n={c.tick.n}"])
    idle_rows = [[str(i.n), f"{i.window:g} s × {i.per_period.n}", span(i.per_period, cpu_ms),
                  span(i.oncpu_per_period, cpu_ms), f"{i.oncpu_rate * 100:.2f}%"] for i in sc.idle]
    whole = []
    for n in sorted({c.n for c in sc.costs}):
        t, listing, memmon = (_cost(sc, n, k) for k in ("table", "listing", "memmon"))
        if t and listing:
            whole.append([str(n), f"{span(t.tick)} n={t.tick.n}", f"{span(listing.tick)} "
                          f"n={listing.tick.n}", ratio(listing.tick.median, t.tick.median),
                          f"{span(memmon.tick)} n={memmon.tick.n}" if memmon else "not run"])
    p = sc.plan
    text = ("## 7. supervisord's cost per tick\n\n"
            "supervisord is single-threaded: while it builds an answer it serves nobody else "
            "(supervisorctl, other listeners, its children's output and state changes). On a real "
            "supervisord running N `sleep infinity` programs, supervisord's CPU time (utime + "
            f"stime of its process from /proc/PID/stat, in steps of 1/{sc.clk_tck} s) is read "
            "before and after K ticks of one client back to back (K fills at least "
            f"{p.window:g} s, {p.min_ticks} ticks at least; memmon's ticks last seconds, one at "
            "least). *per tick* = CPU / K; *above idle* = (CPU − idle rate × the K ticks' wall "
            "time) / K, the idle rate measured on the same supervisord with nobody asking it "
            f"anything (table below). The clients take turns (idle, table, listing, memmon), "
            f"{p.reps} rounds (memmon: until {p.memmon_budget:g} s of its ticks and 2 rounds); "
            "medians of the rounds (min–max). *schedstat*: the same from the scheduler's own "
            "count (/proc/PID/schedstat, ns), a cross-check of utime + stime, which the kernel "
            "keeps by sampling at its clock ticks (its idle rate comes in steps of "
            f"{1000 / sc.clk_tck:g} ms per {TICK_PERIOD:g} s: a figure near nothing can come out "
            "slightly below it). *table*: our Daemon in process (as section 1), fed one "
            "PROCESS_STATE event (the subscription shows) and one tick (the listing that seeds "
            "the table), its periodic resync moved out of the way; *amortized* (schedstat): the "
            f"same plus the default `--resync` ({RESYNC / 60:g} min), one listing every "
            f"{RESYNC / TICK_PERIOD:.0f} TICK_5s. *listing*: the same Daemon without state "
            "events, getAllProcessInfo every tick. *memmon*: superlance's, one "
            "getAllProcessInfo and one `ps` per process every tick. *busy*: above idle "
            "(schedstat) as a share of a TICK_5 period. *RPC/tick*: XML-RPC requests the client "
            "sent per tick, counted at its transport. *tick*: the client's whole tick, wall ms, "
            "tick by tick over every "
            "round.\n\n"
            + table(["N", "client", "flags", "K × rounds", "supervisord CPU per tick (ms)",
                     "above idle (ms)", "above idle, schedstat (ms)", "amortized (ms)", "busy",
                     "RPC/tick", "tick (ms)"], rows)
            + "\nsupervisord idle, nobody asking it anything (CPU ms per TICK_5 period of "
            f"{TICK_PERIOD:g} s; its event loop wakes every second and walks every process):\n\n"
            + table(["N", "window × rounds", "CPU per 5 s (ms)", "schedstat (ms)",
                     "share of a core"], idle_rows)
            + "\n### Our whole tick: event-kept table vs listing each tick (ms)\n\n"
            "The *tick* column above, side by side: the same Daemon, the same supervisord, the "
            "same rounds.\n\n"
            + table(["N", "with the event-kept table", "listing each tick", "listing/table",
                     "memmon"], whole))
    if sc.burst:
        text += burst_text(sc)
    if sc.boot:
        text += boot_text(sc)
    if sc.notes:
        text += "\n" + "".join(f"- {n}\n" for n in sc.notes)
    return text


def burst_text(sc: SupervisordCost) -> str:
    b = sc.burst
    assert b is not None
    rows = [[a.what, str(len(a.times)), ms(percentile(a.times, 50)), ms(percentile(a.times, 99)),
             ms(max(a.times)), ms(statistics.fmean(a.times)),
             f"{cpu_ms(a.supervisord_cpu)} / {cpu_ms(a.supervisord_oncpu)}"]
            for a in b.rows]
    same = b.events_counted == b.events_sent
    counted = ", ".join(f"{k.removeprefix('PROCESS_STATE_')} {v}" for k, v in b.events_counted.items())
    resyncs = ("none" if not b.resyncs else f"{len(b.resyncs)}: " + "; ".join(
        f"`{line.strip()[:200]}`" for line in b.resyncs[:3]))
    return ("\n### Event answers during a burst of state events (ms)\n\n"
            f"The real listener process (`python -m listener -a 100GB --resync 30d`, metrics on) "
            f"over pipes, its XML-RPC peer the real supervisord with {b.n} programs; this "
            "process plays supervisord's side: write an event, read its RESULT (and the READY "
            "after it, as section 4). One PROCESS_STATE_RUNNING event shows the subscription and "
            "a TICK lists everything (the seed); then the burst, back to back, poolserials "
            "consecutive: restarts as supervisord reports them, process after process (RUNNING → "
            "STOPPING → STOPPED → STARTING → RUNNING, `processname:flat_0001 groupname:flat "
            "from_state:STARTING pid:1234` and so on, each following from the table's state), "
            "so the table moves with every event; then TICKs answered from the table. A second "
            "listener that never sees a state event lists on every TICK. *supervisord CPU*: "
            "supervisord's CPU per event above its idle rate, from /proc/PID/stat and from "
            "schedstat.\n\n"
            + table(["events", "n", "p50", "p99", "max", "mean",
                     "supervisord CPU per event above idle (stat / schedstat)"], rows)
            + f"\nEvents the listener counted (`memwatch_events_total`): {counted} "
            f"({'as sent' if same else 'sent: ' + str(b.events_sent)}). Resyncs after the seed "
            f"(`process table listed again` in its log): {resyncs}.\n")


def boot_text(sc: SupervisordCost) -> str:
    rows = [[str(b.buffer_size), str(b.n), f"{b.boot:.1f}", f"{b.drained:.1f}", str(b.received),
             str(b.discarded), "yes" if b.discarded == 0 else "**no**",
             str(b.listener_restarts)] for b in sc.boot]
    return ("\n### A boot burst through supervisord's event buffer\n\n"
            "A real supervisord (loglevel info) starting N `sleep infinity` programs and a "
            "`marker` at boot, with the real listener under it as `[eventlistener:memwatch]`, "
            "`events=TICK_5,PROCESS_STATE,PROCESS_GROUP`, `buffer_size` as given. Once "
            "supervisord's log shows every program RUNNING, the marker is stopped: its "
            "STOPPED event is buffered after every boot event, so when the listener has counted "
            "it the boot burst has gone through the buffer. *answered*: PROCESS_STATE and "
            "PROCESS_GROUP events the listener counted, the marker's 2 not included; "
            "*discarded*: supervisord's `pool memwatch event buffer overflowed, discarding "
            "event N` log lines (supervisor/process.py: when the buffer is full it drops the "
            "oldest event). *boot*: seconds from starting supervisord to every program "
            "RUNNING; *through*: to the listener counting the marker.\n\n"
            + table(["buffer_size", "N", "boot (s)", "through (s)", "answered", "discarded",
                     "holds the boot burst", "listener restarts"], rows))


__all__ = ["Results", "Summary", "render"]
