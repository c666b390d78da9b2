"""The device model: records and queries, seeding through the CSMS, updates from reports and
Get/SetVariables (split by ItemsPerMessage/BytesPerMessage), the 1.6 configuration mapping,
and snapshots."""

from __future__ import annotations

import datetime
import json
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers.station import FakeStation, boot_request, boot_router
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpp_trio import Version
from ocpp_trio.csms.core import CSMS
from ocpp_trio.domain.device_model import (
    OCPP16_COMPONENT,
    ComponentRef,
    DeviceModel,
    DeviceVariable,
    GetVariable,
    SetVariable,
    VariableAttribute,
    VariableCharacteristics,
    VariableRef,
    VariableResult,
    apply_set_results,
    json_size,
    split_batches,
)
from ocpp_trio.domain.events import DeviceModelUpdated, MachineEvent, RebootRequired
from ocpp_trio.domain.snapshot import StationSnapshot
from ocpp_trio.errors import CallError
from ocpp_trio.messages import v1_6, v2_0_1
from ocpp_trio.runtime.machines import StationMachines
from ocpp_trio.runtime.station import Station
from ocpp_trio.transport.base import memory_transport_pair

m = v2_0_1
V16, V201 = Version.V16, Version.V201


def seed() -> DeviceModel:
    return (
        DeviceModel()
        .with_value(
            "DeviceDataCtrlr", VariableRef(name="ItemsPerMessage", instance="GetVariables"), "2"
        )
        .with_value(
            "DeviceDataCtrlr", VariableRef(name="ItemsPerMessage", instance="SetVariables"), "10"
        )
        .with_value(
            "DeviceDataCtrlr", VariableRef(name="BytesPerMessage", instance="SetVariables"), "400"
        )
        .with_value("OCPPCommCtrlr", "HeartbeatInterval", "300", mutability="ReadWrite")
    )


# -- records and queries -----------------------------------------------------------------------


def test_queries_are_case_insensitive_and_exact() -> None:
    model = seed().with_value(
        ComponentRef(name="Connector", evse_id=1, connector_id=2), "AvailabilityState", "Available"
    )
    assert model.get("ocppcommctrlr", "HEARTBEATINTERVAL") == "300"
    assert model.get("OCPPCommCtrlr", "HeartbeatInterval", attribute="target") is None
    assert model.get("Connector", "AvailabilityState") is None  # the address includes the EVSE
    assert model.get("connector", "availabilitystate", evse_id=1, connector_id=2) == "Available"
    found = model.find("devicedatactrlr", "itemspermessage")
    assert [v.variable.instance for v in found] == ["GetVariables", "SetVariables"]
    assert model.find(evse_id=1)[0].component.connector_id == 2
    assert model.limit("ItemsPerMessage", "getvariables") == 2
    assert model.limit("ItemsPerMessage", "GetReport") is None
    variable = model.variable("OCPPCommCtrlr", "HeartbeatInterval")
    assert variable is not None
    assert variable.attribute("actual") == VariableAttribute(value="300", mutability="ReadWrite")
    # the spelling first seen is kept; records are immutable and comparable
    again = model.with_value("OCPPCOMMCTRLR", "heartbeatinterval", "60")
    assert again.variable("OCPPCommCtrlr", "HeartbeatInterval").component.name == "OCPPCommCtrlr"  # type: ignore[union-attr]
    assert model.get("OCPPCommCtrlr", "HeartbeatInterval") == "300"
    assert DeviceModel(variables=tuple(reversed(model.variables))) == model
    assert len(model) == 5


