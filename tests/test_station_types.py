"""The handler API is checked by mypy: correct uses pass, each deliberate mistake is reported.

Runs mypy in a subprocess (a few seconds with a warm cache).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OK = ROOT / "tests" / "type_tests" / "handlers_ok.py"

# Each mistake is on the line after a "# E: <fragment of mypy's message>" comment.
MISTAKES = """\
from __future__ import annotations

import datetime

from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.runtime.handlers import Router, handles
from ocpp_trio.runtime.station import Station
from ocpp_trio.messages import v1_6, v2_0_1

router = Router()
cp_router = ChargePointRouter()
NOW = datetime.datetime.now(datetime.UTC)


# E: "Callable[[Station, BootNotificationRequest], Coroutine[Any, Any, HeartbeatResponse]]"
@router.on(v2_0_1.BootNotificationRequest)
async def wrong_response(
    station: Station, request: v2_0_1.BootNotificationRequest
) -> v2_0_1.HeartbeatResponse:
    return v2_0_1.HeartbeatResponse(current_time=NOW)


# E: "Callable[[Station, HeartbeatRequest], Coroutine[Any, Any, BootNotificationResponse]]"
@router.on(v2_0_1.BootNotificationRequest)
async def wrong_request(
    station: Station, request: v2_0_1.HeartbeatRequest
) -> v2_0_1.BootNotificationResponse:
    raise NotImplementedError


# E: v1_6.BootNotificationResponse]]"; expected
@router.on(v2_0_1.BootNotificationRequest)
async def other_version(
    station: Station, request: v2_0_1.BootNotificationRequest
) -> v1_6.BootNotificationResponse:
    raise NotImplementedError


# E: "Callable[[Station, HeartbeatRequest], Coroutine[Any, Any, None]]"
@router.on(v2_0_1.HeartbeatRequest)
async def returns_nothing(station: Station, request: v2_0_1.HeartbeatRequest) -> None:
    return None


# E: "Callable[[Station, HeartbeatRequest], HeartbeatResponse]"
@router.on(v2_0_1.HeartbeatRequest)
def not_async(station: Station, request: v2_0_1.HeartbeatRequest) -> v2_0_1.HeartbeatResponse:
    return v2_0_1.HeartbeatResponse(current_time=NOW)


class Handlers:
    # E: "Callable[[Handlers, Station, HeartbeatRequest], Coroutine[Any, Any, AuthorizeResponse]]"
    @handles(v2_0_1.HeartbeatRequest)
    async def wrong(
        self, station: Station, request: v2_0_1.HeartbeatRequest
    ) -> v2_0_1.AuthorizeResponse:
        raise NotImplementedError


# E: "Callable[[ChargePoint, BootNotificationRequest], Coroutine[Any, Any,
@router.on(v2_0_1.BootNotificationRequest)
async def other_peer(
    cp: ChargePoint, request: v2_0_1.BootNotificationRequest
) -> v2_0_1.BootNotificationResponse:
    raise NotImplementedError


# E: "Callable[[ChargePoint, ResetRequest], Coroutine[Any, Any, HeartbeatResponse]]"
@cp_router.on(v2_0_1.ResetRequest)
async def cp_wrong_response(
    cp: ChargePoint, request: v2_0_1.ResetRequest
) -> v2_0_1.HeartbeatResponse:
    raise NotImplementedError


# E: "Callable[[ChargePoint, HeartbeatRequest], Coroutine[Any, Any, ResetResponse]]"
@cp_router.on(v2_0_1.ResetRequest)
async def cp_wrong_request(
    cp: ChargePoint, request: v2_0_1.HeartbeatRequest
) -> v2_0_1.ResetResponse:
    raise NotImplementedError


async def calls(station: Station) -> None:
    response = await station.call(v2_0_1.HeartbeatRequest())
    # E: Incompatible types in assignment
    wrong: v2_0_1.ResetResponse = response
    # E: "call" of "Station" has incompatible type
    await station.call(v2_0_1.HeartbeatResponse(current_time=NOW))
"""


def run_mypy(*paths: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_correct_usage_type_checks() -> None:
    output = run_mypy(OK)
    assert "handlers_ok.py" not in output, output


@pytest.mark.slow
def test_mistakes_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "handlers_bad.py"
    bad.write_text(MISTAKES)
    output = run_mypy(bad)
    errors: dict[int, str] = {}
    for line in output.splitlines():
        match = re.match(r".*handlers_bad\.py:(\d+): error: (.*)", line)
        if match:
            errors[int(match.group(1))] = errors.get(int(match.group(1)), "") + match.group(2)
    expected = {
        number + 1: fragment
        for number, text in enumerate(MISTAKES.splitlines(), start=1)
        for fragment in re.findall(r"^\s*# E: (.*)$", text)
    }
    assert len(expected) == 11
    for number, fragment in expected.items():
        assert number in errors, f"line {number}: no error, expected {fragment}\n{output}"
        assert fragment in errors[number], f"line {number}: {errors[number]}"
    unexpected = set(errors) - set(expected)
    assert not unexpected, output
