"""The example programs of the README and the docs, as text."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def example(relative: str) -> str:
    text = (ROOT / relative).read_text(encoding="utf-8")
    match = re.search(
        r"<!-- example:begin -->\s*```python\n(.*?)```\s*<!-- example:end -->", text, re.DOTALL
    )
    assert match, f"{relative} lost its example markers"
    return textwrap.dedent(match.group(1))