def test_report_data_merges_attributes_and_characteristics() -> None:
    data = [
        {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "Power"},
            "variableAttribute": [
                {"type": "Actual", "value": "0", "mutability": "ReadOnly"},
                {"type": "MaxSet", "value": "22000"},
            ],
            "variableCharacteristics": {
                "dataType": "decimal",
                "unit": "W",
                "maxLimit": 22000,
                "supportsMonitoring": True,
            },
        },
        {
            "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
            "variable": {"name": "ConnectorType"},
            "variableAttribute": [{"value": "cType2"}],
        },
    ]
    model = DeviceModel().with_report_data(data)
    power = model.variable("EVSE", "Power", evse_id=1)
    assert power is not None
    assert [a.type for a in power.attributes] == ["Actual", "MaxSet"]
    assert power.characteristics == VariableCharacteristics(
        data_type="decimal", unit="W", max_limit=22000.0, supports_monitoring=True
    )
    update = [
        {
            "component": data[0]["component"],
            "variable": {"name": "power"},
            "variableAttribute": [{"value": "7400"}],
        }
    ]
    model = model.with_report_data(update)
    power = model.variable("EVSE", "Power", evse_id=1)
    assert power is not None
    assert power.value == "7400"
    assert power.attribute("MaxSet") is not None
    assert power.characteristics is not None
    assert model.evse_layout() == {1: frozenset({1})}


_NAMES = ["Power", "power", "Voltage", "HeartbeatInterval"]


@st.composite
def report_entries(draw: st.DrawFn) -> dict[str, Any]:
    """One NotifyReport ``reportData`` entry from a small space, so keys repeat (also in
    another case) and attributes merge."""
    component: dict[str, Any] = {"name": draw(st.sampled_from(["EVSE", "evse", "OCPPCommCtrlr"]))}
    evse = draw(st.none() | st.integers(1, 2))
    if evse is not None:
        component["evse"] = {"id": evse}
    attribute: dict[str, Any] = {"value": draw(st.sampled_from(["0", "1", "7400"]))}
    kind = draw(st.none() | st.sampled_from(["Actual", "MaxSet"]))
    if kind is not None:
        attribute["type"] = kind
    return {
        "component": component,
        "variable": {"name": draw(st.sampled_from(_NAMES))},
        "variableAttribute": [attribute],
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(report_entries(), max_size=6),
            st.tuples(st.sampled_from(["EVSE", "OCPPCommCtrlr"]), st.sampled_from(_NAMES)),
        ),
        max_size=12,
    )
)
def test_updates_equal_a_model_built_from_scratch(
    steps: list[list[dict[str, Any]] | tuple[str, str]],
) -> None:
    """A model updated step by step (reports, values set) equals the model built at once from
    its variables: the same variables, in the same order, found by the same keys (updates place
    only what changed, by bisection)."""
    model = DeviceModel()
    for n, step in enumerate(steps):
        if isinstance(step, tuple):
            model = model.with_value(step[0], step[1], f"set {n}")
        else:
            model = model.with_report_data(step)
        fresh = DeviceModel(variables=model.variables)
        assert model == fresh
        assert model.variables == fresh.variables
        assert [model.variable(v.component, v.variable) for v in fresh.variables] == list(
            fresh.variables
        )
        assert len(model) == len({v.key for v in model.variables})


def test_updating_a_large_model_reads_few_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting one value in a model of 5,000 variables reads a few keys (bisection), not every
    variable's (it used to rebuild and sort the whole model on every change)."""
    entries = [
        {
            "component": {"name": f"Comp{c}"},
            "variable": {"name": f"Var{v}"},
            "variableAttribute": [{"value": "0"}],
        }
        for c in range(100)
        for v in range(50)
    ]
    model = DeviceModel().with_report_data(entries)
    assert len(model) == 5000
    reads = 0
    key = DeviceVariable.key

    def counted(self: DeviceVariable) -> tuple[str, str, int, int, str, str]:
        nonlocal reads
        reads += 1
        return key.fget(self)  # type: ignore[no-any-return]

    monkeypatch.setattr(DeviceVariable, "key", property(counted))
    changed = model.with_value("Comp7", "Var7", "1")
    assert changed.get("Comp7", "Var7") == "1"
    assert model.get("Comp7", "Var7") == "0"
    assert 0 < reads <= 40


