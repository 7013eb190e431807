"""What the policy makes of processes: verdicts, judgements, the decision of a tick, and the
state it carries to the next (listener.core.policy decides; everything else reads these)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from listener.core.model import Action, ProcessInfo, Sample
from listener.core.rules import Rule, Strategy


class Verdict(str, enum.Enum):
    """What the policy made of a process, as `check` and the logs say it."""

    SELF = "self"
    LISTENER = "memwatch listener"  # another sentry-memwatch: never judged, like the listener itself
    EXCLUDED = "excluded"
    STOPPED = "not running"
    BUSY = "restarting"
    NO_LIMIT = "no limit"
    NO_SAMPLE = "no sample"
    OK = "ok"
    GRACE = "grace"
    COUNTING = "over (counting)"
    ACT = "act"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    DRAINING = "draining"  # a signalled child is finishing its work; not signalled again

    def __str__(self) -> str:
        return self.value


# Verdicts of a process over its limit that the listener is dealing with, or will by its
# rules: a probe's normal transitions (`check` exits 0). Any other verdict of a process over
# its limit (suppressed by the budget, excluded...) is one nobody deals with (exit 1).
IN_HAND = frozenset({Verdict.GRACE, Verdict.COUNTING, Verdict.ACT, Verdict.DEFERRED,
                     Verdict.DRAINING, Verdict.BUSY})


@dataclass(frozen=True)
class Judgement:
    """What the policy made of one process this tick (for metrics, logs and `check`)."""

    process: ProcessInfo
    sample: Sample | None
    rule: Rule | None  # the rule that applies; None: no limit
    over: bool  # the figure is above the limit right now
    verdict: Verdict
    over_samples: int = 0  # consecutive samples over the limit (largest unit for `each`)

    @property
    def limit(self) -> int | None:
        return self.rule.limit if self.rule else None

    @property
    def strategy(self) -> Strategy | None:
        """The rule's strategy as applied to this process (`auto` resolved by its server, when
        there is a sample to tell it by)."""
        if self.rule is None:
            return None
        if self.sample is None:  # nothing to tell its server by: `auto` as the rule says it
            return self.rule.strategy
        return self.rule.strategy.resolve(self.sample.server)


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between ticks. Only keys seen this tick are kept."""

    # (namespec, pid) -> (the pid's start time, consecutive samples over the limit): a process
    # respawned with the same pid starts a new run
    over_counts: Mapping[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
    # namespec -> times of the actions counted against the restart budget
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    # namespecs whose budget exhaustion has been reported (warn once, not every tick)
    warned: frozenset[str] = frozenset()
    # (namespec, child pid) -> (the child's start time, when it was signalled): a signalled
    # child is never signalled again, and is escalated once if it outlives its timeout
    signalled: Mapping[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    # the process last acted on for host memory pressure, and when: one at a time per host
    relieving: tuple[str, float] = ("", float("-inf"))


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    judgements: tuple[Judgement, ...]
    suppressed: tuple[Judgement, ...]  # actions withheld by the restart budget
    newly_suppressed: tuple[str, ...]  # namespecs to warn about now (once per exhaustion)
    state: PolicyState
