"""The --config file: INI lines whose keys are long option names, turned into argv tokens so
that argparse checks them like flags, with file:line in every error."""

from __future__ import annotations

import argparse

from listener.flags import ConfigError


def read_ini(text: str, path: str) -> list[tuple[int, str, str]]:
    """(line, key, value) entries of an INI text; one section of any name, `#`/`;` comments."""
    entries: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            continue
        if raw[:1].isspace() and entries:  # continuation of a multi-line value
            last = entries[-1]
            entries[-1] = (last[0], last[1], f"{last[2]}\n{line}")
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        key, sep, value = (line[:cut], line[cut], line[cut + 1:]) if cut >= 0 else (line, "", "")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{lineno}: expected 'key = value', got {line!r}")
        entries.append((lineno, key.strip().replace("_", "-"), value.strip()))
    return entries


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def file_to_argv(parser: argparse.ArgumentParser, text: str, path: str) -> list[str]:
    """Turn config-file entries into argv tokens, checking each value with its line number."""
    by_option = {s: a for a in parser._actions for s in a.option_strings}  # noqa: SLF001
    argv: list[str] = []
    for lineno, key, value in read_ini(text, path):
        option = f"--{key}"
        if key == "sendmail-program":
            option = "--sendmail_program"
        action = by_option.get(option)
        if action is None or key in ("config", "help", "version"):
            raise ConfigError(f"{path}:{lineno}: unknown option {key!r}")
        if action.nargs == 0:  # a switch
            if value.lower() not in _TRUE | _FALSE:
                raise ConfigError(f"{path}:{lineno}: {key} = {value!r} is not true or false")
            if value.lower() in _TRUE:
                # the file's `cumulative` is a --children value, so the command line can override it
                argv.append("--children=sum" if key == "cumulative" else option)
            continue
        values = value.split() if isinstance(action, argparse._AppendAction) else [value]  # noqa: SLF001
        for item in values:
            try:
                if action.type is not None:
                    action.type(item)  # type: ignore[operator]
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"{path}:{lineno}: {key}: {exc}") from None
            if action.choices is not None and item not in action.choices:
                choices = ", ".join(map(str, action.choices))
                raise ConfigError(f"{path}:{lineno}: {key} = {item!r} is not one of {choices}")
            argv.append(f"{option}={item}")  # one token: a value may start with '-'
    return argv
