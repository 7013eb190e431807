"""What people look at, on the metrics port: `/status` (JSON) and `/` (one self-contained HTML
page that refreshes itself: no outside assets, so it works on an air-gapped host). Both are
pure renderings of a StatusView (listener.web.view); `app()` routes them next to /metrics.

Rendering 300 processes with their history takes tens of milliseconds of the interpreter, which
the event loop would have to fight for: a rendering is built in chunks of PACE_ROWS processes,
each started between two events, and shared by every client that asks meanwhile (Pages)."""

from __future__ import annotations

import html
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from listener.core.rows import ProcessRow
from listener.core.text import (
    format_action,
    format_age,
    format_memory,
    format_pid,
    format_size,
    format_soon,
)
from listener.core.trend import time_to_limit
from listener.web.stats import PACE_ROWS, Stats
from listener.web.view import StatusView, process_json, to_json
from listener.web.wsgibytes import WSGIApp

REFRESH_SECONDS = 5
SOON_SHOWN = 86400.0  # "limit in ~40m" is said on the page when it is at most this far ahead
PATIENCE = 1.0  # seconds a rendering may wait for the event loop, in all
Pace = Callable[[], object]
_OOM_SOURCES = {"kmsg": "seen in the kernel log", "vmstat": "counted, not attributed",
                "none": "not seen"}


def _paced(items: Sequence[ProcessRow], pace: Pace) -> Iterable[ProcessRow]:
    for i, item in enumerate(items):
        if i % PACE_ROWS == 0:
            pace()
        yield item


def render_json(view: StatusView, pace: Pace = lambda: None) -> str:
    """json.dumps(to_json(view)), one process at a time (the C encoder never lets go of the
    interpreter), calling `pace` every PACE_ROWS processes."""
    head = json.dumps(to_json(replace(view, processes=())))  # ends with "processes": []}
    rows = ", ".join(json.dumps(process_json(p)) for p in _paced(view.processes, pace))
    return f"{head[:-3]}[{rows}]}}"


def render_html(view: StatusView, now: float, pace: Pace = lambda: None) -> str:
    """The status page for a view, as of `now` (epoch seconds); `pace` as in render_json."""
    age = now - view.last_tick if view.last_tick else None
    none = ("no watched process (no limit applies to any)" if view.supervisor_up
            else "no process listed: supervisord has not answered")
    rows = "\n".join(_row(p, now) for p in _paced(view.processes, pace)) or (
        f'<tr><td colspan="9" class="none">{none}</td></tr>')
    return _PAGE.format(
        refresh=REFRESH_SECONDS, version=html.escape(view.version),
        up_class="ok" if view.supervisor_up else "bad",
        up=("reachable" if view.supervisor_up else "UNREACHABLE" if view.supervisor_error
            else "not asked yet"), url=html.escape(view.supervisor_url),
        tick=format_age(age), tick_class="bad" if age is None or age > 180 else "ok",
        stopped=view.stopped_not_running,
        stopped_class="bad" if view.stopped_not_running else "ok", rows=rows,
        host_oom=view.host_oom_kills, host_oom_class="bad" if view.host_oom_kills else "ok",
        oom_source=html.escape(_OOM_SOURCES.get(view.oom_source, view.oom_source)),
        problem=_problems(view))


def _problems(view: StatusView) -> str:
    """What keeps the listener from telling: no TICK arrives, supervisord out of its reach."""
    said = [("tick-problem", view.tick_problem)] if view.tick_problem else []
    if view.supervisor_error and not view.supervisor_up:
        last = " (the rows below are from the last tick it answered)" if view.processes else ""
        said.append(("supervisor-error", f"cannot reach supervisord at {view.supervisor_url}: "
                                          f"{view.supervisor_error}{last}"))
    return "".join(f'<p class="bad" id="{key}">{html.escape(text)}</p>' for key, text in said)


# The bar: the limit mark two thirds along in every row (rows compare at a glance); below the
# limit the fill is linear, beyond it each doubling takes a ninth of the bar, up to 8x the limit
# (full): 1.5x fills 73%, 2x 78%, 4x 89%.
LIMIT_AT = 2 / 3
DOUBLINGS_SHOWN = 3


def bar_fill(memory: int | None, limit: int) -> float:
    """How much of the memory bar a figure fills, 0 to 1 (the limit at LIMIT_AT)."""
    if memory is None or limit <= 0:
        return 0.0
    ratio = memory / limit
    if ratio <= 1:
        return ratio * LIMIT_AT
    return LIMIT_AT + (1 - LIMIT_AT) * min(math.log2(ratio) / DOUBLINGS_SHOWN, 1.0)


