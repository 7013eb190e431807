"""One process's units with their figures, as the sampler builds them in a tick, before they
become its Sample (listener.core.model): kept until the tick's PSS refresh has run, which may
put fresher figures in."""

from __future__ import annotations

from dataclasses import dataclass, replace

from listener.core.model import Sample, Unit
from listener.core.rules import Strategy
from listener.core.servers import Server


@dataclass
class Measured:
    """One process's units with their figures, before they become its Sample."""

    units: list[Unit]
    measures: set[str]  # the measures used: "rss" where PSS/USS was denied
    ages: list[float]  # seconds since each unit's figure was read
    cpu: float = 0.0

    def sample(self, strategy: Strategy, server: Server) -> Sample:
        sizes = [u.bytes for u in self.units]
        if strategy.children == "sum":
            value, age = sum(sizes), max(self.ages)
        else:  # the pid alone, or the largest unit
            largest = max(range(len(sizes)), key=sizes.__getitem__)
            value, age = sizes[largest], self.ages[largest]
        return Sample(
            value=value,
            measure="rss" if "rss" in self.measures else strategy.measure,
            children=len(self.units) - 1,
            units=tuple(self.units) if strategy.children == "each" else (),
            server=server,
            tree=sum(sizes),
            cpu=self.cpu,
            age=age,
            members=tuple(self.units),
        )

    def fresh(self, index: int, value: int) -> None:
        """A figure walked again this tick, for the unit at `index`."""
        self.units[index] = replace(self.units[index], bytes=value)
        self.ages[index] = 0.0
