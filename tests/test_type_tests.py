"""mypy accepts ``type_tests/ok_usage.py`` and rejects every marked line of ``bad_usage.py``.

Each mistake in ``bad_usage.py`` carries a trailing ``# E: <code>`` marker; mypy must report an
error with that code on that line, and no error on any unmarked line.  Each file is checked
by mypy with ``--strict`` and the project's configuration; the cache is the project's
``.mypy_cache`` so that a warm run takes a second (a cold one checks the generated message
modules first).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parent.parent
TYPE_TESTS = Path(__file__).resolve().parent / "type_tests"
OK = TYPE_TESTS / "ok_usage.py"
BAD = TYPE_TESTS / "bad_usage.py"

_MARKER = re.compile(r"#\s*E:\s*([a-z-]+)\s*$")
_REPORT = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>error|note): (?P<text>.*)$")
_CODE = re.compile(r"\[(?P<code>[a-z-]+)\]$")


@functools.cache
def run_mypy(path: Path) -> tuple[str, int, dict[Path, dict[int, list[str]]]]:
    """Run mypy on ``path``: its output, exit status and errors as {file: {line: [codes]}}."""
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--show-error-codes",
            "--no-error-summary",
            "--no-pretty",
            "--hide-error-context",
            "--show-absolute-path",
            str(path),
        ]
    )
    assert not stderr, stderr
    errors: dict[Path, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in stdout.splitlines():
        match = _REPORT.match(line)
        if match is None or match["severity"] != "error":
            continue
        code = _CODE.search(match["text"])
        errors[Path(match["file"]).resolve()][int(match["line"])].append(
            code["code"] if code else "?"
        )
    return stdout, status, errors


def test_ok_usage_type_checks() -> None:
    stdout, status, errors = run_mypy(OK)
    assert not errors, stdout
    assert status == 0, stdout


def test_bad_usage_is_rejected_exactly_where_marked() -> None:
    stdout, status, errors = run_mypy(BAD)
    assert set(errors) <= {BAD}, stdout
    expected: dict[int, str] = {}
    for number, text in enumerate(BAD.read_text(encoding="utf-8").splitlines(), start=1):
        marker = _MARKER.search(text)
        if marker:
            expected[number] = marker[1]
    assert len(expected) >= 15, "the markers were not found"
    reported = errors.get(BAD, {})
    missing = {n: c for n, c in expected.items() if c not in reported.get(n, [])}
    unmarked = {n: codes for n, codes in reported.items() if n not in expected}
    wrong = {n: codes for n, codes in reported.items() if n in expected and codes != [expected[n]]}
    assert not missing, f"mypy did not report these marked lines: {missing}\n{stdout}"
    assert not unmarked, f"mypy reported unmarked lines: {unmarked}\n{stdout}"
    assert not wrong, f"extra or other errors on marked lines: {wrong}\n{stdout}"
    assert status == 1
