"""The documentation's code, as a new user copies it from README.md and docs/*.md.

- Every ``python`` block imports only the supported surface: ``ocpp_trio``,
  ``ocpp_trio.messages`` (and its per-version modules), ``ocpp_trio.errors`` and
  ``ocpp_trio.testing``, and only names of their ``__all__``; never a subpackage module or a
  private name (the subpackages are the layout, docs/design.md).
- Every complete program (between ``<!-- example:begin -->`` and ``<!-- example:end -->``)
  passes ``mypy --strict``: all of them in one mypy run.
- Every program ends with the same ``except* KeyboardInterrupt`` around ``trio.run(main)``, and
  those that can run here stop on a real Ctrl-C without a traceback.

What the programs do is tested where they are: tests/test_readme.py, tests/test_interop.py
(docs/serving.md).
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.docs import PAGES, ROOT, examples, python_blocks
from helpers.process import free_port, interrupted

PUBLIC_MODULES = (
    "ocpp_trio",
    "ocpp_trio.errors",
    "ocpp_trio.messages",
    "ocpp_trio.messages.v1_6",
    "ocpp_trio.messages.v2_0_1",
    "ocpp_trio.messages.v2_1",
    "ocpp_trio.testing",
)

#: how every program of the docs runs ``main``
MAIN_GUARD = """
if __name__ == "__main__":
    try:
        trio.run(main)
    except* KeyboardInterrupt:  # Ctrl-C: stop without a traceback
        pass
