"""Secrets (write-only values) never kept: not in the device model, the store (SQLite file and
its WAL), the admin API or any log line, after every way a password is changed.

The CSMS runs in-process on a SQLite store with the exchange log and the admin API (over a
real socket on 127.0.0.1); the stations are fake ends of memory transports.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers.admin import TOKEN, http
from helpers.secrets import accepted_change, accepted_set
from helpers.station import FakeStation, boot_request
from hypothesis import given
from hypothesis import strategies as st

from ocpp_trio import CSMS, Version
from ocpp_trio.cli.main import ExchangeLogger, default_router, summarize
from ocpp_trio.csms.admin import AdminConfig, AdminInfo, serve_admin
from ocpp_trio.csms.core import CSMSConfig, open_csms
from ocpp_trio.domain.credentials import (
    CredentialStore,
    PasswordHashing,
    StationCredentials,
    hash_password,
    verify_password,
)
from ocpp_trio.domain.device_model import (
    ComponentRef,
    DeviceModel,
    DeviceVariable,
    VariableAttribute,
    VariableRef,
)
from ocpp_trio.domain.redaction import REDACTED, redact_json, redact_message
from ocpp_trio.messages import decode_request, decode_response
from ocpp_trio.protocol.rpc import IncomingCall
from ocpp_trio.security.rotation import RotationOutcome, rotate_password
from ocpp_trio.store.sqlite import SQLiteStore, open_sqlite_store
from ocpp_trio.transport.base import memory_transport_pair

CHEAP = PasswordHashing(scrypt_log2_n=6, scrypt_r=4)
OLD_PW = "old-password-for-2x-0001"
OLD_KEY = bytes(range(1, 21))
V16, V201 = Version.V16, Version.V201


# -- the pieces, without I/O -------------------------------------------------------------------


def set_password(value: str, component: str = "SecurityCtrlr", variable: str = "BasicAuthPassword"):
    return decode_request(
        V201,
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "attributeValue": value,
                },
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "60",
                },
            ]
        },
    )


def test_redaction_hides_the_known_secrets_only() -> None:
    request = set_password("s3cret-s3cret-s3cret")
    hidden = redact_message(request)
    data = hidden.to_json()["setVariableData"]
    assert data[0]["attributeValue"] == REDACTED
    assert data[1]["attributeValue"] == "60"
    assert request.to_json()["setVariableData"][0]["attributeValue"] == "s3cret-s3cret-s3cret"
    key = decode_request(
        V16, "ChangeConfiguration", {"key": "AuthorizationKey", "value": "AB" * 16}
    )
    assert redact_message(key).to_json() == {"key": "AuthorizationKey", "value": REDACTED}
    other = decode_request(V16, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
    assert redact_message(other) is other  # nothing to hide: the same object
    got = decode_response(
        V16,
        "GetConfiguration",
        {"configurationKey": [{"key": "authorizationkey", "readonly": False, "value": "x"}]},
    )
    assert redact_message(got).to_json()["configurationKey"][0]["value"] == REDACTED
    profile = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": "wss://csms.example/ocpp",
            "messageTimeout": 30,
            "securityProfile": 2,
            "ocppInterface": "Wired0",
            "basicAuthPassword": "profile-password-0001",
        },
    }
    shown = redact_json("SetNetworkProfile", profile, request=True)
    assert shown["connectionData"]["basicAuthPassword"] == REDACTED
    assert profile["connectionData"]["basicAuthPassword"] == "profile-password-0001"


def test_variables_reported_write_only_are_hidden_by_the_model() -> None:
    model = DeviceModel().with_report_data(
        [
            {
                "component": {"name": "VendorCtrlr"},
                "variable": {"name": "ApiKey"},
                "variableAttribute": [
                    {"type": "Actual", "mutability": "WriteOnly", "value": "leak"}
                ],
            }
        ]
    )
    [variable] = model.find("VendorCtrlr")
    assert variable.value is None  # a reported value of a WriteOnly attribute is not kept
    assert model.is_write_only("VendorCtrlr", "ApiKey")
    request = set_password("vendor-key-value", "VendorCtrlr", "ApiKey")
    assert "vendor-key-value" not in str(redact_message(request, model).to_json())
    assert "vendor-key-value" in str(redact_message(request).to_json())  # no model: unknown
    # a later set keeps it write-only: no value
    model = model.with_value("VendorCtrlr", "ApiKey", "new-value")
    assert model.get("VendorCtrlr", "ApiKey") is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SecurityCtrlr", "securityctrlr", "OCPP16", "Other"]),
            st.sampled_from(["BasicAuthPassword", "AUTHORIZATIONKEY", "Plain"]),
            st.sampled_from([None, "WriteOnly", "ReadWrite"]),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_no_write_only_value_survives_any_update(
    updates: list[tuple[str, str, str | None, bool]],
) -> None:
    model = DeviceModel()
    for component, variable, mutability, by_report in updates:
        if by_report:
            attribute = VariableAttribute(value="v4lue", mutability=mutability)
            model = model.with_variables(
                [
                    DeviceVariable(
                        component=ComponentRef(name=component),
                        variable=VariableRef(name=variable),
                        attributes=(attribute,),
                    )
                ]
            )
        else:
            model = model.with_value(component, variable, "v4lue", mutability=mutability)
    for found in model:
        for attribute in found.attributes:
            if found.write_only(attribute.type):
                assert attribute.value is None
                assert attribute.pending_value is None


def test_summarize_hides_secrets() -> None:
    line = summarize(set_password("in-the-log-0000000001"), 0)
    assert "in-the-log" not in line
    assert REDACTED in line


# -- end to end ----------------------------------------------------------------------------------


@attrs.define
class Rig:
    csms: CSMS
    store: SQLiteStore
    db: Path
    admin: int
    nursery: trio.Nursery
    stations: dict[str, FakeStation] = attrs.Factory(dict)

    @property
    def credentials(self) -> CredentialStore:
        return self.store.credentials

    async def connect(self, identity: str, version: Version) -> FakeStation:
        ours, theirs = memory_transport_pair()
        await self.nursery.start(partial(self.csms.serve_station, ours, identity, version))
        fake = FakeStation(theirs, version)
        assert getattr(await fake.call(boot_request(version)), "status", None) == "Accepted"
        self.stations[identity] = fake
        return fake

    async def admin_call(self, identity: str, action: str, payload: dict[str, Any], answer: Any):
        """POST .../call while the station answers with ``answer(call)``; the HTTP answer."""
        fake = self.stations[identity]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_one, fake, answer)
            reply = await http(
                self.admin,
                "POST",
                f"/stations/{identity}/call",
                {"action": action, "payload": payload},
            )
        return reply


async def answer_one(fake: FakeStation, answer: Any) -> IncomingCall:
    call = await fake.expect_call()
    await fake.answer(call, answer(call))
    return call


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = tmp_path / "csms.db"
    async with open_sqlite_store(db) as store:
        for identity, secret in (("CS201", OLD_PW.encode()), ("CP16", OLD_KEY)):
            await store.credentials.put(
                StationCredentials(
                    identity=identity,
                    security_profile=1,
                    password_hash=hash_password(secret, hashing=CHEAP),
                )
            )
        config = CSMSConfig(store=store)
        async with open_csms(default_router(), None, None, config=config) as csms:
            csms.add_extra_handler(ExchangeLogger(payload_chars=0), buffer=256, name="log")
            async with trio.open_nursery() as nursery:
                info: AdminInfo = await nursery.start(
                    partial(
                        serve_admin,
                        csms,
                        "127.0.0.1",
                        0,
                        config=AdminConfig(token=TOKEN),
                        credentials=store.credentials,
                        hashing=CHEAP,
                    )
                )
                yield Rig(csms, store, db, info.port, nursery)
                nursery.cancel_scope.cancel()


def database_files(db: Path) -> list[tuple[str, bytes]]:
    """The database file and its companions (``-wal``, ``-shm``), read whole."""
    return [(path.name, path.read_bytes()) for path in db.parent.glob(db.name + "*")]


async def secret_nowhere(r: Rig, caplog: pytest.LogCaptureFixture, *secrets: str | bytes) -> None:
    """None of ``secrets`` in the log, the database files or any admin endpoint."""
    await trio.sleep(0.3)  # let the store writer commit what the stations did
    texts = [s for s in secrets if isinstance(s, str)]
    raw = [s.encode() if isinstance(s, str) else s for s in secrets]
    log = "\n".join(record.getMessage() for record in caplog.records)
    assert "SetVariables" in log or "ChangeConfiguration" in log  # the exchanges were logged
    for text in texts:
        assert text not in log
    for name, content in database_files(r.db):
        for secret in raw:
            assert secret not in content, name
    endpoints = ["/", "/stations", "/transactions"]
    for identity in r.stations:
        endpoints += [f"/stations/{identity}", f"/stations/{identity}/device-model"]
    for endpoint in endpoints:
        answer = await http(r.admin, "GET", endpoint)
        assert answer.status == 200, (endpoint, answer.body)
        shown = str(answer.body)
        for text in texts:
            assert text not in shown, endpoint


async def logs_in(store: CredentialStore, identity: str, secret: bytes) -> bool:
    record = await store.get(identity)
    assert record is not None
    return verify_password(secret, record.password_hash or "")


async def test_no_rotation_path_leaves_the_secret_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(30):
        async with rig(tmp_path) as r:
            fake201 = await r.connect("CS201", V201)
            await r.connect("CP16", V16)

            # 1. 2.0.1 SetVariables through the admin API
            secret1 = "admin-set-password-0001"
            payload = set_password(secret1).to_json()
            reply = await r.admin_call("CS201", "SetVariables", payload, accepted_set)
            assert reply.status == 200, reply.body
            assert await logs_in(r.credentials, "CS201", secret1.encode())
            await secret_nowhere(r, caplog, secret1)

            # a station that reports its secrets anyway (NotifyReport), and reads them back
            report = decode_request(
                V201,
                "NotifyReport",
                {
                    "requestId": 1,
                    "generatedAt": "2024-01-01T00:00:00Z",
                    "seqNo": 0,
                    "reportData": [
                        {
                            "component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "BasicAuthPassword"},
                            "variableAttribute": [{"value": secret1, "mutability": "WriteOnly"}],
                        },
                        {
                            "component": {"name": "VendorCtrlr"},
                            "variable": {"name": "ApiKey"},
                            "variableAttribute": [
                                {"value": "vendor-api-key-0001", "mutability": "WriteOnly"}
                            ],
                        },
                    ],
                },
            )
            await fake201.call(report)

            def read_back(call: IncomingCall) -> Any:
                return decode_response(
                    V201,
                    "GetVariables",
                    {
                        "getVariableResult": [
                            {
                                "attributeStatus": "Accepted",
                                "attributeValue": "vendor-api-key-0001",
                                "component": {"name": "VendorCtrlr"},
                                "variable": {"name": "ApiKey"},
                            }
                        ]
                    },
                )

            get = {
                "getVariableData": [
                    {"component": {"name": "VendorCtrlr"}, "variable": {"name": "ApiKey"}}
                ]
            }
            reply = await r.admin_call("CS201", "GetVariables", get, read_back)
            assert reply.body["response"]["getVariableResult"][0]["attributeValue"] == REDACTED
            await secret_nowhere(r, caplog, secret1, "vendor-api-key-0001")

            # 2. 1.6 ChangeConfiguration(AuthorizationKey) through the admin API
            key = bytes(range(100, 120))
            change = {"key": "AuthorizationKey", "value": key.hex().upper()}
            reply = await r.admin_call("CP16", "ChangeConfiguration", change, accepted_change)
            assert reply.status == 200, reply.body
            assert await logs_in(r.credentials, "CP16", key)
            await secret_nowhere(r, caplog, key.hex().upper(), key.hex(), key)

            # 3. rotate_password, and the admin API's rotate-password (nobody sees the password)
            secret3 = "rotated-by-the-helper-01"
            station = r.csms.get_station("CS201")
            assert station is not None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_one, fake201, accepted_set)
                result = await rotate_password(station, r.credentials, secret3, hashing=CHEAP)
            assert result.outcome is RotationOutcome.ACCEPTED
            got: list[IncomingCall] = []

            async def answer_and_keep() -> None:
                got.append(await answer_one(fake201, accepted_set))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_and_keep)
                reply = await http(r.admin, "POST", "/stations/CS201/rotate-password", {})
            assert reply.body == {"outcome": "accepted", "status": "Accepted"}
            generated = got[0].request.to_json()["setVariableData"][0]["attributeValue"]
            assert len(generated) == 40
            assert await logs_in(r.credentials, "CS201", generated.encode())
            await secret_nowhere(r, caplog, secret1, secret3, generated, "vendor-api-key-0001")
        # closed: the WAL is folded into the file; look once more
        for _name, content in database_files(tmp_path / "csms.db"):
            for secret in (secret1, secret3, generated, "vendor-api-key-0001", key.hex().upper()):
                assert secret.encode() not in content
