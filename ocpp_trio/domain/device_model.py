"""The device model of one station, as plain frozen records (sans-IO, no trio).

A station is a set of *components* (name, optional instance, optional EVSE/connector) holding
*variables* (name, optional instance), each with up to four *attributes* keyed by type (Actual,
Target, MinSet, MaxSet) and optional read-only *characteristics* (OCPP.md §5).  A
:class:`DeviceModel` keys its entries by (component name, component instance, EVSE, connector,
variable name, variable instance); names and instances compare case-insensitively, as the
specification asks, while the spelling first seen is kept for display.

A model is immutable: every update returns a new model (``with_*`` methods), so the current model
of a station can be read at any time, handed to other tasks, saved and restored.

OCPP 1.6 has a flat configuration instead: ``GetConfiguration``/``ChangeConfiguration`` keys are
mapped onto the same model as variables of the component ``"OCPP16"`` (:data:`OCPP16_COMPONENT`),
variable name = key, attribute Actual, mutability ReadOnly when the key is ``readonly`` else
ReadWrite.

Secrets: a **write-only** attribute never keeps a value here.  Write-only are the attributes whose
mutability is ``WriteOnly`` (as the station reported it) and, whatever was reported, the known
secrets :data:`SECRET_VARIABLES` (2.x ``SecurityCtrlr.BasicAuthPassword``, 1.6
``AuthorizationKey``).  Whatever path brings a value for one (a SetVariables or
ChangeConfiguration the station accepted, a report or a read from a misbehaving station), the
model keeps the attribute without its value, so a model that is saved, shown or logged holds
no secret.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import attrs

from ocpp_trio.domain.wire import Json, as_bool, as_float, as_int, as_list, as_map, as_str

__all__ = [
    "ATTRIBUTE_TYPES",
    "OCPP16_COMPONENT",
    "SECRET_VARIABLES",
    "WRITE_ONLY",
    "ComponentRef",
    "DeviceModel",
    "DeviceVariable",
    "GetVariable",
    "SetVariable",
    "VariableAttribute",
    "VariableCharacteristics",
    "VariableRef",
    "VariableResult",
    "is_secret_variable",
    "split_batches",
]

#: the attribute types of a variable, in the specification's order
ATTRIBUTE_TYPES: Final = ("Actual", "Target", "MinSet", "MaxSet")
#: the component under which 1.6 configuration keys are kept
OCPP16_COMPONENT: Final = "OCPP16"
#: the mutability of an attribute that may be set but never read back (a secret)
WRITE_ONLY: Final = "WriteOnly"
#: (component, variable) names, case-folded, that are secrets whatever a station reports: the
#: 2.x Basic-auth password and the 1.6 AuthorizationKey (a configuration key, kept under
#: :data:`OCPP16_COMPONENT`)
SECRET_VARIABLES: Final = frozenset(
    {("securityctrlr", "basicauthpassword"), ("ocpp16", "authorizationkey")}
)

T = TypeVar("T")


def _fold(text: str | None) -> str:
    return "" if text is None else text.casefold()


def is_secret_variable(component: str, variable: str) -> bool:
    """Whether ``component.variable`` is one of :data:`SECRET_VARIABLES` (any case)."""
    return (component.casefold(), variable.casefold()) in SECRET_VARIABLES


def _is_write_only(mutability: str | None) -> bool:
    return mutability is not None and mutability.casefold() == "writeonly"


def _evse_key(value: int | None) -> int:
    return -1 if value is None else value


def _attribute_type(value: str) -> str:
    """The canonical spelling of an attribute type (case-insensitive input)."""
    for known in ATTRIBUTE_TYPES:
        if known.casefold() == value.casefold():
            return known
    return value


@attrs.frozen(kw_only=True)
class ComponentRef:
    """A component address: name, instance and the EVSE/connector it sits at."""

    name: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None

    @property
    def key(self) -> tuple[str, str, int, int]:
        """The case-insensitive lookup key."""
        return (
            _fold(self.name),
            _fold(self.instance),
            _evse_key(self.evse_id),
            _evse_key(self.connector_id),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire ``ComponentType``."""
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.evse_id is not None:
            evse: dict[str, Any] = {"id": self.evse_id}
            if self.connector_id is not None:
                evse["connectorId"] = self.connector_id
            out["evse"] = evse
        return out

    @classmethod
    def from_json(cls, data: Json) -> ComponentRef:
        """Read a wire ``ComponentType``."""
        evse = as_map(data.get("evse"))
        return cls(
            name=as_str(data.get("name")) or "",
            instance=as_str(data.get("instance")),
            evse_id=as_int(evse.get("id")),
            connector_id=as_int(evse.get("connectorId")),
        )


