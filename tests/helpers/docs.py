"""The code of the README and the docs, as text: the example programs, and every Python block."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the pages whose code the tests read: the README and every page of the documentation site
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]

_EXAMPLE = re.compile(
    r"<!-- example:begin -->\s*```python\n(.*?)```\s*<!-- example:end -->", re.DOTALL
)
_COMMAND = re.compile(r'python3? -c "([^"]*)"')
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)


def examples(relative: str) -> list[str]:
    """The complete programs of a page: the ``python`` blocks between ``<!-- example:begin -->``
    and ``<!-- example:end -->``, in page order."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    return [textwrap.dedent(found) for found in _EXAMPLE.findall(text)]


def example(relative: str) -> str:
    """The page's last complete program (the whole one, where a tutorial builds up to it)."""
    found = examples(relative)
    assert found, f"{relative} lost its example markers"
    return found[-1]


def python_blocks(relative: str) -> list[tuple[int, str]]:
    """Every fenced ``python`` (or ``py``) block of a page, with the line its code starts on;
    ``pycon`` blocks (an interactive session) give the code of their ``>>>`` and ``...``
    lines, and a ``python -c "..."`` command anywhere on the page its code."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    blocks = [
        (text.count("\n", 0, command.start()) + 1, command.group(1))
        for command in _COMMAND.finditer(text)
    ]
    for fence in _FENCE.finditer(text):
        info = fence.group("info").strip().split(" ")[0].strip("{}")
        line = text.count("\n", 0, fence.start("body")) + 1
        body = textwrap.dedent(fence.group("body"))
        if info in ("python", "py", "python3"):
            blocks.append((line, body))
        elif info == "pycon":
            code = [row[4:] for row in body.splitlines() if row.startswith((">>> ", "... "))]
            blocks.append((line, "\n".join(code) + "\n"))
    return blocks
