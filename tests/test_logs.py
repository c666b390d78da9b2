"""``--log-format json``: one JSON object per log line, with the station id when the record is
about one station; in-process through the formatter, and for real through ``ocpp-trio serve``."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
from helpers.station import NOW, boot_router, running_station
from interop.harness import run_process, run_station, serve_command

from ocpp_trio import Station
from ocpp_trio.cli.logs import JsonFormatter
from ocpp_trio.cli.main import build_parser
from ocpp_trio.messages import v2_0_1
from ocpp_trio.protocol.supervisor import RegistrationStatus

TIMEOUT = 25.0
KEYS = {"time", "level", "logger", "message"}


@contextmanager
def json_log(name: str) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def objects(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_records_of_a_station_carry_its_id(autojump_clock: Any) -> None:
    app = logging.getLogger("test_logs.app")
    router = boot_router()

    @router.on(v2_0_1.HeartbeatRequest)
    async def heartbeat(
        station: Station, request: v2_0_1.HeartbeatRequest
    ) -> v2_0_1.HeartbeatResponse:
        app.info("heartbeat from %s", station.identity)
        try:
            raise ValueError("boom")
        except ValueError:
            app.exception("it failed")
        return v2_0_1.HeartbeatResponse(current_time=NOW)

    with json_log("test_logs.app") as out:
        app.info("outside any station: \N{SNOWMAN}")
        accepted = RegistrationStatus.ACCEPTED
        async with running_station(router, initial_status=accepted) as (_, fake):
            await fake.call(v2_0_1.HeartbeatRequest())
        app.info("for another station", extra={"station_id": "CS9"})
    outside, inside, failed, explicit = objects(out)
    for record in (outside, inside, failed, explicit):
        assert set(record) >= KEYS
        assert record["logger"] == "test_logs.app"
        assert record["time"].endswith("Z")
    assert outside["message"] == "outside any station: \N{SNOWMAN}"
    assert outside["level"] == "INFO"
    assert "station" not in outside
    assert inside["message"] == "heartbeat from CS1"
    assert inside["station"] == "CS1"
    assert failed["level"] == "ERROR"
    assert failed["station"] == "CS1"
    assert "ValueError: boom" in failed["exception"]
    assert explicit["station"] == "CS9"
    assert len(out.getvalue().splitlines()) == 4  # one line per record, traceback included


def test_the_option() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).log_format == "text"
    assert parser.parse_args(["serve", "--log-format", "json"]).log_format == "json"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-format", "xml"])


@pytest.mark.slow
async def test_serve_logs_json_lines() -> None:
    command = serve_command("--port", "0", "--no-admin", "--log-format", "json")
    with trio.fail_after(TIMEOUT):
        async with run_process(command) as server:
            (line,) = await server.stderr.wait_for(lambda line: "listening on ws://" in line)
            listening = json.loads(line)
            port = int(listening["message"].split(":")[2].split("/")[0])
            async with run_station(port, "CLI-J", "2.0.1", hold=0.2) as (station, _):
                assert await station.wait() == 0
            await server.stderr.wait_for(lambda line: "disconnected" in line)
            server.process.send_signal(signal.SIGINT)
            assert await server.wait() == 0
    records = [json.loads(line) for line in server.stderr.lines]
    assert all(set(r) >= KEYS for r in records)
    assert listening["logger"] == "ocpp_trio.cli"
    exchanges = [r for r in records if r["logger"] == "ocpp_trio.exchange"]
    assert exchanges
    assert {r["station"] for r in exchanges} == {"CLI-J"}
    assert exchanges[0]["message"].startswith("CLI-J 2.0.1 station->csms BootNotification ok")
    served = [r for r in records if r["message"].startswith("station 'CLI-J': serving")]
    assert [r.get("station") for r in served] == ["CLI-J"]
    assert not any(r.get("station") for r in records if "listening on" in r["message"])