@attrs.frozen(kw_only=True)
class VariableRef:
    """A variable address within its component: name and instance."""

    name: str
    instance: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The case-insensitive lookup key."""
        return (_fold(self.name), _fold(self.instance))

    def to_json(self) -> dict[str, Any]:
        """The wire ``VariableType``."""
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        return out

    @classmethod
    def from_json(cls, data: Json) -> VariableRef:
        """Read a wire ``VariableType``."""
        return cls(name=as_str(data.get("name")) or "", instance=as_str(data.get("instance")))


def _component(value: ComponentRef | str) -> ComponentRef:
    return ComponentRef(name=value) if isinstance(value, str) else value


def _variable(value: VariableRef | str) -> VariableRef:
    return VariableRef(name=value) if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class VariableAttribute:
    """One attribute of a variable.

    ``pending_value`` holds a value the station accepted with RebootRequired: it applies after
    the next reboot, and a later report or read of the variable clears it.
    """

    type: str = attrs.field(default="Actual", converter=_attribute_type)
    value: str | None = None
    mutability: str | None = None
    persistent: bool | None = None
    constant: bool | None = None
    pending_value: str | None = None

    @classmethod
    def from_json(cls, data: Json) -> VariableAttribute:
        """Read a wire ``VariableAttributeType``."""
        return cls(
            type=as_str(data.get("type")) or "Actual",
            value=as_str(data.get("value")),
            mutability=as_str(data.get("mutability")),
            persistent=data.get("persistent") if isinstance(data.get("persistent"), bool) else None,
            constant=data.get("constant") if isinstance(data.get("constant"), bool) else None,
        )


@attrs.frozen(kw_only=True)
class VariableCharacteristics:
    """The read-only characteristics of a variable (``VariableCharacteristicsType``)."""

    data_type: str
    supports_monitoring: bool = False
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str | None = None

    @classmethod
    def from_json(cls, data: Json) -> VariableCharacteristics:
        """Read a wire ``VariableCharacteristicsType``."""
        return cls(
            data_type=as_str(data.get("dataType")) or "string",
            supports_monitoring=as_bool(data.get("supportsMonitoring")),
            unit=as_str(data.get("unit")),
            min_limit=as_float(data.get("minLimit")),
            max_limit=as_float(data.get("maxLimit")),
            values_list=as_str(data.get("valuesList")),
        )


def _sorted_attributes(attributes: Iterable[VariableAttribute]) -> tuple[VariableAttribute, ...]:
    by_type = {a.type: a for a in attributes}
    order = {t: i for i, t in enumerate(ATTRIBUTE_TYPES)}
    return tuple(sorted(by_type.values(), key=lambda a: (order.get(a.type, 99), a.type)))


@attrs.frozen(kw_only=True)
class DeviceVariable:
    """One variable of one component, with its attributes and characteristics."""

    component: ComponentRef
    variable: VariableRef
    attributes: tuple[VariableAttribute, ...] = attrs.field(
        default=(), converter=_sorted_attributes
    )
    characteristics: VariableCharacteristics | None = None

    def __attrs_post_init__(self) -> None:
        secret = is_secret_variable(self.component.name, self.variable.name)
        if not secret and not any(_is_write_only(a.mutability) for a in self.attributes):
            return
        # a write-only attribute keeps no value (see the module docs)
        cleaned = tuple(
            attrs.evolve(
                a,
                value=None,
                pending_value=None,
                mutability=WRITE_ONLY if secret else a.mutability,
            )
            if secret or _is_write_only(a.mutability)
            else a
            for a in self.attributes
        )
        if cleaned != self.attributes:
            object.__setattr__(self, "attributes", cleaned)

    @property
    def key(self) -> tuple[str, str, int, int, str, str]:
        """The case-insensitive lookup key (component, then variable)."""
        return (*self.component.key, *self.variable.key)

    def write_only(self, attribute_type: str = "Actual") -> bool:
        """Whether the attribute of ``attribute_type`` is write-only (a secret: see the module
        docs), also when the model has no such attribute yet."""
        if is_secret_variable(self.component.name, self.variable.name):
            return True
        attribute = self.attribute(attribute_type)
        return attribute is not None and _is_write_only(attribute.mutability)

    def attribute(self, attribute_type: str = "Actual") -> VariableAttribute | None:
        """The attribute of ``attribute_type`` (case-insensitive), or ``None``."""
        wanted = _attribute_type(attribute_type)
        for attribute in self.attributes:
            if attribute.type == wanted:
                return attribute
        return None

    @property
    def value(self) -> str | None:
        """The value of the Actual attribute."""
        attribute = self.attribute("Actual")
        return None if attribute is None else attribute.value

    def with_attribute(self, attribute: VariableAttribute) -> DeviceVariable:
        """This variable with ``attribute`` replacing the one of the same type."""
        others = [a for a in self.attributes if a.type != attribute.type]
        return attrs.evolve(self, attributes=(*others, attribute))

    def merged(self, newer: DeviceVariable) -> DeviceVariable:
        """This variable updated by ``newer``: its attributes replace those of the same type
        (keeping our mutability where ``newer`` names none, so a write-only attribute stays
        write-only); its characteristics replace ours when it has some."""
        result = self
        for attribute in newer.attributes:
            if attribute.mutability is None:
                old = self.attribute(attribute.type)
                if old is not None and old.mutability is not None:
                    attribute = attrs.evolve(attribute, mutability=old.mutability)
            result = result.with_attribute(attribute)
        if newer.characteristics is not None:
            result = attrs.evolve(result, characteristics=newer.characteristics)
        return result

    @classmethod
    def from_report_data(cls, data: Json) -> DeviceVariable:
        """Read a wire ``ReportDataType`` (one entry of NotifyReport's ``reportData``)."""
        characteristics = data.get("variableCharacteristics")
        return cls(
            component=ComponentRef.from_json(as_map(data.get("component"))),
            variable=VariableRef.from_json(as_map(data.get("variable"))),
            attributes=tuple(
                VariableAttribute.from_json(as_map(a))
                for a in as_list(data.get("variableAttribute"))
            ),
            characteristics=(
                VariableCharacteristics.from_json(as_map(characteristics))
                if characteristics is not None
                else None
            ),
        )


def _sort_key(variable: DeviceVariable) -> tuple[str, str, int, int, str, str]:
    return variable.key


def _variables(values: Iterable[DeviceVariable]) -> tuple[DeviceVariable, ...]:
    return tuple(values)


def _made(
    ordered: Iterable[DeviceVariable],
    index: dict[tuple[str, str, int, int, str, str], DeviceVariable],
) -> DeviceModel:
    """A model of variables already merged and sorted, with their index: without the sorting
    and merging of ``DeviceModel(variables=...)`` (an update places what it changed itself)."""
    model: DeviceModel = object.__new__(DeviceModel)
    object.__setattr__(model, "variables", tuple(ordered))
    object.__setattr__(model, "_index", index)
    return model


@attrs.frozen(kw_only=True)
class DeviceModel:
    """An immutable device model: a set of :class:`DeviceVariable` keyed case-insensitively.

    Build one by hand (``DeviceModel().with_value("OCPPCommCtrlr", "HeartbeatInterval", "300")``),
    from report data (:meth:`with_report_data`), or from a saved ``variables`` tuple.  Two
    variables with the same key are merged (the later one wins per attribute).
    """

    variables: tuple[DeviceVariable, ...] = attrs.field(default=(), converter=_variables)
    _index: dict[tuple[str, str, int, int, str, str], DeviceVariable] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        index: dict[tuple[str, str, int, int, str, str], DeviceVariable] = {}
        for variable in self.variables:
            old = index.get(variable.key)
            index[variable.key] = variable if old is None else old.merged(variable)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "variables", tuple(sorted(index.values(), key=_sort_key)))

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.variables)

    def __iter__(self) -> Iterator[DeviceVariable]:
        return iter(self.variables)

    def variable(
        self,
        component: ComponentRef | str,
        variable: VariableRef | str,
        *,
        component_instance: str | None = None,
        evse_id: int | None = None,
        connector_id: int | None = None,
        variable_instance: str | None = None,
    ) -> DeviceVariable | None:
        """The variable at exactly this address (absent parts must be absent), or ``None``.

        ``component``/``variable`` may be full refs or bare names; with a bare name the keyword
        arguments give the rest of the address.
        """
        c = _component(component)
        if isinstance(component, str):
            c = ComponentRef(
                name=component,
                instance=component_instance,
                evse_id=evse_id,
                connector_id=connector_id,
            )
        v = (
            VariableRef(name=variable, instance=variable_instance)
            if isinstance(variable, str)
            else variable
        )
        return self._index.get((*c.key, *v.key))

    def get(
        self,
        component: ComponentRef | str,
        variable: VariableRef | str,
        *,
        attribute: str = "Actual",
        component_instance: str | None = None,
        evse_id: int | None = None,
        connector_id: int | None = None,
        variable_instance: str | None = None,
    ) -> str | None:
        """The value of one attribute of one variable, or ``None`` when unknown."""
        found = self.variable(
            component,
            variable,
            component_instance=component_instance,
            evse_id=evse_id,
            connector_id=connector_id,
            variable_instance=variable_instance,
        )
        if found is None:
            return None
        attr = found.attribute(attribute)
        return None if attr is None else attr.value

    def find(
        self,
        component: str | None = None,
        variable: str | None = None,
        *,
        component_instance: str | None = None,
        evse_id: int | None = None,
        connector_id: int | None = None,
        variable_instance: str | None = None,
    ) -> tuple[DeviceVariable, ...]:
        """Every variable matching the given parts (``None`` matches anything)."""

        def match(v: DeviceVariable) -> bool:
            c = v.component
            return (
                (component is None or _fold(c.name) == _fold(component))
                and (component_instance is None or _fold(c.instance) == _fold(component_instance))
                and (evse_id is None or c.evse_id == evse_id)
                and (connector_id is None or c.connector_id == connector_id)
                and (variable is None or _fold(v.variable.name) == _fold(variable))
                and (
                    variable_instance is None
                    or _fold(v.variable.instance) == _fold(variable_instance)
                )
            )

        return tuple(v for v in self.variables if match(v))

    def is_write_only(
        self,
        component: ComponentRef | str,
        variable: VariableRef | str,
        attribute: str = "Actual",
    ) -> bool:
        """Whether this attribute is write-only: a known secret, or reported ``WriteOnly``."""
        c, v = _component(component), _variable(variable)
        if is_secret_variable(c.name, v.name):
            return True
        found = self._index.get((*c.key, *v.key))
        return found is not None and found.write_only(attribute)

    def components(self) -> tuple[ComponentRef, ...]:
        """The distinct components, in key order (spelling of their first variable)."""
        seen: dict[tuple[str, str, int, int], ComponentRef] = {}
        for v in self.variables:
            seen.setdefault(v.component.key, v.component)
        return tuple(seen.values())

    def evse_layout(self) -> dict[int, frozenset[int]]:
        """EVSE id -> connector ids, from the ``EVSE`` and ``Connector`` components present."""
        layout: dict[int, set[int]] = {}
        for c in self.components():
            if c.evse_id is None:
                continue
            name = _fold(c.name)
            if name == "evse":
                layout.setdefault(c.evse_id, set())
            elif name == "connector" and c.connector_id is not None:
                layout.setdefault(c.evse_id, set()).add(c.connector_id)
        return {evse: frozenset(connectors) for evse, connectors in layout.items()}

    def limit(self, name: str, message: str) -> int | None:
        """A positive ``DeviceDataCtrlr.<name>`` limit for ``message`` (variable instance), e.g.
        ``limit("ItemsPerMessage", "SetVariables")``; ``None`` when unknown or not positive."""
        value = as_int_text(self.get("DeviceDataCtrlr", name, variable_instance=message))
        return value if value is not None and value > 0 else None

    # -- updating --------------------------------------------------------------------------

    def with_variables(self, variables: Iterable[DeviceVariable]) -> DeviceModel:
        """A model with ``variables`` merged in (see :meth:`DeviceVariable.merged`)."""
        index = self._index
        changes: dict[tuple[str, str, int, int, str, str], DeviceVariable] = {}
        for variable in variables:
            key = variable.key
            old = changes.get(key)
            if old is None:
                old = index.get(key)
            changes[key] = variable if old is None else old.merged(variable)
        return self._changed(changes)

    def _changed(
        self, changes: Mapping[tuple[str, str, int, int, str, str], DeviceVariable]
    ) -> DeviceModel:
        """This model with the variables of ``changes`` (merged already) put in or replaced.

        Built from this model's sorted variables and index rather than from scratch: a
        station's model can hold thousands of variables, a report brings them fifty at a time,
        and a variable set by a call changes one.  Only the changed keys are placed (by
        bisection); the result equals ``DeviceModel(variables=...)`` of the same variables.
        """
        if not changes:
            return self
        index = dict(self._index)
        index.update(changes)
        ordered = list(self.variables)
        for key in sorted(changes):
            at = bisect.bisect_left(ordered, key, key=_sort_key)
            if at < len(ordered) and ordered[at].key == key:
                ordered[at] = changes[key]
            else:
                ordered.insert(at, changes[key])
        return _made(ordered, index)

    def within(self, limit: int, *, base: DeviceModel) -> tuple[DeviceModel, int]:
        """This model without the variables it has beyond ``base`` once it holds ``limit``:
        (that model, how many variables were left out).  Every variable of ``base`` is kept
        (as it is in this model).

        For a model made from ``base`` by an update (:meth:`with_variables` and the methods
        built on it), the variables left out are the last ones the update added.  Costs a
        copy of the model plus O(log n) per variable left out.
        """
        excess = len(self) - max(limit, len(base))
        if excess <= 0:
            return self, 0
        known = base._index
        drop: list[tuple[str, str, int, int, str, str]] = []
        # an update appends the keys it adds to the index, so the newest are at its end
        for key in reversed(self._index):
            if key not in known:
                drop.append(key)
                if len(drop) == excess:
                    break
        index = dict(self._index)
        ordered = list(self.variables)
        for key in drop:
            del index[key]
            at = bisect.bisect_left(ordered, key, key=_sort_key)
            del ordered[at]
        return _made(ordered, index), len(drop)

    def with_value(
        self,
        component: ComponentRef | str,
        variable: VariableRef | str,
        value: str,
        *,
        attribute: str = "Actual",
        pending: bool = False,
        mutability: str | None = None,
    ) -> DeviceModel:
        """A model where one attribute has ``value`` (or, with ``pending``, will have it after
        a reboot).  Creates the variable and attribute as needed; other fields are kept."""
        c, v = _component(component), _variable(variable)
        current = self._index.get((*c.key, *v.key)) or DeviceVariable(component=c, variable=v)
        old = current.attribute(attribute) or VariableAttribute(type=attribute)
        if pending:
            new = attrs.evolve(old, pending_value=value)
        else:
            new = attrs.evolve(old, value=value, pending_value=None)
        if mutability is not None:
            new = attrs.evolve(new, mutability=mutability)
        return self._changed({current.key: current.with_attribute(new)})

    def with_report_data(self, report_data: Iterable[Json]) -> DeviceModel:
        """A model updated by NotifyReport ``reportData`` entries (wire JSON)."""
        return self.with_variables(DeviceVariable.from_report_data(d) for d in report_data)

    def with_configuration(self, keys: Iterable[Json]) -> DeviceModel:
        """A model updated by 1.6 ``configurationKey`` entries (GetConfiguration results)."""
        variables = []
        for key in keys:
            name = as_str(key.get("key"))
            if not name:
                continue
            readonly = as_bool(key.get("readonly"))
            attribute = VariableAttribute(
                type="Actual",
                value=as_str(key.get("value")),
                mutability="ReadOnly" if readonly else "ReadWrite",
            )
            variables.append(
                DeviceVariable(
                    component=ComponentRef(name=OCPP16_COMPONENT),
                    variable=VariableRef(name=name),
                    attributes=(attribute,),
                )
            )
        return self.with_variables(variables)


