"""Host memory pressure: when the host as a whole runs short, rules with a `pressure-limit` are
held to that lower limit, so that the host recovers before the kernel's OOM killer picks a
victim (often the largest worker mid-request, sometimes the database).

Pressure is entered when PSI memory `some avg10` (the share of the last 10 s in which some task
waited for memory, /proc/pressure/memory) reaches `--pressure-psi`, or MemAvailable falls under
`--pressure-available`. It is left only when both are well clear (PSI under half its threshold,
MemAvailable above 1.25x its own) and it has lasted a minute: hysteresis and a minimum time, so
that a host on the edge does not flap in and out. The policy then replaces, gracefully, the one
worker furthest over its pressure limit, one at a time per host, at most one a minute, within
its restart budget (listener.core.policy, Tick.relieve)."""

from __future__ import annotations

from dataclasses import dataclass

MIN_PRESSURE_SECONDS = 60.0  # once entered, pressure lasts at least this long
PSI_LEAVE_SHARE = 0.5  # left when PSI is under this share of its threshold...
AVAILABLE_LEAVE = 1.25  # ...and MemAvailable above this multiple of its own
RELIEF_INTERVAL = 60.0  # at most one action for pressure per this many seconds, host-wide


@dataclass(frozen=True)
class HostMemory:
    """What the kernel says of the host's memory; None where it does not say (no PSI)."""

    total: int | None = None  # MemTotal, bytes
    available: int | None = None  # MemAvailable, bytes
    some10: float | None = None  # PSI memory "some" avg10, percent
    some60: float | None = None
    full10: float | None = None
    full60: float | None = None


@dataclass(frozen=True)
class PressureSettings:
    psi_some: float | None = None  # percent of PSI "some avg10" that means pressure
    available_below: int | None = None  # bytes of MemAvailable under which it is pressure

    @property
    def enabled(self) -> bool:
        return self.psi_some is not None or self.available_below is not None


@dataclass(frozen=True)
class Pressure:
    active: bool = False
    since: float = 0.0  # when it was entered or left
    reason: str = ""  # for people: "PSI some avg10 34.0% >= 20%"


def next_pressure(before: Pressure, host: HostMemory | None, settings: PressureSettings,
                  now: float) -> Pressure:
    """The pressure state after this reading. An unreadable host changes nothing."""
    if host is None or not settings.enabled:
        return before
    psi, floor = settings.psi_some, settings.available_below
    entering = []
    if psi is not None and host.some10 is not None and host.some10 >= psi:
        entering.append(f"PSI some avg10 {host.some10:g}% >= {psi:g}%")
    if floor is not None and host.available is not None and host.available < floor:
        entering.append(f"MemAvailable {host.available >> 20} MiB < {floor >> 20} MiB")
    if not before.active:
        return Pressure(True, now, "; ".join(entering)) if entering else before
    clear = (psi is None or host.some10 is None or host.some10 < psi * PSI_LEAVE_SHARE) and (
        floor is None or host.available is None or host.available > floor * AVAILABLE_LEAVE)
    if clear and now - before.since >= MIN_PRESSURE_SECONDS:
        return Pressure(False, now, "")
    return before


def parse_psi(text: str) -> dict[str, float]:
    """/proc/pressure/memory -> {"some10": 1.5, "some60": ..., "full10": ..., "full60": ...};
    what cannot be read is left out."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            continue
        for field in rest.split():
            key, _, value = field.partition("=")
            if key in ("avg10", "avg60"):
                try:
                    found[kind + key[3:]] = float(value)
                except ValueError:
                    continue
    return found


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """/proc/meminfo -> (MemTotal, MemAvailable) in bytes; None where absent or unreadable."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[key] = int(parts[0]) * 1024
    return found.get("MemTotal"), found.get("MemAvailable")
