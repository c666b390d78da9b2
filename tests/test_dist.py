"""``scripts/check_dist.py``: it finds what a wheel must hold and what it must not."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from types import ModuleType

ENTRY_POINTS = "[console_scripts]\nocpp-trio = ocpp_trio.__main__:main\n"
GOOD = {
    "ocpp_trio/__init__.py": "",
    "ocpp_trio/py.typed": "",
    "ocpp_trio/messages/v2_1.py": "",
    "ocpp_trio-1.0.dist-info/entry_points.txt": ENTRY_POINTS,
}


def load_script() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "scripts" / "check_dist.py"
    spec = importlib.util.spec_from_file_location("check_dist", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_dist = load_script()


def wheel(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "ocpp_trio-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as out:
        for name, text in files.items():
            out.writestr(name, text)
    return path


def test_a_good_wheel_passes(tmp_path: Path) -> None:
    path = wheel(tmp_path, GOOD)
    assert check_dist.wheel_problems(path) == []
    assert check_dist.main([str(path)]) == 0


def test_a_wheel_without_py_typed_or_with_tests_fails(tmp_path: Path) -> None:
    files = {k: v for k, v in GOOD.items() if k != "ocpp_trio/py.typed"}
    files["tests/test_x.py"] = ""
    files["ocpp_trio-1.0.dist-info/entry_points.txt"] = ""
    path = wheel(tmp_path, files)
    problems = check_dist.wheel_problems(path)
    assert any("ocpp_trio/py.typed is missing" in p for p in problems)
    assert any("holds tests: tests/test_x.py" in p for p in problems)
    assert any("no ocpp-trio command" in p for p in problems)
    assert check_dist.main([str(path)]) == 1
