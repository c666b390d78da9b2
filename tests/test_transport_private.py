"""The package uses no private attribute of wsproto, trio-websocket or argparse (the command
line's parser), writes to no descriptor with ``os.write``, and declares its dependencies with
upper bounds.

The check reads the source (``ast``): an access ``x._name`` where ``_name`` is a private name of
one of those libraries (any single-underscore name their own source defines or uses) is allowed
only on ``self``/``cls`` of a class that does not inherit from them; ``getattr``/``setattr``/
``hasattr``/``delattr`` with a private name are refused outright.  A class deriving from a library
class may not touch the private names that class's own source uses.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import pathlib
import re
import tomllib

import pytest

import ocpp_trio

PACKAGE = pathlib.Path(ocpp_trio.__file__).parent
ROOT = PACKAGE.parent
LIBRARIES = ("wsproto", "trio_websocket", "argparse")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _names_in(tree: ast.AST) -> set[str]:
    """Private attribute and definition names in a syntax tree."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            found.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _private(
            node.name
        ):
            found.add(node.name)
    return found


@functools.cache
def library_private_names() -> frozenset[str]:
    """Every private name the libraries' own source defines or uses (those installed)."""
    names: set[str] = set()
    for library in LIBRARIES:
        spec = importlib.util.find_spec(library)
        if spec is None or spec.origin is None:  # trio-websocket is a development tool only
            continue
        origin = pathlib.Path(spec.origin)
        # a package: all its modules; a module (argparse): itself
        paths = origin.parent.rglob("*.py") if spec.submodule_search_locations else [origin]
        for path in paths:
            names |= _names_in(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(names)


def _imported(tree: ast.AST) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) for every ``from module import name``."""
    return {
        alias.asname or alias.name: (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def _inherited_private_names(node: ast.ClassDef, imported: dict[str, tuple[str, str]]) -> set[str]:
    """The private names used by the library classes ``node`` derives from (and their bases)."""
    names: set[str] = set()
    for base in node.bases:
        if not isinstance(base, ast.Name) or base.id not in imported:
            continue
        module, name = imported[base.id]
        if module.split(".")[0] not in LIBRARIES:
            continue
        cls = getattr(importlib.import_module(module), name)
        for ancestor in cls.__mro__:
            if ancestor.__module__.split(".")[0] in LIBRARIES:
                names |= _names_in(ast.parse(inspect.getsource(ancestor)))
    return names


def violations(source: str, where: str) -> list[str]:
    """What ``source`` does that the rules above forbid."""
    tree = ast.parse(source)
    library = library_private_names()
    imported = _imported(tree)
    problems: list[str] = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner == "os" and node.attr == "write":
                problems.append(f"{line}: os.write")
            elif node.attr in library and owner not in ("self", "cls"):
                problems.append(f"{line}: .{node.attr} may be a library's private attribute")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name == "write" for alias in node.names):
                problems.append(f"{line}: imports os.write")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and node.args[1:]:
                name = node.args[1]
                if (
                    isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                    and _private(name.value)
                ):
                    problems.append(f"{line}: {node.func.id}(..., {name.value!r})")
        elif isinstance(node, ast.ClassDef):
            inherited = _inherited_private_names(node, imported)
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Attribute)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id in ("self", "cls")
                    and inner.attr in inherited
                ):
                    problems.append(
                        f"{where}:{inner.lineno}: {node.name} uses its library base's "
                        f"private .{inner.attr}"
                    )
    return problems


def _modules() -> list[tuple[str, pathlib.Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def test_the_libraries_are_there_to_check_against() -> None:
    names = library_private_names()
    assert {"_proto", "_events", "_h11_connection"} <= names  # wsproto's own
    assert {"_actions", "_SubParsersAction", "_StoreTrueAction"} <= names  # argparse's


def test_no_private_attribute_of_wsproto_or_trio_websocket_and_no_os_write() -> None:
    problems: list[str] = []
    for _, path in _modules():
        problems += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert problems == []


@pytest.mark.parametrize(
    "source",
    [
        "def f(connection):\n    return connection._wsproto\n",
        "def f(request):\n    return getattr(request, '_event', None)\n",
        "def f(connection, x):\n    setattr(connection, '_send_channel', x)\n",
        "import os\ndef f(fd, data):\n    os.write(fd, data)\n",
        "from os import write\n",
        "def f(ws):\n    return ws.connection._proto\n",
        "def f(parser):\n    return parser._actions\n",
        "import argparse\ndef f(a):\n    return isinstance(a, argparse._StoreTrueAction)\n",
    ],
)
def test_the_check_catches_each_kind_of_violation(source: str) -> None:
    assert violations(source, "example.py")


def test_the_check_catches_a_subclass_using_its_bases_private_state() -> None:
    source = (
        "from wsproto.extensions import PerMessageDeflate\n"
        "class Bounded(PerMessageDeflate):\n"
        "    def f(self):\n"
        "        return self._decompressor\n"
    )
    assert any("Bounded" in p for p in violations(source, "example.py"))


def test_the_check_lets_our_own_private_state_be() -> None:
    source = "class A:\n    def f(self):\n        self._decompressor = None\n"
    assert violations(source, "example.py") == []


def test_the_package_does_not_import_trio_websocket() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+trio_websocket\b", re.MULTILINE)
    users = [str(p) for _, p in _modules() if pattern.search(p.read_text(encoding="utf-8"))]
    assert users == []


# --------------------------------------------------------------------------------------------
# Dependencies


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert isinstance(project, dict)
    return project


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    unbounded = [d for d in dependencies if "<" not in d and "==" not in d]
    assert unbounded == []


def test_the_websocket_layer_is_declared_and_trio_websocket_is_a_development_tool() -> None:
    project = _project()
    dependencies = project["dependencies"]
    extras = project["optional-dependencies"]
    assert isinstance(dependencies, list)
    assert isinstance(extras, dict)
    runtime = {_name(d) for d in dependencies}
    assert {"wsproto", "h11", "trio"} <= runtime
    assert "trio-websocket" not in runtime
    assert "trio-websocket" in {_name(d) for d in extras["dev"]}