# the verdicts as the page says them (the JSON and `check --listener` keep policy's words)
_SAID = {"over (counting)": "over for {n}", "act": "over for {n}: acting",
         "grace": "over, in grace", "suppressed": "over, budget spent",
         "deferred": "over, waiting its turn"}


def verdict_words(verdict: str, samples: int) -> str:
    """'over (counting)' with 2 samples over -> 'over for 2 samples'."""
    n = f"{samples} sample" + ("" if samples == 1 else "s")
    return _SAID.get(verdict, verdict).format(n=n)


def _row(p: ProcessRow, now: float) -> str:
    memory, limit = p.memory_bytes, p.limit_bytes
    fill = bar_fill(memory, limit)
    ratio = f"{memory / limit:.1f}x the limit" if memory is not None and limit else "no sample"
    bar_class = "over" if fill > LIMIT_AT else ("near" if fill > 0.9 * LIMIT_AT else "fine")
    # "233.0MiB pss / 60.0MiB (pid 4312, read 35s ago)": the figure and its limit side by side
    shown, _, notes = format_memory(memory, p.measure, p.worker_pid,
                                    age=p.memory_age_seconds).partition(" (")
    figure = f"{shown} / {format_size(limit)}" + (f" ({notes}" if notes else "")
    soon = time_to_limit(p.history, limit)
    if soon is not None and soon <= SOON_SHOWN:
        figure += f", limit {format_soon(soon)}"
    budget = "unlimited" if p.budget_left is None else str(p.budget_left)
    last = format_action(p.last_action, now - p.last_action_at) if p.last_action else "-"
    group, _, name = html.escape(p.namespec).partition(":")
    said = verdict_words(p.verdict, p.over_limit_samples)
    cells = [
        f'<td class="name"><span>{group}:</span><wbr><span>{name}</span></td>',
        f"<td>{format_pid(p.pid)}</td>",
        f'<td class="wrap">{html.escape(p.strategy)}</td>',
        f'<td class="memory"><div class="bar" title="{ratio}"><div class="{bar_class}" '
        f'style="width:{fill * 100:.1f}%"></div><div class="mark"></div><div class="x2"></div>'
        f'<div class="x4"></div></div><span class="figure">{html.escape(figure)}</span></td>',
        f"<td>{_sparkline(p.history, limit)}</td>",
        f'<td class="verdict v-{html.escape(p.verdict.split()[0])}" '
        f'title="{html.escape(p.verdict)}">{html.escape(said)}</td>',
        f'<td class="wrap">{p.restarts} / {p.child_signals}'
        + (f' / <b class="bad">{p.oom_kills} OOM-killed</b>' if p.oom_kills else "") + "</td>",
        f"<td>{budget}</td>",
        f'<td class="wrap">{html.escape(last)}</td>',
    ]
    return '<tr class="process">' + "".join(cells) + "</tr>"


