"""``ocpp-trio serve``: the command line, the default handler set, the exchange log, shutdown.

Exit status: a server stopped by SIGINT (Ctrl-C) or SIGTERM exits with **0** and no traceback
(see ``ocpp_trio/_cli.py``); 1 when it cannot start, 2 for a command-line error.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import signal
import socket
from typing import Any

import pytest
import trio
from helpers.station import FakeStation, boot_request, error_of, running_station
from interop.harness import ROOT, RunningProcess, run_process, run_station, serve_command

from ocpp_trio import CallError, ErrorCode, Exchange, Version
from ocpp_trio.cli.main import ExchangeLogger, _config, build_parser, default_router, summarize
from ocpp_trio.messages import Direction, Response, decode_request, v1_6, v2_0_1, v2_1

EXCHANGE_LINE = re.compile(
    r" INFO ocpp_trio\.exchange: (?P<identity>\S+) (?P<version>\S+) (?P<direction>\S+) "
    r"(?P<action>\w+) (?P<outcome>\S+) req=(?P<req>.*) res=(?P<res>.*) \(\d+\.\d ms\)$"
)
TIMEOUT = 25.0


# -- the command line, in-process --------------------------------------------------------------


def test_parser_defaults_and_versions() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.ping_interval, args.log_level) == (
        "127.0.0.1",
        9000,
        30.0,
        "INFO",
    )
    assert _config(args).server.versions == (Version.V16, Version.V201, Version.V21)
    args = build_parser().parse_args(
        ["serve", "--versions", "2.1,2.0.1", "--versions", "2.1", "--ping-interval", "0"]
    )
    config = _config(args)
    assert config.server.versions == (Version.V21, Version.V201)
    assert config.server.ping_interval == 0
    assert build_parser().parse_args(["serve", "--log-level", "debug"]).log_level == "DEBUG"


def test_the_message_rate_options() -> None:
    station = _config(build_parser().parse_args(["serve"])).station
    assert (station.max_message_rate, station.message_burst) == (50.0, 200)
    argv = ["serve", "--max-message-rate", "5.5", "--message-burst", "30"]
    station = _config(build_parser().parse_args(argv)).station
    assert (station.max_message_rate, station.message_burst) == (5.5, 30)
    station = _config(build_parser().parse_args(["serve", "--max-message-rate", "0"])).station
    assert station.max_message_rate is None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["serve", "--versions", "1.5"],
        ["serve", "--ping-interval", "-1"],
        ["serve", "--ping-interval", "nan"],
        ["serve", "--call-timeout", "0"],
        ["serve", "--heartbeat-interval", "-5"],
        ["serve", "--payload-chars", "x"],
        ["serve", "--boot-status", "Maybe"],
        ["serve", "--max-message-rate", "-1"],
        ["serve", "--max-message-rate", "inf"],
        ["serve", "--message-burst", "0"],
    ],
)
def test_parser_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        build_parser().parse_args(argv)
    assert exc_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_summarize_cuts_long_payloads() -> None:
    request = v2_0_1.HeartbeatRequest()
    assert summarize(request, 200) == "{}"
    assert summarize(None, 200) == "-"
    meter = decode_request(
        Version.V16,
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": "1"}] * 10}
            ],
        },
    )
    full = summarize(meter, 0)
    assert json.loads(full)["connectorId"] == 1
    cut = summarize(meter, 40)
    assert len(cut) == 40
    assert cut.endswith("...")


def exchange(**overrides: Any) -> Exchange:
    fields: dict[str, Any] = {
        "identity": "CS1",
        "version": Version.V201,
        "direction": Direction.STATION_TO_CSMS,
        "message_id": "1",
        "action": "Heartbeat",
        "request": v2_0_1.HeartbeatRequest(),
        "started": 1.0,
        "finished": 1.0025,
    }
    fields.update(overrides)
    return Exchange(**fields)


async def test_exchange_logger_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ocpp_trio.exchange")
    log_exchange = ExchangeLogger(payload_chars=50)
    station: Any = None  # the logger reads only the exchange
    response = v2_0_1.HeartbeatResponse(
        current_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    )
    await log_exchange(station, exchange(response=response))
    await log_exchange(
        station,
        exchange(
            direction=Direction.CSMS_TO_STATION,
            action="Reset",
            request=v2_0_1.ResetRequest(type=v2_0_1.ResetEnumType.IMMEDIATE),
            error=CallError(ErrorCode.NOT_SUPPORTED, "no"),
            version=Version.V16,
        ),
    )
    first, second = caplog.records
    assert first.levelno == logging.INFO
    assert first.getMessage() == (
        'CS1 2.0.1 station->csms Heartbeat ok req={} res={"currentTime":"2024-01-01T00:00:00Z"} '
        "(2.5 ms)"
    )
    assert second.levelno == logging.WARNING
    assert second.getMessage().startswith(
        'CS1 1.6 csms->station Reset error=NotSupported (no) req={"type":"Immediate"} res=- '
    )


# -- the default handler set, over a memory transport ------------------------------------------


async def booted(fake: FakeStation) -> None:
    response = await fake.exchange(boot_request(fake.version))
    assert str(getattr(response, "status", None)) == "Accepted", response


async def call_json(fake: FakeStation, action: str, payload: dict[str, Any]) -> Any:
    return await fake.exchange(decode_request(fake.version, action, payload))  # type: ignore[arg-type]


NOW = "2024-01-01T00:00:00Z"


async def test_default_router_16(autojump_clock: Any) -> None:
    router = default_router(interval=60)
    async with running_station(router, Version.V16) as (_station, fake):
        boot = await fake.exchange(boot_request(Version.V16))
        assert isinstance(boot, v1_6.BootNotificationResponse)
        assert boot.interval == 60
        assert boot.status is v1_6.RegistrationStatus.ACCEPTED
        ids = []
        # the same StartTransaction twice (a station retrying it), then another one
        for connector in (1, 1, 2):
            started = await call_json(
                fake,
                "StartTransaction",
                {"connectorId": connector, "idTag": "T", "meterStart": 0, "timestamp": NOW},
            )
            assert isinstance(started, v1_6.StartTransactionResponse)
            assert started.id_tag_info.status is v1_6.AuthorizationStatus.ACCEPTED
            ids.append(started.transaction_id)
        assert ids[0] == ids[1] != ids[2]
        ids.pop(0)
        stopped = await call_json(
            fake,
            "StopTransaction",
            {"transactionId": ids[0], "meterStop": 10, "timestamp": NOW, "idTag": "T"},
        )
        assert stopped.id_tag_info.status is v1_6.AuthorizationStatus.ACCEPTED
        stopped = await call_json(
            fake, "StopTransaction", {"transactionId": ids[1], "meterStop": 10, "timestamp": NOW}
        )
        assert stopped == v1_6.StopTransactionResponse()
        transfer = await call_json(fake, "DataTransfer", {"vendorId": "X"})
        assert transfer.status is v1_6.DataTransferStatus.UNKNOWN_VENDOR_ID
        firmware = await call_json(fake, "FirmwareStatusNotification", {"status": "Installed"})
        assert firmware == v1_6.FirmwareStatusNotificationResponse()
        # no CA behind this CSMS: declined, not faked
        refused = await call_json(fake, "SignCertificate", {"csr": "x"})
        assert error_of(refused)[0] == "NotSupported"


@pytest.mark.parametrize("module", [v2_0_1, v2_1], ids=["2.0.1", "2.1"])
async def test_default_router_2x(module: Any, autojump_clock: Any) -> None:
    version = module.BootNotificationRequest.VERSION
    async with running_station(default_router(), version) as (_station, fake):
        await booted(fake)
        authorize = await call_json(
            fake, "Authorize", {"idToken": {"idToken": "T", "type": "ISO14443"}}
        )
        assert authorize.id_token_info.status is module.AuthorizationStatusEnumType.ACCEPTED
        event = {
            "eventType": "Started",
            "timestamp": NOW,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "TX"},
        }
        plain = await call_json(fake, "TransactionEvent", event)
        assert plain == module.TransactionEventResponse()
        with_token = await call_json(
            fake,
            "TransactionEvent",
            {**event, "seqNo": 1, "idToken": {"idToken": "T", "type": "ISO14443"}},
        )
        assert with_token.id_token_info.status is module.AuthorizationStatusEnumType.ACCEPTED
        for action, payload in [
            (
                "StatusNotification",
                {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
            ),
            ("NotifyReport", {"requestId": 1, "generatedAt": NOW, "seqNo": 0}),
            ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": NOW}),
            ("LogStatusNotification", {"status": "Idle"}),
            ("FirmwareStatusNotification", {"status": "Installed"}),
        ]:
            answer = await call_json(fake, action, payload)
            assert isinstance(answer, Response), (action, answer)
            assert answer.to_json() == {}, (action, answer)
        transfer = await call_json(fake, "DataTransfer", {"vendorId": "X"})
        assert transfer.status is module.DataTransferStatusEnumType.UNKNOWN_VENDOR_ID
        refused = await call_json(fake, "SignCertificate", {"csr": "x"})
        assert error_of(refused)[0] == "NotSupported"


async def test_default_router_id_tokens_decide_transaction_messages(autojump_clock: Any) -> None:
    """The idTokens list reaches the transaction messages too (through the runtime's default
    answers, which ask the Authorize handler)."""
    router = default_router(id_tokens={"Alice01"})
    async with running_station(router, Version.V16) as (_station, fake):
        await fake.exchange(boot_request(Version.V16))
        statuses = []
        for connector, tag in enumerate(("ALICE01", "Mallory"), start=1):
            started = await call_json(
                fake,
                "StartTransaction",
                {"connectorId": connector, "idTag": tag, "meterStart": 0, "timestamp": NOW},
            )
            statuses.append(started.id_tag_info.status)
        assert statuses == [v1_6.AuthorizationStatus.ACCEPTED, v1_6.AuthorizationStatus.INVALID]
    async with running_station(router, Version.V201) as (_station, fake):
        await booted(fake)
        answers = []
        for seq_no, token in enumerate(("Alice01", "alice01")):
            answer = await call_json(
                fake,
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": NOW,
                    "triggerReason": "Authorized",
                    "seqNo": seq_no,
                    "transactionInfo": {"transactionId": f"TX{seq_no}"},
                    "idToken": {"idToken": token, "type": "ISO14443"},
                },
            )
            answers.append(answer.id_token_info.status)
        assert answers == [
            v2_0_1.AuthorizationStatusEnumType.ACCEPTED,
            v2_0_1.AuthorizationStatusEnumType.INVALID,
        ]


# -- python -m ocpp_trio serve, for real -------------------------------------------------------


async def listening_port(server: RunningProcess) -> int:
    (line,) = await server.stderr.wait_for(lambda line: "listening on ws://" in line)
    found = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
    assert found, line
    return int(found.group(1))


def exchange_lines(server: RunningProcess) -> list[re.Match[str]]:
    return [m for line in server.stderr.lines if (m := EXCHANGE_LINE.search(line))]


@pytest.mark.slow
async def test_serve_logs_every_exchange_and_stops_on_sigint() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_process(serve_command("--port", "0")) as server:
            port = await listening_port(server)
            async with run_station(port, "CLI-1", "2.0.1", "--transactions", hold=0.2) as (
                station,
                out,
            ):
                assert await station.wait() == 0
            boot = out.of("call_result", "BootNotification")[0]["payload"]
            assert boot["status"] == "Accepted"
            assert boot["interval"] == 300
            assert not out.of("call_error")
            sent = [e["action"] for e in out.of("call_sent")]
            assert len(sent) >= 8  # boot, heartbeat, status, meter values, transactions, ...
            # one line per exchange, in order, all answered
            await server.stderr.wait_for(lambda line: bool(EXCHANGE_LINE.search(line)), len(sent))
            await server.stderr.wait_for(lambda line: "'CLI-1'" in line and "disconnected" in line)
            lines = exchange_lines(server)
            assert [m["action"] for m in lines] == sent
            assert {(m["identity"], m["version"], m["direction"]) for m in lines} == {
                ("CLI-1", "2.0.1", "station->csms")
            }
            assert {m["outcome"] for m in lines} == {"ok"}
            assert json.loads(lines[0]["req"])["chargingStation"]["vendorName"] == "InteropVendor"
            assert json.loads(lines[0]["res"])["status"] == "Accepted"

            server.process.send_signal(signal.SIGINT)
            assert await server.wait() == 0
    stderr = "\n".join(server.stderr.lines)
    assert "Traceback" not in stderr
    assert "SIGINT received: shutting down" in stderr
    assert not server.stdout.lines


@pytest.mark.slow
async def test_sigint_closes_connected_stations_going_away() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_process(
            serve_command("--port", "0", "--versions", "1.6", "--ping-interval", "0")
        ) as server:
            port = await listening_port(server)
            async with run_station(port, "CLI-2", "1.6", hold=20) as (station, out):
                await out.wait_for("idle")
                server.process.send_signal(signal.SIGINT)
                assert await server.wait() == 0
                (closed,) = await out.wait_for("closed")
                assert await station.wait() == 0
    assert closed["code"] == 1001
    stderr = "\n".join(server.stderr.lines)
    assert "Traceback" not in stderr
    assert "OCPP 1.6)" in stderr  # only 1.6 offered


@pytest.mark.slow
async def test_serve_port_taken_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                serve_command("--port", str(port)),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=ROOT,
            )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"cannot serve on 127.0.0.1:{port}" in stderr
