"""The tree shows the design: a pure core that does no I/O, rooms by role under it, the loop and
wiring on top. These tests read the imports of every module and fail when a layer leaks."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "listener"
# What a core module may import from the standard library: values, text, math, enums. Nothing
# that reads a file, a socket, a process or the clock.
PURE_STDLIB = {"__future__", "collections", "dataclasses", "enum", "fnmatch", "fractions",
               "functools", "itertools", "math", "operator", "posixpath", "re", "signal",
               "typing", "abc", "bisect", "statistics"}
PURE_PARTS = {"urllib.parse"}  # string parsing only; the rest of urllib fetches
TOP = {"listener.cli", "listener.app", "listener.daemon", "listener.__main__"}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found.append((name, path))
    return found


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "listener" or node.module.startswith("listener."):
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def own(name: str) -> bool:
    return name == "listener" or name.startswith("listener.")


CORE = [(n, p) for n, p in modules() if n.startswith("listener.core")]


def test_the_package_has_its_rooms() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {"core", "supervisord", "host", "actions", "web", "config", "tools"}


@pytest.mark.parametrize(("name", "path"), CORE, ids=[n for n, _ in CORE])
def test_a_core_module_does_no_io_and_imports_only_the_core(name: str, path: Path) -> None:
    for imported in imports(path):
        top = imported.split(".")[0]
        if own(imported):
            # `from listener.core import x` names the module x; `listener` alone is __version__
            assert imported.startswith("listener.core") or imported == "listener", (
                f"{name} imports {imported}: the core imports only the core")
        else:
            assert top in PURE_STDLIB or imported in PURE_PARTS, (
                f"{name} imports {imported}: the core does no I/O")
            assert top in sys.stdlib_module_names or top == "__future__"


@pytest.mark.parametrize(("name", "path"), modules(), ids=[n for n, _ in modules()])
def test_nothing_below_the_top_imports_the_loop_or_the_wiring(name: str, path: Path) -> None:
    if name in TOP:
        return
    leaks = {i for i in imports(path) if i in TOP}
    assert not leaks, f"{name} imports {sorted(leaks)}: the loop and the wiring sit on top"


def test_a_room_below_the_tools_never_imports_a_tool() -> None:
    for name, path in modules():
        if name in TOP or name.startswith("listener.tools"):
            continue
        tools = {i for i in imports(path) if i.startswith("listener.tools")}
        assert not tools, f"{name} imports {sorted(tools)}"


MAX_MODULE_LINES = 300  # past this a module is doing two jobs
MAX_FUNCTION_LINES = 60  # past this a reader cannot hold a function


@pytest.mark.parametrize(("name", "path"), modules(), ids=[n for n, _ in modules()])
def test_a_module_stays_small_enough_to_read_in_one_sitting(name: str, path: Path) -> None:
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{name}: split it by job"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{name}.{node.name} is {length} lines"
