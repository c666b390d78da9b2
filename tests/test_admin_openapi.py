"""The running admin API against its own OpenAPI description, driven by schemathesis.

A CSMS with a store (the ledger) and a credential store runs in a thread of its own (its own
``trio.run``), its admin API on 127.0.0.1 with a token, and a station ``CS1`` connected over a
memory pair that answers the CALLs sent to it (a Reset is accepted and changes nothing: the
station is simulated). Schemathesis generates requests for every operation (a bounded number
of examples, with a fixed seed) and checks that every answer has a documented status, content
type, headers and a body of the documented schema, that undocumented methods get 405 with
``Allow``, that a protected operation refuses a request without the token, and that no input
gets a 500 (502, 503 and 504 are documented answers about the station, not failures).

Twice: with the identities schemathesis makes up (unknown stations: 404, 409), and with the
connected station's identity (its CALLs, its device model, its security settings).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
import trio
from helpers.admin import TOKEN, station_router
from helpers.client import charge_point

from ocpp_trio import (
    CSMSConfig,
    InMemoryCredentialStore,
    MemoryStore,
    StationCredentials,
    hash_password,
    open_csms,
)
from ocpp_trio.cli.main import default_router
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.admin_openapi import openapi_description
from ocpp_trio.domain.credentials import PasswordHashing

FAST = PasswordHashing(algorithm="pbkdf2-sha256", pbkdf2_iterations=1000)
EXAMPLES = 30
#: where a request valid by the description may still be refused with 400, because what makes
#: it valid is checked by the server and not written in the description: a CALL's payload
#: against the OCPP schema of the action and of the station's version; the ledger's
#: parameters, valid only with ``state=ended`` and a store, its cursors and its times (the
#: other checks, the rejection of invalid input included, still apply to them)
SERVER_CHECKED = ("callStation", "listTransactions")
#: the statuses that say something about the station, not a fault of the API
STATION_ANSWERS = ["2xx", "3xx", "4xx", "502", "503", "504"]


async def _serve(box: dict[str, Any], started: threading.Event) -> None:
    credentials = InMemoryCredentialStore(
        [
            StationCredentials(
                identity="CS1",
                security_profile=2,
                password_hash=hash_password("a-long-first-password", hashing=FAST),
            )
        ]
    )
    config = CSMSConfig(store=MemoryStore())
    async with (
        open_csms(default_router(), None, None, config=config) as csms,
        trio.open_nursery() as nursery,
    ):
        await charge_point(csms, nursery, "CS1", router=station_router())
        info: AdminInfo = await nursery.start(
            lambda task_status: serve_admin(
                csms,
                "127.0.0.1",
                0,
                config=AdminConfig(token=TOKEN, call_timeout=2.0),
                credentials=credentials,
                hashing=FAST,
                task_status=task_status,
            )
        )
        box.update(
            url=f"http://127.0.0.1:{info.port}",
            token=trio.lowlevel.current_trio_token(),
            scope=nursery.cancel_scope,
        )
        started.set()
        await trio.sleep_forever()


@pytest.fixture(scope="module")
def live_admin() -> Iterator[str]:
    """The base URL of a running admin API (see the module docs)."""
    box: dict[str, Any] = {}
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            trio.run(_serve, box, started)
        except BaseException as exc:  # reported by the fixture
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="admin API under test")
    thread.start()
    try:
        assert started.wait(30), "the admin API did not start"
        assert not failure, failure
        yield str(box["url"])
    finally:
        if "token" in box:
            trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
        thread.join(30)
    assert not failure, failure


def _schema(identity: str | None) -> Any:
    config: dict[str, Any] = {
        "seed": 20240501,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "generation": {"max-examples": EXAMPLES},
        "checks": {"not_a_server_error": {"expected-statuses": STATION_ANSWERS}},
        "operations": [
            {
                "include-operation-id": operation,
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
            for operation in SERVER_CHECKED
        ],
    }
    if identity is not None:
        config["parameters"] = {"identity": identity}
    return schemathesis.openapi.from_dict(
        openapi_description(), config=schemathesis.Config.from_dict(config)
    )


made_up = _schema(None)
connected = _schema("CS1")

SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@made_up.parametrize()
@SETTINGS
def test_the_api_answers_as_described(case: Any, live_admin: str) -> None:
    case.call_and_validate(base_url=live_admin)


@connected.parametrize()
@SETTINGS
def test_the_api_answers_as_described_for_a_connected_station(case: Any, live_admin: str) -> None:
    case.call_and_validate(base_url=live_admin)
