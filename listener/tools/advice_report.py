"""`advise`'s output: the JSON (a contract: README "Tuning workers with advise") and the table
for people, made from the advice (listener.tools.advice)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from listener.core.text import format_size
from listener.tools.advice import (
    FIRST_LINE_ROOM,
    HEADROOM,
    MAX_HEADROOM,
    SAFETY,
    Advice,
    Host,
    Percentiles,
)
from listener.tools.table import table


def as_json(host: Host, advice: Sequence[Advice]) -> dict[str, Any]:
    def pct(p: Percentiles | None) -> dict[str, int] | None:
        return None if p is None else {"p50": p.p50, "p99": p.p99, "max": p.max}

    return {
        "host": {"memory_total_bytes": host.memory_total,
                 "memory_available_bytes": host.memory_available, "cpus": host.cpus},
        "programs": [{
            "program": a.program, "processes": a.processes, "kind": a.kind,
            "children_per_process": a.children_per_process,
            "worker_memory_bytes": pct(a.worker_memory),
            "process_memory_bytes": pct(a.process_memory),
            "cpu_cores": round(a.cpu_cores, 3),
            "recommended_limit_bytes": a.recommended_limit,
            "recommended_processes": a.recommended_processes,
            "advice": list(a.advice),
            "workers_max_rss_mib": a.workers_max_rss_mib,
            "concurrency_fits": a.concurrency_fits,
        } for a in advice],
    }


def render(host: Host, advice: Sequence[Advice]) -> str:
    """The table for people, then each program's advice as sentences."""
    def pct(p: Percentiles | None) -> str:
        return "-" if p is None else f"{format_size(p.p50)} / {format_size(p.p99)} / {format_size(p.max)}"

    rows = [("PROGRAM", "KIND", "PROCS", "CHILDREN", "WORKER p50/p99/max", "PROCESS p50/p99/max",
             "CPU", "LIMIT", "FITS")]
    for a in advice:
        rows.append((a.program, a.kind, str(a.processes), f"{a.children_per_process:g}",
                     pct(a.worker_memory), pct(a.process_memory), f"{a.cpu_cores:.2f}",
                     format_size(a.recommended_limit) if a.recommended_limit else "-",
                     "-" if a.recommended_processes is None else str(a.recommended_processes)))
    head = (f"host: {format_size(host.memory_total)} memory, {format_size(host.memory_available)} "
            f"available, {host.cpus} CPUs\n")
    notes = "".join(f"{a.program}: {line}\n" for a in advice for line in a.advice)
    granian = any(a.workers_max_rss_mib is not None for a in advice)
    legend = ("\nLIMIT: the limit to give each worker (pre-fork servers) or process: p99 x "
              f"{HEADROOM:g}, at least the max x {MAX_HEADROOM:g}"
              + (f" (Granian's: and its workers-max-rss x {FIRST_LINE_ROOM:g})" if granian else "")
              + f". FITS: processes of the program this host holds, {SAFETY:.0%} of memory kept "
              "free, within its CPUs.\n")
    return head + table(rows) + legend + ("\n" + notes if notes else "")
