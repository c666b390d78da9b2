"""Default answers: every station-initiated action of every version has one, or is listed in
``NO_DEFAULT`` with the reason it is left to the application (answered NotSupported).

The walk goes over the generated action registries, so an action added by a new schema set
fails here until it is given a default or a reason.  Each action is also sent for real (its
minimal schema-valid request, built from the schema by ``_oracle.build``) to a Station with an
empty router, and the answer on the wire is checked.
"""

from __future__ import annotations

from typing import Any

import pytest
from _oracle import SchemaId, build, our_schema
from helpers.station import running_station

from ocpp_trio import ErrorCode, Router, Version, messages
from ocpp_trio.errors import CallError
from ocpp_trio.messages import Direction
from ocpp_trio.protocol.supervisor import RegistrationStatus
from ocpp_trio.runtime.defaults import ACKNOWLEDGED, NO_DEFAULT, default_handler


def station_actions(version: Version) -> list[str]:
    """The actions a station may initiate with a CALL (SEND-only messages are never answered)."""
    return sorted(
        name
        for name, spec in messages.actions(version).items()
        if spec.direction in (Direction.STATION_TO_CSMS, Direction.BOTH) and not spec.is_send
    )


ALL = [(version, action) for version in Version for action in station_actions(version)]


@pytest.mark.parametrize(("version", "action"), ALL, ids=[f"{v.value}:{a}" for v, a in ALL])
def test_every_station_action_has_a_default_or_a_documented_reason(
    version: Version, action: str
) -> None:
    has_default = default_handler(action) is not None
    assert has_default != (action in NO_DEFAULT), (
        f"{version.value} {action}: give it a default answer or a reason in NO_DEFAULT (not both)"
    )


def test_no_stale_entries() -> None:
    everywhere = {action for _, action in ALL}
    assert set(NO_DEFAULT) <= everywhere
    assert ACKNOWLEDGED.issubset(everywhere)
    assert all(reason.strip() for reason in NO_DEFAULT.values())


def test_publish_firmware_status_notification_is_acknowledged() -> None:
    assert default_handler("PublishFirmwareStatusNotification") is not None


def minimal_request(version: Version, action: str) -> dict[str, Any]:
    schema = our_schema(SchemaId(version, action, "request"))
    payload = build(schema, schema, full=False)
    assert isinstance(payload, dict)
    return payload


@pytest.mark.parametrize("version", list(Version), ids=lambda v: v.value)
async def test_the_answers_on_the_wire(version: Version, autojump_clock: object) -> None:
    # an empty router: only the library answers (the station resumes accepted, no boot needed)
    accepted = RegistrationStatus.ACCEPTED
    async with running_station(Router(), version, initial_status=accepted) as (_, fake):
        # BootNotification last: its NotSupported answer leaves the station unregistered
        actions = sorted(station_actions(version), key=lambda a: a == "BootNotification")
        for action in actions:
            request = messages.decode_request(version, action, minimal_request(version, action))
            assert isinstance(request, messages.Request)
            answer = await fake.exchange(request)
            if action in NO_DEFAULT:
                assert isinstance(answer, CallError), action
                assert answer.code is ErrorCode.NOT_SUPPORTED, (action, answer)
            else:
                assert not isinstance(answer, CallError), (action, answer)
                assert isinstance(answer, type(request).RESPONSE), action
                if action in ACKNOWLEDGED:
                    assert answer.to_json() == {}, action
                if action == "DataTransfer":
                    assert answer.to_json() == {"status": "UnknownVendorId"}