def test_16_configuration_mapping() -> None:
    keys = [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        {"key": "AuthorizationKey", "readonly": False},
    ]
    model = DeviceModel().with_configuration(keys)
    assert model.get(OCPP16_COMPONENT, "heartbeatinterval") == "300"
    attribute = model.variable(OCPP16_COMPONENT, "NumberOfConnectors").attribute()  # type: ignore[union-attr]
    assert attribute is not None
    assert attribute.mutability == "ReadOnly"
    assert model.get(OCPP16_COMPONENT, "AuthorizationKey") is None


def test_set_results_and_reboot_required() -> None:
    items = [
        SetVariable(component="OCPPCommCtrlr", variable="HeartbeatInterval", value="60"),
        SetVariable(component="SecurityCtrlr", variable="Identity", value="X"),
        SetVariable(component="AuthCtrlr", variable="Enabled", value="true"),
    ]
    results = [
        VariableResult(component=i.component, variable=i.variable, attribute="Actual", status=s)
        for i, s in zip(items, ["Accepted", "RebootRequired", "Rejected"], strict=True)
    ]
    model, reboot = apply_set_results(DeviceModel(), items, results)
    assert model.get("OCPPCommCtrlr", "HeartbeatInterval") == "60"
    identity = model.variable("SecurityCtrlr", "Identity")
    assert identity is not None
    assert identity.attribute() == VariableAttribute(pending_value="X")
    assert model.variable("AuthCtrlr", "Enabled") is None
    assert [r.variable.name for r in reboot] == ["Identity"]


def test_split_batches() -> None:
    items = [{"n": "x" * 10}] * 7
    assert [len(b) for b in split_batches(items, max_items=3, max_bytes=None, size=len)] == [
        3,
        3,
        1,
    ]
    by_bytes = split_batches(
        items,
        max_items=None,
        max_bytes=json_size({"a": items[:2]}),
        size=lambda b: json_size({"a": b}),
    )
    assert [len(b) for b in by_bytes] == [2, 2, 2, 1]
    assert split_batches([], max_items=1, max_bytes=1, size=len) == []
    huge = split_batches(
        [{"n": "x" * 1000}, {"n": "y"}],
        max_items=None,
        max_bytes=10,
        size=lambda b: json_size({"a": b}),
    )
    assert [len(b) for b in huge] == [1, 1]


# -- through the CSMS and a station --------------------------------------------------------------


async def connect(
    csms: CSMS, nursery: trio.Nursery, version: Version = V201
) -> tuple[Station, FakeStation]:
    ours, theirs = memory_transport_pair()
    station: Station = await nursery.start(partial(csms.serve_station, ours, "CS1", version))
    fake = FakeStation(theirs, version)
    assert not isinstance(await fake.exchange(boot_request(version)), CallError)
    return station, fake


