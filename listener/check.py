"""`sentry-memwatch check`: one look, as a table, with an exit code for scripts."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TextIO

from listener import policy
from listener.config import Config
from listener.model import ProcessInfo, own_namespecs
from listener.policy import Verdict
from listener.sampler import Sampler
from listener.units import format_size

HEADERS = ("GROUP", "PROCESS", "PID", "STATE", "MEMORY", "LIMIT", "VERDICT")


def verdict_text(j: policy.Judgement) -> str:
    if j.verdict in (Verdict.SELF, Verdict.EXCLUDED, Verdict.STOPPED, Verdict.NO_LIMIT,
                     Verdict.NO_SAMPLE):
        return str(j.verdict)
    if j.over:
        extra = {Verdict.GRACE: " (grace)", Verdict.DRAINING: " (draining)"}.get(j.verdict, "")
        return "OVER" + extra
    return "ok"


def render(judgements: Sequence[policy.Judgement], measure: str) -> str:
    rows = [(*HEADERS[:4], f"MEMORY ({measure.upper()})", *HEADERS[5:])]
    for j in judgements:
        memory = format_size(j.sample.value) if j.sample else "-"
        if j.sample and j.sample.measure != measure:  # PSS/USS denied: RSS was used
            memory += f" ({j.sample.measure.upper()})"
        if j.sample and j.sample.children:
            memory += f" ({j.sample.children} children)"
        rows.append((j.process.group, j.process.name, str(j.process.pid or "-"),
                     j.process.statename, memory,
                     format_size(j.limit) if j.limit is not None else "-", verdict_text(j)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "\n".join(lines) + "\n"


def check(config: Config, processes: Sequence[ProcessInfo], sampler: Sampler, out: TextIO,
          environ: dict[str, str] | None = None) -> int:
    """Print the table; 1 if some watched process is over its limit, else 0."""
    result = sampler.sample(processes)
    env = os.environ if environ is None else environ
    decision = policy.decide(processes, result.samples, config.rules, policy.PolicyState(),
                             time.time(), self_names=own_namespecs(env),
                             self_pids=frozenset({os.getpid()}))
    out.write(render(decision.judgements, config.strategy.measure))
    over = [j for j in decision.judgements if verdict_text(j).startswith("OVER")]
    return 1 if over else 0