"""

#: the programs that run here under a real Ctrl-C: (page, the line it prints once it runs)
RUN_HERE = {
    ("README.md", 0): "listening on",
    ("docs/tutorial.md", 1): "listening on",
    ("docs/serving.md", 0): "listening on",
    ("docs/machines.md", 0): "listening on",
    ("docs/recovery.md", 0): "listening on",
    ("docs/howto-charge-point.md", 0): "connecting to",
}
#: the other programs, and why they cannot run in the test suite as they are
NOT_RUN_HERE = {
    ("docs/tutorial.md", 0): "listens on the fixed port 9000 (its whole version runs)",
    ("docs/security.md", 0): "needs a server certificate and key",
    ("docs/scale-out.md", 0): "needs a PostgreSQL server at its address",
}
#: programs that end by themselves (nothing to interrupt), and what they print
RUN_TO_THE_END = {
    ("docs/security.md", 1): "('SN-0043',) DuplicatePolicy.REFUSE",
}


def programs() -> list[tuple[str, int]]:
    return [(page, i) for page in PAGES for i, _ in enumerate(examples(page))]


# -- imports ---------------------------------------------------------------------------------


def _public_names(module: str) -> set[str]:
    names = set(importlib.import_module(module).__all__)
    return names | {m.rpartition(".")[2] for m in PUBLIC_MODULES if m.rpartition(".")[0] == module}


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``, or ``None`` when it is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return [*base, node.attr]
    return None


def import_problems(code: str) -> list[tuple[int, str]]:
    """What in ``code`` reaches past the public surface: (line, what) pairs."""
    problems = []
    for node in ast.walk(ast.parse(code)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            problems += [
                (line, f"import {alias.name}: not a public module")
                for alias in node.names
                if alias.name.split(".")[0] == "ocpp_trio" and alias.name not in PUBLIC_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level:
            problems.append((line, "a relative import"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ocpp_trio":
            module = node.module or ""
            if module not in PUBLIC_MODULES:
                problems.append((line, f"from {module}: not a public module"))
                continue
            public = _public_names(module)
            problems += [
                (line, f"{module}.{alias.name} is not public")
                for alias in node.names
                if alias.name not in public
            ]
        elif (
            isinstance(node, ast.Attribute) and (parts := _dotted(node)) and parts[0] == "ocpp_trio"
        ):
            # ocpp_trio.x.y: the deepest public module it names, then a public name of it
            depth = max(
                i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in PUBLIC_MODULES
            )
            if depth < len(parts) and parts[depth] not in _public_names(".".join(parts[:depth])):
                problems.append((line, f"{'.'.join(parts[: depth + 1])} is not public"))
    return list(dict.fromkeys(problems))  # a.b.c.d, a.b.c and a.b say the same


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_import_only_public_names(page: str) -> None:
    problems = []
    for start, code in python_blocks(page):
        try:
            found = import_problems(code)
        except SyntaxError as exc:
            found = [(exc.lineno or 1, f"not Python ({exc.msg})")]
        problems += [f"{page}:{start + line - 1}: {what}" for line, what in found]
    assert problems == []


def test_the_pages_have_python_blocks() -> None:
    counted = {page: len(python_blocks(page)) for page in PAGES}
    assert counted["README.md"] >= 1
    assert counted["docs/tutorial.md"] >= 5
    assert counted["docs/messages.md"] >= 3  # the pycon session included
    assert sum(counted.values()) >= 30
    assert any("hash_password" in code for _, code in python_blocks("docs/security.md"))


def test_the_readme_links_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert "docs/tutorial.md" in targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("from ocpp_trio.runtime.station import Station", "from ocpp_trio.runtime.station"),
        ("from ocpp_trio import _private", "ocpp_trio._private is not public"),
        ("from ocpp_trio.messages import v2_0_1, _check", "ocpp_trio.messages._check"),
        ("from ocpp_trio.messages.v2_0_1 import _dt", "ocpp_trio.messages.v2_0_1._dt"),
        ("import ocpp_trio.store.postgres", "import ocpp_trio.store.postgres"),
        ("from .x import y", "a relative import"),
        ("import ocpp_trio\nocpp_trio.runtime.station.Station", "ocpp_trio.runtime is not"),
        ("import ocpp_trio\nx = ocpp_trio.messages._base", "ocpp_trio.messages._base"),
    ],
)
def test_the_import_rule_catches(code: str, problem: str) -> None:
    (found,) = import_problems(code)
    assert problem in found[1]


def test_the_import_rule_lets_public_names_through() -> None:
    code = "\n".join(
        [
            "import trio, ocpp_trio, ocpp_trio.messages.v2_1",
            "from ocpp_trio import Router, open_postgres_store",
            "from ocpp_trio.messages import encode, v1_6, v2_0_1",
            "from ocpp_trio.messages.v2_1 import ResetRequest",
            "from ocpp_trio.errors import CallError",
            "from ocpp_trio.testing import open_fake_station",
            "ocpp_trio.messages.v2_0_1.ResetRequest",
            "ocpp_trio.Router().on",
        ]
    )
    assert import_problems(code) == []


# -- the programs: typed, and Ctrl-C ---------------------------------------------------------


@pytest.mark.slow
def test_the_programs_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for page, i in programs():
        name = re.sub(r"\W", "_", Path(page).stem.lower())
        path = tmp_path / f"{name}_{i}.py"
        path.write_text(examples(page)[i], encoding="utf-8")
        files.append(str(path))
    assert len(files) == len(RUN_HERE) + len(NOT_RUN_HERE) + len(RUN_TO_THE_END)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_program_is_tried_under_ctrl_c_or_says_why_not() -> None:
    assert sorted(programs()) == sorted([*RUN_HERE, *NOT_RUN_HERE, *RUN_TO_THE_END])


@pytest.mark.parametrize(("page", "index"), programs())
def test_every_program_runs_main_the_same_way(page: str, index: int) -> None:
    code = examples(page)[index]
    assert code.endswith(MAIN_GUARD), f"{page}: end the program with{MAIN_GUARD}"
    assert code.count("trio.run(") == 1


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index"), sorted(RUN_HERE))
async def test_ctrl_c_stops_the_program_quietly(page: str, index: int, tmp_path: Path) -> None:
    code = examples(page)[index]
    if "port: int = 9000" in code:
        code = code.replace("port: int = 9000", "port: int = 0")  # any free port
    else:  # a station: towards a port nobody listens on, so that it retries until Ctrl-C
        assert '"ws://127.0.0.1:9000"' in code
        code = code.replace('"ws://127.0.0.1:9000"', f'"ws://127.0.0.1:{free_port()}"')
    program = tmp_path / "program.py"
    program.write_text(code, encoding="utf-8")
    ready = RUN_HERE[page, index]
    command = [sys.executable, "-u", str(program)]
    status, stdout, stderr = await interrupted(command, ready, cwd=tmp_path)
    assert ready in stdout
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


@pytest.mark.parametrize(("page", "index"), sorted(RUN_TO_THE_END))
def test_the_programs_that_end_by_themselves_say_what_the_page_says(
    page: str, index: int, tmp_path: Path
) -> None:
    program = tmp_path / "program.py"
    program.write_text(examples(page)[index], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == RUN_TO_THE_END[page, index]
    assert f"It prints `{RUN_TO_THE_END[page, index]}`" in (ROOT / page).read_text("utf-8")