def _sparkline(history: Sequence[tuple[float, int]], limit: int, width: int = 120,
               height: int = 28) -> str:
    """An inline SVG of the recent samples, the limit as a dashed line."""
    points = history
    if len(points) < 2:
        return f'<svg class="spark" width="{width}" height="{height}"></svg>'
    top = max(max(b for _, b in points), limit) * 1.05
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0

    def xy(t: float, b: float) -> str:
        return f"{(t - t0) / span * width:.1f},{height - b / top * height:.1f}"

    line = " ".join(xy(t, b) for t, b in points)
    y_limit = height - limit / top * height
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<line x1="0" x2="{width}" y1="{y_limit:.1f}" y2="{y_limit:.1f}" class="limit"/>'
            f'<polyline points="{line}" class="samples"/></svg>')


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>sentry-memwatch</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; margin: 0 0 .4em; }}
.summary span {{ margin-right: 1.5em; }}
.ok {{ color: #1a7f37; }} .bad {{ color: #c62828; font-weight: bold; }}
table {{ border-collapse: collapse; margin-top: 1em; width: 100%; }}
th, td {{ text-align: left; padding: .35em .5em; border-bottom: 1px solid #ddd;
          vertical-align: middle; white-space: nowrap; }}
th {{ background: #f4f4f4; font-weight: 600; white-space: normal; vertical-align: bottom; }}
/* names break after the group's colon; strategies, figures and last actions wrap: the table
   fits 1280 px (tests/integration/test_status_page.py measures it in Chromium) */
td.name {{ font-family: ui-monospace, monospace; white-space: normal; }}
td.name span {{ white-space: nowrap; }}
td.wrap, td.verdict {{ white-space: normal; min-width: 6em; }}
td.memory {{ white-space: normal; min-width: 14em; }}
.bar {{ position: relative; display: block; width: 120px; height: 10px; background: #eee;
        margin: .15em 0; }}
.bar div {{ height: 100%; }}
.bar .mark, .bar .x2, .bar .x4 {{ position: absolute; top: -2px; width: 2px; height: 14px; }}
.bar .mark {{ left: 66.7%; background: #555; }}
.bar .x2 {{ left: 77.8%; background: #bbb; }} .bar .x4 {{ left: 88.9%; background: #bbb; }}
.fine {{ background: #4caf50; }} .near {{ background: #ff9800; }} .over {{ background: #e53935; }}
.figure {{ font-size: .9em; }}
.spark .samples {{ fill: none; stroke: #1565c0; stroke-width: 1.5; }}
.spark .limit {{ stroke: #c62828; stroke-dasharray: 3 3; }}
.v-ok {{ color: #1a7f37; }} .v-over, .v-act, .v-suppressed, .v-deferred {{ color: #c62828; }}
.v-grace, .v-draining, .v-restarting {{ color: #b26a00; }}
.none {{ color: #777; font-style: italic; }}
footer {{ margin-top: 1em; color: #777; font-size: .85em; }}
</style></head>
<body>
<h1>sentry-memwatch</h1>
<div class="summary">
<span>supervisord: <b class="{up_class}" id="supervisor" title="{url}">{up}</b></span>
<span>last tick: <b class="{tick_class}" id="last-tick">{tick}</b></span>
<span>stopped by memwatch, not running: <b class="{stopped_class}">{stopped}</b></span>
<span>OOM kills of others: <b class="{host_oom_class}" id="host-oom">{host_oom}</b>
({oom_source})</span>
</div>
{problem}
<table id="processes">
<tr><th>process</th><th>pid</th><th>strategy</th><th>memory / limit</th><th>recent</th>
<th>verdict</th><th>restarts / signals [/ OOM kills]</th><th>budget left</th><th>last action</th></tr>
{rows}
</table>
<footer>bars: the limit at the dark mark, twice and four times it at the light ones &middot;
sentry-memwatch {version} &middot; refreshes every {refresh} s &middot;
<a href="/status">/status</a> &middot; <a href="/metrics">/metrics</a></footer>
</body></html>
"""


class Pages:
    """`/status` and `/`, each rendered once for every client that asks meanwhile: the JSON once
    per change of the Stats, the page once a second at most (its ages move with the clock).
    One rendering at a time, each chunk of it started between two events (the gate that keeps
    /metrics off event answers), waiting `patience` at most in all: the page is for people,
    not urgent."""

    def __init__(self, stats: Stats, clock: Callable[[], float], patience: float = PATIENCE) -> None:
        self.stats = stats
        self.clock = clock
        self.patience = patience
        self.renderings = 0
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int], bytes]] = {}

    def body(self, path: str) -> bytes:
        """The answer to `path` ("/" or "/status")."""
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == self._key(path):
                return cached[1]
            deadline = time.monotonic() + self.patience

            def pace() -> None:
                self.stats.wait_loop_idle(deadline - time.monotonic())

            pace()
            key = self._key(path)  # after the wait: a tick that was under way is in
            view = StatusView.of(self.stats.snapshot(history=True, pace=pace))
            text = (render_json(view, pace) if path == "/status"
                    else render_html(view, self.clock(), pace))
            self._cache[path] = (key, text.encode())
            self.renderings += 1
            return self._cache[path][1]

    def _key(self, path: str) -> tuple[int, int]:
        return self.stats.changes(), int(self.clock()) if path == "/" else 0


def app(stats: Stats, metrics: WSGIApp, clock: Callable[[], float]) -> WSGIApp:
    """`/` and `/status` from the Stats; everything else is prometheus_client's /metrics."""
    pages = Pages(stats, clock)
    encoding = threading.Lock()  # one /metrics encoded at a time: the loop fights one thread at most

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/", "/status"):
            with encoding:  # prometheus_client's app returns the whole body, encoded
                return metrics(environ, start_response)
        body = pages.body(path)
        kind = "application/json" if path == "/status" else "text/html; charset=utf-8"
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store")])
        return [body]

    return route
