"""docs/howto-admin.md's endpoint reference is generated from the OpenAPI description and
cannot drift from it: ``scripts/gen_admin_docs.py --check`` passes on the repository and fails
on a page edited by hand."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_admin_docs.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_endpoint_reference_is_up_to_date() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_hand_edited_reference_fails_the_check(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "howto-admin.md"
    page.parent.mkdir()
    shutil.copy(ROOT / "docs" / "howto-admin.md", page)
    text = page.read_text(encoding="utf-8")
    assert "| Send a CALL |" in text
    page.write_text(text.replace("| Send a CALL |", "| Send a call |"), encoding="utf-8")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "out of date" in result.stdout


def test_every_operation_is_in_the_page() -> None:
    from ocpp_trio.csms.admin_openapi import openapi_description

    text = (ROOT / "docs" / "howto-admin.md").read_text(encoding="utf-8")
    for path, operations in openapi_description()["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in text
