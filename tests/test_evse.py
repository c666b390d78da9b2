"""EVSEs: connector statuses, requested availability, reservations; and the notification events
(monitoring, security, firmware, log) that subscribers receive."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.lowlevel
from helpers.station import FakeStation, boot_request, boot_router, running_station

from ocpp_trio import Version
from ocpp_trio.domain.events import (
    AvailabilityRequested,
    ConnectorStatusChanged,
    FirmwareStatusChanged,
    LogStatusChanged,
    MachineEvent,
    MonitoringEvent,
    ReservationChanged,
    SecurityEvent,
)
from ocpp_trio.domain.evse import (
    AvailabilityRequest,
    ConnectorsKnown,
    Evse,
    RequestedAvailability,
    Reservation,
    ReservationEnded,
    ReservationMade,
    ReservationState,
    StatusReport,
    apply_evse,
)
from ocpp_trio.errors import CallError
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.runtime.station import Station

m = v2_0_1
V16, V201 = Version.V16, Version.V201
T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def minutes(n: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=n)


# -- the pure record ---------------------------------------------------------------------------


def test_status_reports_keep_the_newest() -> None:
    evse = Evse(evse_id=1)
    evse = apply_evse(
        evse, StatusReport(connector_id=2, status="Occupied", timestamp=minutes(5), received_at=T0)
    )
    evse = apply_evse(
        evse, StatusReport(connector_id=1, status="Available", timestamp=None, received_at=T0)
    )
    assert [c.connector_id for c in evse.connectors] == [1, 2]
    late = apply_evse(
        evse, StatusReport(connector_id=2, status="Available", timestamp=minutes(1), received_at=T0)
    )
    assert late is evse  # an older status arriving late does not roll the newer one back
    evse = apply_evse(evse, ConnectorsKnown(frozenset({1, 3})))
    assert [(c.connector_id, c.status) for c in evse.connectors] == [
        (1, "Available"),
        (2, "Occupied"),
        (3, None),
    ]


def test_requested_availability_is_kept_apart_from_reported_status() -> None:
    evse = apply_evse(
        Evse(evse_id=1),
        StatusReport(connector_id=1, status="Available", timestamp=T0, received_at=T0),
    )
    requested = RequestedAvailability(operational=False, status="Scheduled", requested_at=T0)
    evse = apply_evse(evse, AvailabilityRequest(requested))
    assert evse.requested == requested
    assert evse.connector(1).status == "Available"  # type: ignore[union-attr]


def test_reservations() -> None:
    r = Reservation(
        reservation_id=5, evse_id=1, id_token="T", expires_at=minutes(30), created_at=T0
    )
    evse = apply_evse(Evse(evse_id=1), ReservationMade(r))
    assert evse.active_reservations == (r,)
    assert r.is_active(minutes(10))
    assert not r.is_active(minutes(31))
    used = apply_evse(
        evse,
        ReservationEnded(
            reservation_id=5, state=ReservationState.USED, at=minutes(2), transaction_id="TX"
        ),
    )
    assert used.active_reservations == ()
    assert used.reservation(5).transaction_id == "TX"  # type: ignore[union-attr]
    # ending it again (or an unknown one) changes nothing
    assert (
        apply_evse(used, ReservationEnded(reservation_id=5, state=ReservationState.EXPIRED, at=T0))
        is used
    )
    assert (
        apply_evse(used, ReservationEnded(reservation_id=9, state=ReservationState.EXPIRED, at=T0))
        is used
    )
    many = used
    for i in range(20):
        many = apply_evse(
            many,
            ReservationMade(
                Reservation(
                    reservation_id=100 + i, evse_id=1, id_token="T", expires_at=T0, created_at=T0
                )
            ),
        )
        many = apply_evse(
            many, ReservationEnded(reservation_id=100 + i, state=ReservationState.CANCELLED, at=T0)
        )
    assert len(many.reservations) == 10  # finished ones are trimmed


# -- EVSE tasks over a memory transport ----------------------------------------------------------


@asynccontextmanager
async def collecting(station: Station) -> AsyncIterator[list[MachineEvent]]:
    seen: list[MachineEvent] = []

    async def listen(task_status: trio.TaskStatus[None]) -> None:
        async with station.machines.subscribe(MachineEvent) as events:
            task_status.started()
            async for e in events:
                seen.append(e)

    async with trio.open_nursery() as nursery:
        await nursery.start(listen)
        yield seen
        await station.settle()
        await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()


async def boot(fake: FakeStation) -> None:
    assert not isinstance(await fake.exchange(boot_request(fake.version)), CallError)


def status_201(
    evse: int, connector: int, status: str, at: datetime.datetime
) -> m.StatusNotificationRequest:
    return m.StatusNotificationRequest(
        timestamp=at,
        connector_status=m.ConnectorStatusEnumType(status),
        evse_id=evse,
        connector_id=connector,
    )


async def csms_call(station: Station, fake: FakeStation, request: Any, response: Any) -> Any:
    async with trio.open_nursery() as nursery:

        async def answer() -> None:
            await fake.answer(await fake.expect_call(), response)

        nursery.start_soon(answer)
        result = await station.call(request)
    await station.settle()
    return result


async def test_statuses_availability_and_reservations_201(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        async with collecting(station) as seen:
            await boot(fake)
            await fake.exchange(status_201(1, 1, "Available", minutes(1)))
            await fake.exchange(status_201(2, 1, "Available", minutes(1)))
            await fake.exchange(status_201(1, 1, "Occupied", minutes(3)))
            await fake.exchange(status_201(1, 1, "Faulted", minutes(2)))  # late and older: ignored
            await station.settle()
            assert station.machines.connector_status(1) == "Occupied"
            assert station.machines.connector_status(2) == "Available"

            await csms_call(
                station,
                fake,
                m.ChangeAvailabilityRequest(
                    operational_status=m.OperationalStatusEnumType.INOPERATIVE,
                    evse=m.EVSEType(id=2),
                ),
                m.ChangeAvailabilityResponse(status=m.ChangeAvailabilityStatusEnumType.SCHEDULED),
            )
            await csms_call(
                station,
                fake,
                m.ChangeAvailabilityRequest(
                    operational_status=m.OperationalStatusEnumType.INOPERATIVE
                ),
                m.ChangeAvailabilityResponse(status=m.ChangeAvailabilityStatusEnumType.REJECTED),
            )
            requested = station.evses[2].requested
            assert requested is not None
            assert not requested.operational
            assert requested.status == "Scheduled"
            assert station.evses[0].requested is None  # the rejected one is not recorded
            assert station.machines.connector_status(2) == "Available"  # reported, unchanged

            token = m.IdTokenType(id_token="T1", type=m.IdTokenEnumType.CENTRAL)
            for rid in (10, 11, 12):
                await csms_call(
                    station,
                    fake,
                    m.ReserveNowRequest(
                        id=rid, expiry_date_time=minutes(60), id_token=token, evse_id=2
                    ),
                    m.ReserveNowResponse(status=m.ReserveNowStatusEnumType.ACCEPTED),
                )
            await csms_call(
                station,
                fake,
                m.CancelReservationRequest(reservation_id=10),
                m.CancelReservationResponse(status=m.CancelReservationStatusEnumType.ACCEPTED),
            )
            await fake.exchange(
                m.ReservationStatusUpdateRequest(
                    reservation_id=11,
                    reservation_update_status=m.ReservationUpdateStatusEnumType.EXPIRED,
                )
            )
            await fake.exchange(
                m.TransactionEventRequest(
                    event_type=m.TransactionEventEnumType.STARTED,
                    timestamp=minutes(5),
                    trigger_reason=m.TriggerReasonEnumType.AUTHORIZED,
                    seq_no=0,
                    transaction_info=m.TransactionType(transaction_id="TX"),
                    evse=m.EVSEType(id=2, connector_id=1),
                    reservation_id=12,
                )
            )
            await station.settle()
            states = {r.reservation_id: r.state for r in station.evses[2].reservations}
            assert states == {
                10: ReservationState.CANCELLED,
                11: ReservationState.EXPIRED,
                12: ReservationState.USED,
            }
            assert station.machines.find_reservation(12).transaction_id == "TX"  # type: ignore[union-attr]

            # 2.1 prefers NotifyEvent(Connector.AvailabilityState)
            await fake.exchange(
                m.NotifyEventRequest(
                    generated_at=minutes(6),
                    seq_no=0,
                    event_data=(
                        m.EventDataType(
                            event_id=1,
                            timestamp=minutes(6),
                            trigger=m.EventTriggerEnumType.DELTA,
                            actual_value="Unavailable",
                            event_notification_type=m.EventNotificationEnumType.HARD_WIRED_NOTIFICATION,
                            component=m.ComponentType(
                                name="Connector", evse=m.EVSEType(id=2, connector_id=1)
                            ),
                            variable=m.VariableType(name="AvailabilityState"),
                        ),
                    ),
                )
            )
            await station.settle()
            assert station.machines.connector_status(2) == "Unavailable"
        changes = [
            (e.evse_id, e.connector.status, e.previous)
            for e in seen
            if isinstance(e, ConnectorStatusChanged)
        ]
        assert changes == [
            (1, "Available", None),
            (2, "Available", None),
            (1, "Occupied", "Available"),
            (2, "Unavailable", "Available"),
        ]
        assert [e.evse_id for e in seen if isinstance(e, AvailabilityRequested)] == [2]
        reservations = [
            (e.reservation.reservation_id, e.reservation.state)
            for e in seen
            if isinstance(e, ReservationChanged)
        ]
        assert reservations[:3] == [(r, ReservationState.ACTIVE) for r in (10, 11, 12)]
        assert len(reservations) == 6
        assert sum(isinstance(e, MonitoringEvent) for e in seen) == 1


async def test_16_connectors_are_evses(autojump_clock: Any) -> None:
    async with running_station(boot_router(), V16) as (station, fake):
        await boot(fake)
        for connector, status in ((0, "Available"), (1, "Preparing"), (2, "Faulted")):
            await fake.exchange(
                v1_6.StatusNotificationRequest(
                    connector_id=connector,
                    error_code=v1_6.ChargePointErrorCode.GROUND_FAILURE
                    if status == "Faulted"
                    else v1_6.ChargePointErrorCode.NO_ERROR,
                    status=v1_6.ChargePointStatus(status),
                )
            )
        await csms_call(
            station,
            fake,
            v1_6.ChangeAvailabilityRequest(connector_id=0, type=v1_6.AvailabilityType.INOPERATIVE),
            v1_6.ChangeAvailabilityResponse(status=v1_6.AvailabilityStatus.ACCEPTED),
        )
        await csms_call(
            station,
            fake,
            v1_6.ReserveNowRequest(
                connector_id=1, expiry_date=minutes(30), id_tag="T", reservation_id=3
            ),
            v1_6.ReserveNowResponse(status=v1_6.ReservationStatus.ACCEPTED),
        )
        assert sorted(station.evses) == [0, 1, 2]
        assert station.machines.connector_status(0, 0) == "Available"
        assert station.machines.connector_status(1) == "Preparing"
        faulted = station.evses[2].connector(1)
        assert faulted is not None
        assert faulted.error_code == "GroundFailure"
        assert station.evses[0].requested is not None
        assert station.evses[1].active_reservations[0].reservation_id == 3


async def test_notifications_are_published(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake), collecting(station) as seen:
        await boot(fake)
        await fake.exchange(
            m.SecurityEventNotificationRequest(type="FirmwareUpdated", timestamp=T0, tech_info="v2")
        )
        status = m.FirmwareStatusEnumType.INSTALLED
        await fake.exchange(m.FirmwareStatusNotificationRequest(status=status, request_id=4))
        await fake.exchange(
            m.LogStatusNotificationRequest(status=m.UploadLogStatusEnumType.UPLOADED, request_id=5)
        )
    security = [e for e in seen if isinstance(e, SecurityEvent)]
    assert [(e.type, e.tech_info, e.timestamp) for e in security] == [("FirmwareUpdated", "v2", T0)]
    assert [(e.status, e.request_id) for e in seen if isinstance(e, FirmwareStatusChanged)] == [
        ("Installed", 4)
    ]
    assert [(e.status, e.request_id) for e in seen if isinstance(e, LogStatusChanged)] == [
        ("Uploaded", 5)
    ]


async def test_removed_evse_task_ends(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        await fake.exchange(status_201(1, 1, "Available", T0))
        await fake.exchange(status_201(2, 1, "Available", T0))
        await station.settle()
        # EVSEs 1 and 2 have tasks; EVSE 0 is known (the boot says it exists) but nothing
        # changed it, so it needs none
        assert station.statistics().machines.evse_tasks == 2  # type: ignore[union-attr]
        assert sorted(station.evses) == [0, 1, 2]
        await station.machines.remove_evse(2)
        await trio.lowlevel.checkpoint()
        assert station.statistics().machines.evse_tasks == 1  # type: ignore[union-attr]
        assert sorted(station.evses) == [0, 1]
        # reported again: a new task
        await fake.exchange(status_201(2, 1, "Occupied", minutes(1)))
        await station.settle()
        assert station.statistics().machines.evse_tasks == 2  # type: ignore[union-attr]
    assert station.statistics().machines.evse_tasks == 0  # type: ignore[union-attr]


async def test_an_evse_task_starts_with_the_first_change(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        await station.settle()
        assert station.statistics().machines.evse_tasks == 0  # type: ignore[union-attr]
        assert station.evses[0] == Evse(evse_id=0)
        await fake.exchange(status_201(3, 1, "Unavailable", T0))
        await station.settle()
        assert station.statistics().machines.evse_tasks == 1  # type: ignore[union-attr]
        assert station.machines.connector_status(3, 1) == "Unavailable"


async def test_slow_subscriber_is_dropped_and_counted(autojump_clock: Any) -> None:
    async with running_station(boot_router()) as (station, fake):
        await boot(fake)
        async with station.machines.subscribe(ConnectorStatusChanged, buffer=2) as events:
            for minute in range(5):
                await fake.exchange(
                    status_201(1, 1, "Available" if minute % 2 else "Occupied", minutes(minute))
                )
            await station.settle()
            assert events.dropped == 3
            got = [await events.receive(), await events.receive()]
            assert [e.connector.timestamp for e in got] == [minutes(0), minutes(1)]
