"""Check what the built distributions hold: the wheel has the package with its ``py.typed``
marker and the ``ocpp-trio`` command, and none of the tests; the sdist has what building the
wheel again needs.

    python scripts/check_dist.py dist/ocpp_trio-*.whl dist/ocpp_trio-*.tar.gz

Exit status 0 when both are right, 1 otherwise (every problem is printed).
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path


def wheel_problems(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        commands = wheel.read(entry_points).decode() if entry_points else ""
    problems = []
    for needed in ("ocpp_trio/py.typed", "ocpp_trio/__init__.py", "ocpp_trio/messages/v2_1.py"):
        if needed not in names:
            problems.append(f"{path.name}: {needed} is missing")
    tests = [n for n in names if n.startswith("tests/") or "/tests/" in n or "conftest" in n]
    if tests:
        problems.append(f"{path.name}: holds tests: {', '.join(tests[:5])}")
    outside = sorted({n.split("/")[0] for n in names} - {"ocpp_trio"})
    if any(not n.endswith(".dist-info") for n in outside):
        problems.append(f"{path.name}: holds more than the package: {', '.join(outside)}")
    if "ocpp-trio = ocpp_trio.__main__:main" not in commands:
        problems.append(f"{path.name}: no ocpp-trio command in its entry points")
    return problems


def sdist_problems(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    return [
        f"{path.name}: {needed} is missing"
        for needed in ("pyproject.toml", "README.md", "ocpp_trio/py.typed")
        if needed not in names
    ]


def main(paths: list[str]) -> int:
    problems: list[str] = []
    kinds = {".whl": wheel_problems, ".gz": sdist_problems}
    for name in paths:
        path = Path(name)
        check = kinds.get(path.suffix)
        if check is None:
            problems.append(f"{name}: neither a wheel nor an sdist")
            continue
        problems += check(path)
    if not any(Path(p).suffix == ".whl" for p in paths):
        problems.append("no wheel given")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"distributions checked: {', '.join(Path(p).name for p in paths)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
