"""The sans-IO layers import neither trio nor trio_websocket."""

from __future__ import annotations

import json
import subprocess
import sys

SANS_IO_MODULES = [
    "ocpp_trio._version",
    "ocpp_trio._errors",
    "ocpp_trio._frames",
    "ocpp_trio._rpc",
    "ocpp_trio.messages",
    "ocpp_trio.messages.v1_6",
    "ocpp_trio.messages.v2_0_1",
    "ocpp_trio.messages.v2_1",
]

# Importing a submodule runs ocpp_trio/__init__.py first, which (rightly) pulls in trio for the
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
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("trio", "trio_websocket"))))
"""


def test_sans_io_modules_do_not_import_trio() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(SANS_IO_MODULES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []
