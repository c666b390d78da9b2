"""The layering rules of the package, checked on the imports the code actually makes.

Layers, lowest first (a module may import its own layer and the ones below it):

    protocol (+ errors, messages)  sans-IO: frames, RPC state, registration FSM, versions
    domain                         sans-IO records: EVSEs, transactions, reports, device model
    store                          persistence (never the runtime)
    transport                      connections; the only place a WebSocket library is imported
    runtime                        one station's tasks, handlers, events, machines
    security, client, csms         built on the runtime
    cli                            the command line
    testing                        public helpers for the tests of applications

Three checks: a static one over every ``import`` statement of every module (type-checking-only
imports included, since they are dependencies too); one that no ``if TYPE_CHECKING:`` import
closes a cycle (a module that imports another only for its types, while that one imports it
back, is a knot a Protocol or a generic should untie); and a run-time one that imports the
sans-IO layers in a fresh interpreter and looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ocpp_trio"

#: For each layer, the ocpp_trio layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    # errors names domain.reports.Report in annotations only (never imported at run time)
    "errors": {"protocol", "domain"},
    "protocol": {"errors", "messages"},
    "messages": {"errors", "protocol"},
    "domain": {"errors", "messages", "protocol"},
    "store": {"errors", "messages", "protocol", "domain"},
    "transport": {"errors", "messages", "protocol"},
    "runtime": {"errors", "messages", "protocol", "domain", "store", "transport"},
    "security": {"errors", "messages", "protocol", "domain", "store", "transport", "runtime"},
    "client": {"errors", "messages", "protocol", "domain", "transport", "runtime"},
    "csms": {
        "errors",
        "messages",
        "protocol",
        "domain",
        "store",
        "transport",
        "runtime",
        "security",
    },
    "cli": {
        "errors",
        "messages",
        "protocol",
        "domain",
        "store",
        "transport",
        "runtime",
        "security",
        "client",
        "csms",
    },
    "testing": {
        "errors",
        "messages",
        "protocol",
        "domain",
        "store",
        "transport",
        "runtime",
        "client",
        "csms",
    },
}
#: Third-party libraries that only some layers may import.
RESTRICTED = {
    # errors: only inside the function that makes the trio-derived classes on first use (the
    # run-time check below proves that importing it does not load trio)
    "trio": {
        "errors",
        "store",
        "transport",
        "runtime",
        "security",
        "client",
        "csms",
        "cli",
        "testing",
    },
    "trio_websocket": {"transport"},
    "wsproto": {"transport"},
    # the optional PostgreSQL store's driver stays inside the store layer
    "psycopg": {"store"},
    "psycopg_pool": {"store"},
    # metrics are formatted at scrape time, never on the per-call path
    "prometheus_client": {"csms", "cli"},
}
#: The sans-IO layers, whose import must not load trio (checked at run time too).
SANS_IO = ("protocol", "domain", "messages", "errors")


def _layer(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "ocpp_trio"
    if len(parts) == 1:
        return "__init__"
    return parts[1].removesuffix(".py")


def _modules() -> list[tuple[str, pathlib.Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def _imports(path: pathlib.Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with the line (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "ocpp_trio":  # `from ocpp_trio import messages`: the submodule
                found.extend((node.lineno, f"ocpp_trio.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, base))
    return found


def _violations() -> list[str]:
    problems = []
    for module, path in _modules():
        layer = _layer(module)
        if layer in ("__init__", "__main__"):
            continue
        allowed = ALLOWED[layer]
        for line, imported in _imports(path, module):
            top = imported.split(".")[0]
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if top == "ocpp_trio":
                if imported == "ocpp_trio":
                    problems.append(f"{where}: imports the package root")
                    continue
                target = _layer(imported)
                if target not in allowed and target != layer:
                    problems.append(f"{where}: {layer} may not import {imported}")
            elif top in RESTRICTED and layer not in RESTRICTED[top]:
                problems.append(f"{where}: {layer} may not import {top}")
    return problems


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_lines(path: pathlib.Path) -> set[int]:
    """The lines of the import statements under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        lines.add(sub.lineno)
    return lines


def _module_of(imported: str, known: set[str]) -> str | None:
    """The package module an import names (``a.b.C`` -> ``a.b``), or ``None`` when outside."""
    while imported and imported not in known:
        imported = imported.rpartition(".")[0]
    return imported or None


