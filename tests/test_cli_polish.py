"""What a new user meets first on the command line: ``--version``, one-line errors (exit 2) for
arguments that cannot work, a busy port named (and no database left behind), Ctrl-C without a
traceback (the commands; the documentation's programs: test_docs.py), ``simulate --ca-file``,
and simulated stations that know their heartbeat interval from the moment they are accepted.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from helpers.process import interrupted
from interop.harness import ROOT, run_process

from ocpp_trio import Version, boot_response
from ocpp_trio.cli.main import main
from ocpp_trio.client.simulator import Simulator, SimulatorConfig
from ocpp_trio.messages import Request, v1_6, v2_0_1
from ocpp_trio.protocol.rpc import CallCompleted, IncomingCall, RpcConnection
from ocpp_trio.transport.base import (
    ConnectionInfo,
    MemoryTransport,
    Transport,
    memory_transport_pair,
)

TIMEOUT = 30.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


# -- --version and one-line errors ---------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(["--version"], capsys)
    assert status == 0
    assert re.fullmatch(r"ocpp-trio \d+\.\d+\.\d+\S*\n", out), out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["serve", "--port", "99999"], "'99999' is not a port"),
        (["serve", "--port", "-1"], "'-1' is not a port"),
        (["serve", "--admin-port", "65536"], "'65536' is not a port"),
        (["demo", "--port", "70000"], "'70000' is not a port"),
        (["demo", "--admin-port", "x"], "'x' is not a port number"),
        (["simulate", "--url", "http://127.0.0.1:9000"], "must start with ws:// or wss://"),
        (["simulate", "--url", "ws://127.0.0.1:99999"], "the port must be 0 to 65535"),
        (["simulate", "--url", "ws:///path"], "no host"),
        (["serve", "--tls-cert", "/no/cert.pem"], "--tls-cert /no/cert.pem: no such file"),
        (["serve", "--tls-key", "/no/key.pem"], "--tls-key /no/key.pem: no such file"),
        (["serve", "--tls-client-ca", "/no/ca.pem"], "--tls-client-ca /no/ca.pem: no such file"),
        (["serve", "--stations", "/no/st.toml"], "--stations /no/st.toml: no such file"),
        (["serve", "--id-tokens", "/"], "--id-tokens /: a directory"),
        (
            ["simulate", "--url", "wss://h:9000", "--ca-file", "/no/ca.pem"],
            "--ca-file /no/ca.pem: no such file",
        ),
        (["simulate", "--ca-file", "/no/ca.pem"], "a CA file needs a wss:// URL"),
        (["serve", "--ledger-days", "0"], "'0' must be > 0"),
    ],
)
def test_arguments_that_cannot_work_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run_main([*argv], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1, err  # one line
    assert words in err
    assert err.startswith("ocpp-trio ")


def test_a_ca_file_that_is_no_certificate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    status, _, err = run_main(["simulate", "--url", "wss://h", "--ca-file", str(junk)], capsys)
    assert status == 2
    assert f"--ca-file {junk}: not a PEM certificate file" in err


# -- a busy port ---------------------------------------------------------------------------------


def test_serve_names_the_busy_port_and_creates_no_database(
    taken_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "new.db"
    status = main(["serve", "--port", str(taken_port), "--db", str(db), "--no-admin"])
    assert status == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"cannot serve on 127.0.0.1:{taken_port}: Address already in use"]
    assert list(tmp_path.iterdir()) == []
    # an admin port given and taken: the same
    status = main(["serve", "--port", "0", "--admin-port", str(taken_port), "--db", str(db)])
    assert status == 1
    assert f"127.0.0.1:{taken_port}" in caplog.records[-1].getMessage()
    assert list(tmp_path.iterdir()) == []


def test_serve_keeps_a_database_that_was_there(
    taken_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    db.write_bytes(b"")  # an empty file is a valid, empty SQLite database
    assert main(["serve", "--port", str(taken_port), "--db", str(db), "--no-admin"]) == 1
    assert db.exists()


def test_demo_names_the_busy_port(taken_port: int, caplog: pytest.LogCaptureFixture) -> None:
    status = main(["demo", "--port", str(taken_port), "--duration", "1", "--quiet"])
    assert status == 1
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert message == (
        f"cannot start the demo: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    )


# -- Ctrl-C --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "ready"),
    [
        (["serve", "--port", "0", "--db", ":memory:", "--no-admin"], "listening on"),
        (["simulate", "--url", "ws://127.0.0.1:9", "--duration", "30"], "stations 0/1"),
        (["demo", "--port", "0", "--admin-port", "0"], "CSMS listening"),
        # as early as the command can be told: while it starts
        (["simulate", "--url", "ws://127.0.0.1:9"], ""),
    ],
)
async def test_ctrl_c_stops_the_commands_quietly(args: list[str], ready: str) -> None:
    command = [sys.executable, "-u", "-m", "ocpp_trio", *args]
    status, _, stderr = await interrupted(command, ready, within=TIMEOUT)
    assert status in (0, 1), stderr  # simulate: 1 when no station ever connected
    assert "Traceback" not in stderr


# -- simulate --ca-file --------------------------------------------------------------------------


@pytest.mark.slow
async def test_simulate_trusts_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="Private Root")
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    serve = [sys.executable, "-m", "ocpp_trio", "serve", "--port", "0", "--db", ":memory:"]
    serve += ["--no-admin", "--tls-cert", str(cert_file), "--tls-key", str(cert_file)]
    with trio.fail_after(TIMEOUT):
        async with run_process(serve) as server:
            (line,) = await server.stderr.wait_for(lambda line: "listening on wss://" in line)
            found = re.search(r"wss://127\.0\.0\.1:(\d+)/", line)
            assert found is not None
            url = f"wss://127.0.0.1:{found.group(1)}"
            simulate = [sys.executable, "-m", "ocpp_trio", "simulate", "--url", url]
            simulate += ["--duration", "2", "--quiet"]
            trusted = await trio.run_process(
                [*simulate, "--ca-file", str(ca_file)], capture_stdout=True, check=False, cwd=ROOT
            )
            untrusted = await trio.run_process(
                [*simulate, "--duration", "1"], capture_stdout=True, check=False, cwd=ROOT
            )
    assert trusted.returncode == 0
    assert b'"accepted": 1' in trusted.stdout or b'"boots": 1' in trusted.stdout
    assert untrusted.returncode == 1  # the system does not trust the private CA


# -- the simulator's HeartbeatInterval -----------------------------------------------------------


def interval_request(version: Version) -> Request[Any]:
    if version is Version.V16:
        return v1_6.GetConfigurationRequest(key=("HeartbeatInterval",))
    wanted = v2_0_1.GetVariableDataType(
        component=v2_0_1.ComponentType(name="OCPPCommCtrlr"),
        variable=v2_0_1.VariableType(name="HeartbeatInterval"),
    )
    return v2_0_1.GetVariablesRequest(get_variable_data=(wanted,))


def interval_of(response: Any) -> str:
    if isinstance(response, v1_6.GetConfigurationResponse):
        assert response.configuration_key is not None
        return str(response.configuration_key[0].value)
    return str(response.get_variable_result[0].attribute_value)


async def boot_then_ask(
    transport: MemoryTransport, version: Version, seen: list[str], *, task_status: Any
) -> None:
    """A CSMS that answers the boot (Accepted, interval 45) and asks for the heartbeat
    interval in the same breath, before the station could have read the boot answer."""
    rpc = RpcConnection(version, role="csms")
    task_status.started()
    asked: str | None = None
    while True:
        for event in rpc.receive(await transport.get_message()).events:
            if isinstance(event, IncomingCall) and event.action == "BootNotification":
                answer = boot_response(version, "Accepted", 45)
                asked, question = rpc.start_call(interval_request(version))
                await transport.send_message(rpc.answer(event.message_id, answer))
                await transport.send_message(question)
            elif isinstance(event, CallCompleted) and event.message_id == asked:
                seen.append(interval_of(event.response))
                return


@pytest.mark.parametrize("version", [Version.V16, Version.V201])
async def test_simulated_stations_know_their_interval_once_accepted(
    version: Version, autojump_clock: Any
) -> None:
    seen: list[str] = []
    async with trio.open_nursery() as nursery:

        @asynccontextmanager
        async def connect(versions: Sequence[Version]) -> AsyncIterator[Transport]:
            info = ConnectionInfo(subprotocol=version.subprotocol)
            ours, theirs = memory_transport_pair(info_a=info, info_b=info)
            await nursery.start(boot_then_ask, theirs, version, seen)
            yield ours

        simulator = Simulator(
            SimulatorConfig(
                url="ws://unused",
                stations=40,
                version=version,
                session_every=1000,
                connect=lambda identity: connect,
                seed=7,
            )
        )
        nursery.start_soon(lambda: simulator.run(duration=30))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert seen == ["45"] * 40
