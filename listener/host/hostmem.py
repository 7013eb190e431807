"""The host's memory as the kernel reports it (/proc/meminfo, /proc/pressure/memory), and the
listener's view of whether the host is under memory pressure (listener.core.pressure decides).

A tick reads only what the pressure settings need, one small file each (none when they are off);
the metrics read both files at scrape time, so exporting the host's headroom costs no tick."""

from __future__ import annotations

import logging
import os

from listener.core.pressure import (
    HostMemory,
    Pressure,
    PressureSettings,
    next_pressure,
    parse_meminfo,
    parse_psi,
)
from listener.log import fields

log = logging.getLogger("memwatch.host")
MAX_READ = 16384  # /proc/meminfo is ~1.5 KiB, pressure ~150 bytes


class HostMemoryWatch:
    def __init__(self, settings: PressureSettings, proc_root: str = "/proc") -> None:
        self.settings = settings
        self.proc_root = proc_root
        self.pressure = Pressure()

    def _text(self, name: str) -> str | None:
        try:
            fd = os.open(f"{self.proc_root}/{name}", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None  # no PSI in this kernel (or not enabled): said by its absence
        try:
            return os.read(fd, MAX_READ).decode("ascii", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def read(self, psi: bool = True, meminfo: bool = True) -> HostMemory | None:
        """What the kernel says now; None if none of what was asked could be read."""
        pressure = parse_psi(self._text("pressure/memory") or "") if psi else {}
        total, available = parse_meminfo(self._text("meminfo") or "") if meminfo else (None, None)
        if not pressure and total is None and available is None:
            return None
        return HostMemory(total, available, pressure.get("some10"), pressure.get("some60"),
                          pressure.get("full10"), pressure.get("full60"))

    def update(self, now: float) -> Pressure:
        """This tick's pressure state (reading only what the settings need); said when it
        changes."""
        settings = self.settings
        if not settings.enabled:
            return self.pressure
        host = self.read(psi=settings.psi_some is not None,
                         meminfo=settings.available_below is not None)
        before, self.pressure = self.pressure, next_pressure(self.pressure, host, settings, now)
        if self.pressure.active and not before.active:
            log.warning("host under memory pressure: pressure limits apply",
                        extra=fields(reason=self.pressure.reason))
        elif before.active and not self.pressure.active:
            log.warning("host memory pressure over: the usual limits apply",
                        extra=fields(seconds=round(now - before.since, 1)))
        return self.pressure