def _import_graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """The package's run-time import graph, and its type-checking-only imports."""
    modules = _modules()
    known = {name for name, _ in modules}
    graph: dict[str, set[str]] = {name: set() for name in known}
    typing_only: list[tuple[str, int, str]] = []
    for module, path in modules:
        checking = _type_checking_lines(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            (node.lineno, f"{node.module}.{alias.name}")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            for alias in node.names
        }
        for line, imported in [*_imports(path, module), *names]:
            target = _module_of(imported, known)
            if target is None or target == module:
                continue
            if line in checking:
                typing_only.append((module, line, target))
            else:
                graph[module].add(target)
    return graph, typing_only


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def _type_checking_knots() -> list[str]:
    graph, typing_only = _import_graph()
    return sorted(
        {
            f"{module}:{line}: imports {target} for types only, and {target} imports it back"
            for module, line, target in typing_only
            if _reaches(graph, target, module)
        }
    )


def test_no_type_checking_import_closes_a_cycle() -> None:
    assert _type_checking_knots() == []


def test_the_knot_checker_sees_a_knot() -> None:
    """Not vacuous: the graph has the real edges, and a typing-only edge back is a knot."""
    graph, _ = _import_graph()
    assert _reaches(graph, "ocpp_trio.runtime.station", "ocpp_trio.runtime.events")
    assert not _reaches(graph, "ocpp_trio.runtime.events", "ocpp_trio.runtime.station")
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
    assert _is_type_checking(ast.parse(source).body[1].test)  # type: ignore[attr-defined]


def test_every_layer_is_known() -> None:
    layers = {_layer(module) for module, _ in _modules()} - {"__init__", "__main__"}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_layers_import_only_what_they_may() -> None:
    assert _violations() == []


def test_the_checker_catches_a_violation(tmp_path: pathlib.Path) -> None:
    """The static check is not vacuous: a domain module importing trio or the runtime fails."""
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom ocpp_trio.runtime import station\nfrom . import evse\n")
    found = _imports(bad, "ocpp_trio.domain.bad")
    assert (1, "trio") in found
    assert (2, "ocpp_trio.runtime") in found
    assert (3, "ocpp_trio.domain") in found
    assert _layer("ocpp_trio.runtime") not in ALLOWED["domain"]
    assert "domain" not in RESTRICTED["trio"]


# Importing a submodule runs ocpp_trio/__init__.py first, which rightly pulls in trio for the
# runtime; so the check stubs the package object and loads the modules by path from it.
PROGRAM = """
import importlib, json, sys, types
from importlib.util import find_spec

spec = find_spec("ocpp_trio")
package = types.ModuleType("ocpp_trio")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["ocpp_trio"] = package
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(
    m for m in sys.modules if m.split(".")[0] in ("trio", "trio_websocket", "wsproto")
)))
"""


@pytest.mark.parametrize("layer", SANS_IO)
def test_sans_io_layers_do_not_load_trio(layer: str) -> None:
    names = [module for module, _ in _modules() if _layer(module) == layer]
    assert names
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(names)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []


def test_trio_errors_are_trio_exceptions() -> None:
    """The errors made on first use are real subclasses of trio's, and importable by name."""
    import trio

    from ocpp_trio import errors

    assert issubclass(errors.CallTimeoutError, trio.TooSlowError)
    assert issubclass(errors.ConnectionLostError, trio.BrokenResourceError)
    assert issubclass(errors.TransportClosedError, errors.ConnectionLostError)
    assert issubclass(errors.ConnectFailedError, errors.ConnectionLostError)
    assert issubclass(errors.ReportTimeoutError, errors.ReportError)
    assert issubclass(errors.TransactionTimeoutError, trio.TooSlowError)
    assert errors.TransportClosedError.__module__ == "ocpp_trio.errors"
    assert str(errors.TransportClosedError(1009, "too big")) == "connection closed (1009 too big)"
    with pytest.raises(AttributeError):
        _ = errors.NoSuchError  # type: ignore[attr-defined]


def test_test_modules_do_not_import_each_other() -> None:
    """Shared test code lives in tests/helpers/ (and fixtures in conftest.py)."""
    tests = pathlib.Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [
                f"{path.relative_to(tests)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[-1].startswith("test_") or name.startswith("tests.")
            ]
    assert offenders == []
