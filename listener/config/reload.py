"""What a SIGHUP may change: the config re-read from the rules file, checked against the one in
force. Pure: no I/O."""

from __future__ import annotations

import logging
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

    def said(self) -> tuple[int, str, dict[str, object]]:
        """The log line of this reload: (level, message, fields)."""
        said: dict[str, object] = {"limits": self.config.rules.describe(),
                                   "rules": self.rules_after}
        if self.needs_restart:  # in force only from the next start: the old values are kept
            return (logging.WARNING, "config reloaded; changed settings that apply only at "
                    "start keep their old values until a restart",
                    {**said, "needs_restart": ",".join(self.needs_restart)})
        if self.rules_after < self.rules_before:
            return (logging.WARNING, "config reloaded with fewer rules",
                    {**said, "rules_before": self.rules_before})
        return logging.INFO, "config reloaded", said


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