def as_int_text(value: str | None) -> int | None:
    """An integer written as text (device-model values are strings), or ``None``."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


# -- Get/SetVariables items ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class GetVariable:
    """One item of a GetVariables request (names may be given as plain strings)."""

    component: ComponentRef = attrs.field(converter=_component)
    variable: VariableRef = attrs.field(converter=_variable)
    attribute: str = attrs.field(default="Actual", converter=_attribute_type)

    def to_json(self) -> dict[str, Any]:
        """The wire ``GetVariableDataType``."""
        out: dict[str, Any] = {
            "component": self.component.to_json(),
            "variable": self.variable.to_json(),
        }
        if self.attribute != "Actual":
            out["attributeType"] = self.attribute
        return out


@attrs.frozen(kw_only=True)
class SetVariable:
    """One item of a SetVariables request (names may be given as plain strings)."""

    component: ComponentRef = attrs.field(converter=_component)
    variable: VariableRef = attrs.field(converter=_variable)
    value: str
    attribute: str = attrs.field(default="Actual", converter=_attribute_type)

    def to_json(self) -> dict[str, Any]:
        """The wire ``SetVariableDataType``."""
        out: dict[str, Any] = {
            "component": self.component.to_json(),
            "variable": self.variable.to_json(),
            "attributeValue": self.value,
        }
        if self.attribute != "Actual":
            out["attributeType"] = self.attribute
        return out


@attrs.frozen(kw_only=True)
class VariableResult:
    """The station's answer for one Get/SetVariables item.

    ``status`` is the wire value (Accepted, Rejected, UnknownComponent, UnknownVariable,
    NotSupportedAttributeType, RebootRequired); ``value`` is set for an accepted get.
    """

    component: ComponentRef
    variable: VariableRef
    attribute: str
    status: str
    value: str | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the item succeeded (Accepted, or RebootRequired for a set)."""
        return self.status in ("Accepted", "RebootRequired")

    @classmethod
    def from_get_json(cls, data: Json) -> VariableResult:
        """Read a wire ``GetVariableResultType``."""
        return cls(
            component=ComponentRef.from_json(as_map(data.get("component"))),
            variable=VariableRef.from_json(as_map(data.get("variable"))),
            attribute=as_str(data.get("attributeType")) or "Actual",
            status=as_str(data.get("attributeStatus")) or "",
            value=as_str(data.get("attributeValue")),
            reason=as_str(as_map(data.get("attributeStatusInfo")).get("reasonCode")),
        )

    @classmethod
    def from_set_json(cls, data: Json) -> VariableResult:
        """Read a wire ``SetVariableResultType``."""
        return cls(
            component=ComponentRef.from_json(as_map(data.get("component"))),
            variable=VariableRef.from_json(as_map(data.get("variable"))),
            attribute=as_str(data.get("attributeType")) or "Actual",
            status=as_str(data.get("attributeStatus")) or "",
            reason=as_str(as_map(data.get("attributeStatusInfo")).get("reasonCode")),
        )