async def test_seeded_before_connecting_and_variables_split(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    machines = csms.add_station("CS1", device_model=seed())
    assert csms.machines("CS1") is machines
    assert machines.device_model.get("OCPPCommCtrlr", "HeartbeatInterval") == "300"
    async with trio.open_nursery() as nursery:
        station, fake = await connect(csms, nursery)
        assert station.machines is machines
        batches: list[int] = []

        async def station_side() -> None:
            while True:
                call = await fake.expect_call()
                items = call.request.get_variable_data  # type: ignore[attr-defined]
                batches.append(len(items))
                results = tuple(
                    m.GetVariableResultType(
                        attribute_status=m.GetVariableStatusEnumType.ACCEPTED,
                        component=i.component,
                        variable=i.variable,
                        attribute_value=f"v-{i.variable.name}",
                    )
                    for i in items
                )
                await fake.answer(call, m.GetVariablesResponse(get_variable_result=results))

        nursery.start_soon(station_side)
        wanted = [GetVariable(component="C", variable=f"V{i}") for i in range(5)]
        results = await station.get_variables([*wanted, ("OCPPCommCtrlr", "HeartbeatInterval")])
        assert batches == [2, 2, 2]  # ItemsPerMessage[GetVariables] = 2
        assert [r.value for r in results][-1] == "v-HeartbeatInterval"
        assert station.device_model.get("C", "V4") == "v-V4"
        assert (
            station.device_model.get("OCPPCommCtrlr", "HeartbeatInterval") == "v-HeartbeatInterval"
        )
        nursery.cancel_scope.cancel()


async def test_set_variables_bytes_per_message_and_reboot_event(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    csms.add_station("CS1", device_model=seed())
    seen: list[MachineEvent] = []
    async with trio.open_nursery() as nursery:

        async def listen(task_status: trio.TaskStatus[None]) -> None:
            async with csms.subscribe_events(MachineEvent, identity="CS1") as events:
                task_status.started()
                async for event in events:
                    seen.append(event)

        await nursery.start(listen)
        station, fake = await connect(csms, nursery)
        sizes: list[int] = []

        async def station_side() -> None:
            while True:
                call = await fake.expect_call()
                sizes.append(len(json.dumps(call.request.to_json())))
                results = tuple(
                    m.SetVariableResultType(
                        attribute_status=m.SetVariableStatusEnumType.REBOOT_REQUIRED
                        if i.variable.name == "V0"
                        else m.SetVariableStatusEnumType.ACCEPTED,
                        component=i.component,
                        variable=i.variable,
                    )
                    for i in call.request.set_variable_data  # type: ignore[attr-defined]
                )
                await fake.answer(call, m.SetVariablesResponse(set_variable_result=results))

        nursery.start_soon(station_side)
        items = [
            SetVariable(component="SomeCtrlr", variable=f"V{i}", value="x" * 40) for i in range(6)
        ]
        results = await station.set_variables(items)
        assert [r.status for r in results] == ["RebootRequired"] + ["Accepted"] * 5
        assert len(sizes) > 1
        assert all(s + 64 <= 400 for s in sizes)
        assert station.device_model.get("SomeCtrlr", "V1") == "x" * 40
        v0 = station.device_model.variable("SomeCtrlr", "V0")
        assert v0 is not None
        assert v0.value is None
        assert v0.attribute().pending_value == "x" * 40
        await trio.lowlevel.checkpoint()
        reboots = [e for e in seen if isinstance(e, RebootRequired)]
        assert [(e.variable.name, e.value, e.action) for e in reboots] == [
            ("V0", "x" * 40, "SetVariables")
        ]
        assert any(isinstance(e, DeviceModelUpdated) for e in seen)
        nursery.cancel_scope.cancel()


async def test_16_get_and_change_configuration(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        station, fake = await connect(csms, nursery, V16)

        async def station_side() -> None:
            call = await fake.expect_call()
            key = v1_6.KeyValue
            await fake.answer(
                call,
                v1_6.GetConfigurationResponse(
                    configuration_key=(
                        key(key="NumberOfConnectors", readonly=True, value="2"),
                        key(key="HeartbeatInterval", readonly=False, value="300"),
                    ),
                    unknown_key=("Nope",),
                ),
            )
            call = await fake.expect_call()
            status = v1_6.ConfigurationStatus.REBOOT_REQUIRED
            await fake.answer(call, v1_6.ChangeConfigurationResponse(status=status))

        nursery.start_soon(station_side)
        result = await station.get_configuration(
            ["NumberOfConnectors", "HeartbeatInterval", "Nope"]
        )
        assert result.values == {"NumberOfConnectors": "2", "HeartbeatInterval": "300"}
        assert result.readonly == {"NumberOfConnectors"}
        assert result.unknown == ("Nope",)
        assert station.device_model.get(OCPP16_COMPONENT, "heartbeatinterval") == "300"
        # NumberOfConnectors: EVSEs 1..2 (one connector each) besides the charge point
        assert sorted(station.evses) == [0, 1, 2]
        assert await station.change_configuration("HeartbeatInterval", "60") == "RebootRequired"
        hb = station.device_model.variable(OCPP16_COMPONENT, "HeartbeatInterval")
        assert hb is not None
        assert hb.value == "300"
        assert hb.attribute().pending_value == "60"
        nursery.cancel_scope.cancel()


async def test_updated_from_a_report_and_snapshot_restore(autojump_clock: Any) -> None:
    csms = CSMS(boot_router())
    async with trio.open_nursery() as nursery:
        station, fake = await connect(csms, nursery)
        data = m.ReportDataType(
            component=m.ComponentType(name="EVSE", evse=m.EVSEType(id=2)),
            variable=m.VariableType(name="Power"),
            variable_attribute=(m.VariableAttributeType(value="11000"),),
        )

        async def station_side() -> None:
            call = await fake.expect_call()
            request_id = call.request.request_id  # type: ignore[attr-defined]
            ok = m.GenericDeviceModelStatusEnumType.ACCEPTED
            await fake.answer(call, m.GetBaseReportResponse(status=ok))
            part = m.NotifyReportRequest(
                request_id=request_id,
                generated_at=datetime.datetime.now(datetime.UTC),
                seq_no=0,
                report_data=(data,),
            )
            await fake.exchange(part)

        nursery.start_soon(station_side)
        await station.get_base_report()
        assert station.device_model.get("EVSE", "Power", evse_id=2) == "11000"
        snapshot = station.machines.snapshot()
        await station.aclose()
        nursery.cancel_scope.cancel()
    assert isinstance(snapshot, StationSnapshot)
    assert [e.evse_id for e in snapshot.evses] == [0, 2]
    # restored elsewhere (a new CSMS), before the station connects
    other = CSMS(boot_router())
    machines = other.add_station("CS1", snapshot=snapshot)
    assert machines.device_model == snapshot.device_model
    assert machines.snapshot() == snapshot
    assert StationMachines("CS1", initial=snapshot).snapshot() == snapshot
    seeded = DeviceModel(
        variables=(
            DeviceVariable(component=ComponentRef(name="A"), variable=VariableRef(name="B")),
        )
    )
    assert other.add_station("CS1", device_model=seeded).device_model == seeded


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(report_entries(), max_size=6), max_size=6),
    st.lists(report_entries(), max_size=12),
    st.integers(1, 12),
)
def test_within_keeps_the_base_and_the_first_new_variables(
    base_steps: list[list[dict[str, Any]]], update: list[dict[str, Any]], limit: int
) -> None:
    """``within`` leaves out the variables an update added last, never one the base had, and
    the result is the model built at once from what it keeps."""
    base = DeviceModel()
    for step in base_steps:
        base = base.with_report_data(step)
    updated = base.with_report_data(update)
    model, left_out = updated.within(limit, base=base)
    assert len(model) == max(min(len(updated), limit), len(base))
    assert left_out == len(updated) - len(model)
    fresh = DeviceModel(variables=model.variables)
    assert model == fresh
    assert [model.variable(v.component, v.variable) for v in fresh.variables] == list(
        fresh.variables
    )
    # every variable of the base is kept, as the update left it
    for variable in base.variables:
        assert model.variable(variable.component, variable.variable) == updated.variable(
            variable.component, variable.variable
        )
    # the new variables kept are the first the update brought
    known = {v.key for v in base.variables}
    added = [
        k
        for k in dict.fromkeys(DeviceVariable.from_report_data(d).key for d in update)
        if k not in known
    ]
    kept = {v.key for v in model.variables}
    assert [k for k in added if k in kept] == added[: len(added) - left_out]


def test_within_a_limit_the_model_is_left_as_it_is() -> None:
    base = DeviceModel().with_value("OCPPCommCtrlr", "HeartbeatInterval", "300")
    updated = base.with_value("EVSE", "Power", "7400")
    assert updated.within(2, base=base) == (updated, 0)
    assert updated.within(2, base=base)[0] is updated
    model, left_out = updated.within(1, base=base)
    assert (model, left_out) == (base, 1)
