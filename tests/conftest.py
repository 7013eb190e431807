"""Settings for the whole suite, which runs in parallel (pytest-xdist) on a loaded machine:
Hypothesis judges an example by what it checks, never by how long it took to run or generate."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
