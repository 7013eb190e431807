"""The host's memory headroom on /metrics, read at scrape time (never on a tick): MemTotal,
MemAvailable, PSI memory pressure where the kernel has PSI, and whether the listener holds the
host to be under pressure."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from listener.host.hostmem import HostMemoryWatch

TOTAL = ("memwatch_host_memory_total_bytes", "The host's memory (MemTotal).")
AVAILABLE = ("memwatch_host_memory_available_bytes",
             "Memory available to start new work without swapping (MemAvailable).")
PRESSURE = ("memwatch_host_memory_pressure_ratio",
            "Share of recent time in which some (or all) tasks waited for memory (PSI "
            "/proc/pressure/memory avg10, avg60); absent without PSI.")
UNDER = ("memwatch_host_under_pressure",
         "1 while the listener holds the host to be under memory pressure (its pressure "
         "settings), when rules' pressure-limit apply.")


class HostMemoryCollector(Collector):
    def __init__(self, watch: HostMemoryWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        host = self.watch.read()
        if host is not None and host.total is not None:
            yield GaugeMetricFamily(*TOTAL, value=host.total)
        if host is not None and host.available is not None:
            yield GaugeMetricFamily(*AVAILABLE, value=host.available)
        psi = GaugeMetricFamily(*PRESSURE, labels=["kind", "window"])
        for kind, window, value in (
                ("some", "10s", host.some10 if host else None),
                ("some", "60s", host.some60 if host else None),
                ("full", "10s", host.full10 if host else None),
                ("full", "60s", host.full60 if host else None)):
            if value is not None:
                psi.add_metric([kind, window], value / 100)
        yield psi
        yield GaugeMetricFamily(*UNDER, value=int(self.watch.pressure.active))
