"""The command line end to end: ``serve`` (admin API, stations file, id tokens, config file,
Ctrl-C with a store), ``simulate`` and ``demo``, as real processes on real sockets where it
matters, in-process where that is enough.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.admin import http
from helpers.client import Link
from interop.harness import RunningProcess, run_process

from ocpp_trio import CSMS, Version, open_csms
from ocpp_trio.cli.main import (
    build_parser,
    default_router,
    serve,
)
from ocpp_trio.cli.serve_options import apply_config_file, load_id_tokens, load_serve_files
from ocpp_trio.cli.simulate import build_simulator_config
from ocpp_trio.client.config import ChargePointConfig, RetryBackOff
from ocpp_trio.client.entry import open_charge_point
from ocpp_trio.client.simulator import Simulator, SimulatorConfig
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.store.sqlite import open_sqlite_store

TIMEOUT = 40.0
QUICK = RetryBackOff(wait_minimum=0.05, random_range=0.0, repeat_times=1)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ocpp_trio", *args]


async def logged_port(process: RunningProcess, pattern: str) -> int:
    line, *_ = await process.stderr.wait_for(lambda line: re.search(pattern, line) is not None)
    found = re.search(pattern, line)
    assert found, line
    return int(found.group(1))


async def logged_token(process: RunningProcess) -> str:
    """The admin token ``serve`` shows once, when it makes one."""
    pattern = r"admin API token \(.*\): (\S+)$"
    line, *_ = await process.stderr.wait_for(lambda line: re.search(pattern, line) is not None)
    found = re.search(pattern, line)
    assert found, line
    return found.group(1)


async def wait_for_answer(
    port: int, path: str, ready: Any, *, token: str, every: float = 0.2
) -> Any:
    """GET ``path`` from the admin API until ``ready(body)``; returns the body."""
    while True:
        answer = await http(port, "GET", path, token=token)
        assert answer.status == 200, answer.body
        if ready(answer.body):
            return answer.body
        await trio.sleep(every)


def simulate(port: int, version: str, prefix: str, *more: str) -> list[str]:
    return command(
        "simulate",
        "--url",
        f"ws://127.0.0.1:{port}",
        "--stations",
        "3",
        "--version",
        version,
        "--id-prefix",
        prefix,
        "--session-every",
        "0.4",
        "--session-length",
        "1.2",
        "--meter-interval",
        "0.4",
        "--seed",
        "1",
        "--quiet",
        *more,
    )


# -- serve + simulate, as a user runs them --------------------------------------------------------


@pytest.mark.slow
async def test_serve_and_simulate_16_and_201_with_admin_and_reset(tmp_path: Path) -> None:
    db = tmp_path / "csms.db"
    serve_cmd = command(
        "serve", "--port", "0", "--admin-port", "0", "--db", str(db), "--heartbeat-interval", "60"
    )
    with trio.fail_after(TIMEOUT):
        async with run_process(serve_cmd) as server:
            port = await logged_port(server, r"listening on ws://127\.0\.0\.1:(\d+)/")
            admin = await logged_port(server, r"admin API on http://127\.0\.0\.1:(\d+)/")
            token = await logged_token(server)
            assert (tmp_path / "csms.db.admin-token").read_text().strip() == token
            async with (
                run_process(simulate(port, "1.6", "P16", "--duration", "6")) as sim16,
                run_process(simulate(port, "2.0.1", "P201", "--duration", "6")) as sim201,
            ):

                def both_ended(body: dict[str, Any]) -> bool:
                    stations = {t["station"][:3] for t in body["transactions"]}
                    return {"P16", "P20"} <= stations

                ended = await wait_for_answer(
                    admin, "/transactions?state=ended", both_ended, token=token
                )
                for tx in ended["transactions"]:
                    assert tx["state"] == "ended"
                    assert tx["energyWh"] > 0
                listed = (await http(admin, "GET", "/stations", token=token)).body["stations"]
                versions = {s["identity"]: s["version"] for s in listed}
                assert versions == {
                    **{f"P16-00{n}": "1.6" for n in (1, 2, 3)},
                    **{f"P201-00{n}": "2.0.1" for n in (1, 2, 3)},
                }
                for identity, kind in [("P16-001", "Soft"), ("P201-001", "Immediate")]:
                    reset = await http(
                        admin,
                        "POST",
                        f"/stations/{identity}/call",
                        {"action": "Reset", "payload": {"type": kind}},
                        token=token,
                    )
                    assert reset.status == 200, reset.body
                    assert reset.body["response"] == {"status": "Accepted"}
                assert await sim16.wait() == 0, "\n".join(sim16.stderr.lines)
                assert await sim201.wait() == 0, "\n".join(sim201.stderr.lines)
            # the reset stations booted again, the 2.x one saying why
            boots = [
                line
                for line in server.stderr.lines
                if "P201-001 2.0.1 station->csms BootNotification ok" in line
            ]
            assert len(boots) == 2
            assert '"reason":"RemoteReset"' in boots[1]
            server.process.send_signal(signal.SIGINT)
            assert await server.wait() == 0
    for sim in (sim16, sim201):
        [line] = sim.stdout.lines
        summary = json.loads(line)
        assert summary["stations"] == 3
        assert summary["sessions_completed"] >= 2
        assert summary["errors"] == 0
        assert summary["boots"] == 4  # one each, and one more after the reset
        assert summary["calls_per_second"] > 0
    stderr = "\n".join(server.stderr.lines)
    assert "Traceback" not in stderr
    assert "SIGINT received: shutting down" in stderr
    # the store is consistent after Ctrl-C and holds the stations
    with sqlite3.connect(db) as plain:
        assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with open_sqlite_store(str(db)) as store:
        assert {"P16-001", "P201-003"} <= set(await store.identities())


@pytest.mark.slow
async def test_demo_runs_a_session_and_stops_on_ctrl_c() -> None:
    demo = command(
        "demo",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--stations",
        "2",
        "--session-every",
        "0.4",
        "--session-length",
        "1",
        "--meter-interval",
        "0.3",
    )
    with trio.fail_after(TIMEOUT):
        async with run_process(demo) as running:
            await running.stdout.wait_for(lambda line: "ended transaction" in line)
            running.process.send_signal(signal.SIGINT)
            assert await running.wait() == 0
    out = running.stdout.lines
    assert any(line.startswith("CSMS listening on ws://127.0.0.1:") for line in out)
    assert any("admin API on http://127.0.0.1:" in line for line in out)
    assert any(re.search(r"SIM-00\d started transaction \w+ on EVSE [12]", line) for line in out)
    summary = json.loads(out[-1])
    assert summary["sessions_completed"] >= 1
    assert summary["errors"] == 0
    assert "Traceback" not in "\n".join(running.stderr.lines)


async def test_simulator_against_an_unreachable_csms_exits_1() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                simulate(port, "2.0.1", "X", "--duration", "0.3"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["connects"] == 0
    assert summary["connect_failures"] >= 3


# -- the simulator in-process --------------------------------------------------------------------


def start_simulator(
    csms: CSMS, nursery: trio.Nursery, version: Version, **overrides: Any
) -> tuple[Simulator, Any, trio.Event]:
    """One simulated station connected to ``csms`` in memory: (simulator, station, stop)."""
    settings: dict[str, Any] = {
        "url": "ws://unused",
        "stations": 1,
        "version": version,
        "session_every": 1000,  # no session of its own unless asked
        "meter_interval": 10,
        "connect": lambda identity: Link(csms, nursery, identity).connect,
        **overrides,
    }
    simulator = Simulator(SimulatorConfig(**settings))
    [station] = simulator.stations
    stop = trio.Event()
    nursery.start_soon(lambda: simulator.run(stop=stop))
    return simulator, station, stop


@pytest.mark.parametrize("version", list(Version))
async def test_simulated_stations_answer_the_csms(version: Version, autojump_clock: Any) -> None:
    async with (
        open_csms(default_router(interval=30), None, None) as csms,
        trio.open_nursery() as nursery,
    ):
        simulator, station, stop = start_simulator(
            csms, nursery, version, evses=2, session_length=30, seed=3
        )
        await trio.sleep(100)
        cs = csms.get_station(station.identity)
        assert cs is not None
        answers = await commands_for(version, cs)
        await trio.sleep(60)
        stop.set()
        await trio.sleep(20)
        totals = simulator.totals()
        assert totals.sessions_completed >= 1
        assert totals.boots == 2  # the reset
        assert totals.errors == 0
        assert answers["Reset"] == "Accepted"
        assert answers["ChangeAvailability"] == "Accepted"
        assert answers["TriggerMessage"] == "Accepted"
        assert answers["RemoteStart"] == "Accepted"
        assert answers["Unknown"] == "NotSupported"
        assert answers["Get"] == "600"
        machines = csms.machines(station.identity)
        assert machines is not None
        assert any(tx.remote_start_id is not None for tx in machines.ended_transactions)
        nursery.cancel_scope.cancel()


async def test_scheduled_reset_and_availability_happen_when_the_session_ends(
    autojump_clock: Any,
) -> None:
    m = v2_0_1
    async with (
        open_csms(default_router(interval=30), None, None) as csms,
        trio.open_nursery() as nursery,
    ):
        simulator, station, stop = start_simulator(
            csms, nursery, Version.V201, evses=1, session_length=60, seed=5
        )
        await trio.sleep(30)
        cs = csms.get_station(station.identity)
        assert cs is not None
        started = await cs.call(
            m.RequestStartTransactionRequest(
                remote_start_id=7, evse_id=1, id_token=m.IdTokenType(id_token="R", type="Central")
            )
        )
        assert started.status.value == "Accepted"
        await trio.sleep(5)
        assert station.charging == 1
        reset = await cs.call(m.ResetRequest(type="OnIdle"))
        assert reset.status.value == "Scheduled"
        inoperative = await cs.call(
            m.ChangeAvailabilityRequest(operational_status="Inoperative", evse=m.EVSEType(id=1))
        )
        assert inoperative.status.value == "Scheduled"
        assert simulator.totals().boots == 1  # nothing happens while it charges
        await trio.sleep(120)  # the session ends; then the reset and its boot
        assert station.charging == 0
        totals = simulator.totals()
        assert totals.sessions_completed == 1
        assert totals.boots == 2
        machines = csms.machines(station.identity)
        assert machines is not None
        assert machines.connector_status(1, 1) == "Unavailable"
        stop.set()
        await trio.sleep(20)
        nursery.cancel_scope.cancel()


async def commands_for(version: Version, cs: Any) -> dict[str, Any]:
    """Send the CSMS commands the simulator answers; returns what it said."""
    from ocpp_trio import CallError

    answers: dict[str, Any] = {}
    if version is Version.V16:
        changed = await cs.call(
            v1_6.ChangeConfigurationRequest(key="HeartbeatInterval", value="600")
        )
        assert changed.status.value == "Accepted"
        got = await cs.call(v1_6.GetConfigurationRequest(key=("HeartbeatInterval", "Nope")))
        answers["Get"] = got.configuration_key[0].value
        assert got.unknown_key == ("Nope",)
        answers["TriggerMessage"] = (
            await cs.call(v1_6.TriggerMessageRequest(requested_message="StatusNotification"))
        ).status.value
        answers["ChangeAvailability"] = (
            await cs.call(v1_6.ChangeAvailabilityRequest(connector_id=2, type="Inoperative"))
        ).status.value
        answers["RemoteStart"] = (
            await cs.call(v1_6.RemoteStartTransactionRequest(id_tag="REMOTE", connector_id=1))
        ).status.value
        try:
            await cs.call(v1_6.GetDiagnosticsRequest(location="ftp://x"))
        except CallError as exc:
            answers["Unknown"] = exc.code.value
        await trio.sleep(40)  # the remote session ends
        answers["Reset"] = (await cs.call(v1_6.ResetRequest(type="Soft"))).status.value
        return answers
    m: Any = (
        v2_0_1 if version is Version.V201 else __import__("ocpp_trio.messages.v2_1").messages.v2_1
    )
    heartbeat = m.SetVariableDataType(
        attribute_value="600",
        component=m.ComponentType(name="OCPPCommCtrlr"),
        variable=m.VariableType(name="HeartbeatInterval"),
    )
    changed = await cs.call(m.SetVariablesRequest(set_variable_data=(heartbeat,)))
    assert changed.set_variable_result[0].attribute_status.value == "Accepted"
    wanted = m.GetVariableDataType(
        component=m.ComponentType(name="OCPPCommCtrlr"),
        variable=m.VariableType(name="HeartbeatInterval"),
    )
    got = await cs.call(m.GetVariablesRequest(get_variable_data=(wanted,)))
    answers["Get"] = got.get_variable_result[0].attribute_value
    report = await cs.call(m.GetBaseReportRequest(request_id=7, report_base="FullInventory"))
    assert report.status.value == "Accepted"
    answers["TriggerMessage"] = (
        await cs.call(m.TriggerMessageRequest(requested_message="StatusNotification"))
    ).status.value
    answers["ChangeAvailability"] = (
        await cs.call(
            m.ChangeAvailabilityRequest(operational_status="Inoperative", evse=m.EVSEType(id=2))
        )
    ).status.value
    answers["RemoteStart"] = (
        await cs.call(
            m.RequestStartTransactionRequest(
                remote_start_id=99,
                evse_id=1,
                id_token=m.IdTokenType(id_token="REMOTE", type="ISO14443"),
            )
        )
    ).status.value
    try:
        await cs.call(m.GetLocalListVersionRequest())
    except CallError as exc:
        answers["Unknown"] = exc.code.value
    await trio.sleep(40)  # the remote session ends
    answers["Reset"] = (await cs.call(m.ResetRequest(type="Immediate"))).status.value
    return answers


# -- serve's options, in-process ------------------------------------------------------------------


def test_config_file_sets_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        'port = 9100\nadmin-port = 9200\nversions = ["2.0.1", "1.6"]\nno_admin = true\n'
        'boot-status = "Pending"\nping-interval = 5\nmax-message-rate = 20\n'
        'admin-allowed-host = ["proxy.example", "lb"]\n'
    )
    argv = ["serve", "--config", str(config), "--port", "9300"]
    parser = build_parser()
    apply_config_file(parser, str(config), argv)
    args = parser.parse_args(argv)
    assert (args.port, args.admin_port, args.no_admin) == (9300, 9200, True)
    assert args.versions == [Version.V201, Version.V16]
    assert (args.boot_status, args.ping_interval) == ("Pending", 5.0)
    assert args.max_message_rate == 20.0
    # a repeatable option takes a list, or one value
    assert args.admin_allowed_host == ["proxy.example", "lb"]
    config.write_text('admin-allowed-host = "proxy.example"\n')
    parser = build_parser()
    apply_config_file(parser, str(config), ["serve"])
    assert parser.parse_args(["serve"]).admin_allowed_host == ["proxy.example"]
    config.write_text(
        'port = 9100\nadmin-port = 9200\nversions = ["2.0.1", "1.6"]\nno_admin = true\n'
    )
    # --versions on the command line replaces the file's list
    argv = ["serve", "--config", str(config), "--versions", "2.1"]
    parser = build_parser()
    apply_config_file(parser, str(config), argv)
    assert parser.parse_args(argv).versions == [Version.V21]


@pytest.mark.parametrize(
    "text",
    [
        "nonsense = 1\n",
        'boot-status = "Maybe"\n',
        "ping-interval = -1\n",
        "no-admin = 3\n",
        "port = [1, 2]\n",
        "port = \n",
    ],
)
def test_config_file_mistakes_exit_2(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        apply_config_file(build_parser(), str(config), ["serve", "--config", str(config)])
    assert exit_info.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_id_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# drivers\nALICE01\n\n  BOB02  # the night shift\n")
    assert load_id_tokens(str(tokens)) == {"ALICE01", "BOB02"}
    tokens.write_text("# nobody\n")
    with pytest.raises(ValueError, match="no idToken"):
        load_id_tokens(str(tokens))


@pytest.mark.parametrize("version", [Version.V16, Version.V201])
async def test_id_tokens_decide_authorization(version: Version, autojump_clock: Any) -> None:
    router = default_router(id_tokens={"Alice01"})
    async with open_csms(router, None, None) as csms, trio.open_nursery() as nursery:
        link = Link(csms, nursery, "CP")
        async with open_charge_point(None, "CP", versions=[version], connect=link.connect) as cp:
            await cp.wait_accepted()
            statuses = []
            for token in ("Alice01", "alice01", "Mallory"):
                if version is Version.V16:
                    answer16 = await cp.call(v1_6.AuthorizeRequest(id_tag=token))
                    statuses.append(answer16.id_tag_info.status.value)
                else:
                    answer = await cp.call(
                        v2_0_1.AuthorizeRequest(
                            id_token=v2_0_1.IdTokenType(
                                id_token=token, type=v2_0_1.IdTokenEnumType.ISO14443
                            )
                        )
                    )
                    statuses.append(answer.id_token_info.status.value)
        nursery.cancel_scope.cancel()
    # 1.6 idTags compare case-insensitively, 2.x idTokens exactly
    expected = ["Accepted", "Accepted" if version is Version.V16 else "Invalid", "Invalid"]
    assert statuses == expected


async def test_stations_file_allows_only_listed_stations(tmp_path: Path) -> None:
    stations = tmp_path / "stations.toml"
    stations.write_text(
        '[[station]]\nidentity = "CS1"\nsecurity_profile = 1\npassword = "correct-horse-battery"\n'
    )
    argv = ["serve", "--port", "0", "--no-admin", "--db", ":memory:", "--stations", str(stations)]
    args = build_parser().parse_args(argv)
    load_serve_files(args)
    config = ChargePointConfig(retry_back_off=QUICK)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            csms: CSMS = await nursery.start(serve, args)
            assert csms.server_info is not None
            url = f"ws://127.0.0.1:{csms.server_info.port}"
            async with open_charge_point(
                url, "CS1", password="correct-horse-battery", config=config
            ) as cp:
                await cp.wait_accepted()
            for identity, password in [("CS1", "wrong-password-here"), ("CS2", "x" * 20)]:
                async with open_charge_point(url, identity, password=password, config=config) as cp:
                    await cp.wait_state(lambda c: c.statistics().connect_failures >= 2)
                    assert not cp.connected
            nursery.cancel_scope.cancel()


def test_serve_files_errors_are_reported(tmp_path: Path) -> None:
    parser = build_parser()
    missing = parser.parse_args(["serve", "--id-tokens", str(tmp_path / "none.txt")])
    with pytest.raises(FileNotFoundError):
        load_serve_files(missing)
    tls_only_key = parser.parse_args(["serve", "--tls-key", str(tmp_path / "key.pem")])
    with pytest.raises(ValueError, match="--tls-cert"):
        load_serve_files(tls_only_key)
    plain = parser.parse_args(["serve"])
    load_serve_files(plain)
    assert plain.security == (None, None)
    assert plain.id_token_set is None
    assert isinstance(plain, argparse.Namespace)


def test_reconnect_wait_sets_the_stations_back_off() -> None:
    args = build_parser().parse_args(["simulate", "--reconnect-wait", "0.25"])
    config = build_simulator_config(args, "ws://127.0.0.1:9000")
    assert config.back_off == RetryBackOff(wait_minimum=0.25, random_range=0.5, repeat_times=4)
    default = build_simulator_config(build_parser().parse_args(["simulate"]), "ws://h:1")
    assert default.back_off == SimulatorConfig(url="ws://h:1").back_off
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--reconnect-wait", "0"])
