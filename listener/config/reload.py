"""What a SIGHUP may change: the config re-read from the rules file, checked against the one in
force. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

from listener.config.settings import Config, declared
from listener.config.values import ConfigError
from listener.core.rules import Rules


@dataclass(frozen=True)
class Reloaded:
    config: Config  # what is put in force
    needs_restart: tuple[str, ...]  # keys changed in the file whose old values are kept
    rules_before: int
    rules_after: int


def count(rules: Rules) -> int:
    return len(rules.programs) + len(rules.groups) + (rules.any is not None)


def reloaded(old: Config, new: Config) -> Reloaded:
    """The rules and the settings a reload may change (Setting.reloads) from `new`, every other
    setting as it was: the supervisord client, the metrics server, mail and logging are made at
    start. Raises ConfigError for a config without any rule when `old` had some: an empty or
    truncated file (a write in progress, a full disk) must not quietly turn the watchdog off;
    whoever means to watch nothing stops the listener."""
    before, after = count(old.rules), count(new.rules)
    if before and not after:
        raise ConfigError(f"the new config has no rules (an empty or truncated file?): keeping "
                          f"the {before} in force; to watch nothing, stop the listener")
    kept = {s.name: s for s in declared(Config)
            if not s.reloads and getattr(old, s.name) != getattr(new, s.name)}
    config = replace(new, **{name: getattr(old, name) for name in kept})
    return Reloaded(config, tuple(sorted(s.key for s in kept.values())), before, after)