def apply_get_results(model: DeviceModel, results: Iterable[VariableResult]) -> DeviceModel:
    """The model updated by accepted GetVariables results (value read from the station)."""
    for r in results:
        if r.status == "Accepted" and r.value is not None:
            model = model.with_value(r.component, r.variable, r.value, attribute=r.attribute)
    return model


def apply_set_results(
    model: DeviceModel, requested: Sequence[SetVariable], results: Iterable[VariableResult]
) -> tuple[DeviceModel, list[VariableResult]]:
    """The model updated by SetVariables results; also the RebootRequired results.

    The value comes from the request (results do not echo it); an item is matched by its
    address and attribute type.
    """
    values = {(*s.component.key, *s.variable.key, s.attribute): s.value for s in requested}
    reboot: list[VariableResult] = []
    for r in results:
        value = values.get((*r.component.key, *r.variable.key, r.attribute))
        if value is None or not r.accepted:
            continue
        pending = r.status == "RebootRequired"
        if pending:
            reboot.append(r)
        model = model.with_value(
            r.component, r.variable, value, attribute=r.attribute, pending=pending
        )
    return model, reboot


def split_batches(
    items: Sequence[T],
    *,
    max_items: int | None,
    max_bytes: int | None,
    size: Callable[[Sequence[T]], int],
) -> list[list[T]]:
    """Split ``items`` into batches of at most ``max_items`` whose ``size`` (the encoded message,
    in bytes) stays within ``max_bytes``; greedy, order kept.  An item too big on its own is
    sent alone (the station will say so)."""
    batches: list[list[T]] = []
    current: list[T] = []
    for item in items:
        candidate = [*current, item]
        too_many = max_items is not None and len(candidate) > max_items
        too_big = max_bytes is not None and size(candidate) > max_bytes
        if current and (too_many or too_big):
            batches.append(current)
            current = [item]
        else:
            current = candidate
    if current:
        batches.append(current)
    return batches


def json_size(payload: Mapping[str, Any]) -> int:
    """Bytes of a CALL frame carrying ``payload`` (UTF-8, compact JSON; the id is estimated)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return len(body.encode()) + 64
