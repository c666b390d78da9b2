"""Secrets out of messages: what a log line, a journal entry or an admin answer may show.

A *secret* is the value of a write-only attribute (see :mod:`ocpp_trio.domain.device_model`):
2.x ``SecurityCtrlr.BasicAuthPassword``, 1.6 ``AuthorizationKey``, any attribute the station
reported with mutability ``WriteOnly``, and the 2.1 ``basicAuthPassword`` of a network
connection profile.  :func:`redact_message` returns a message with each secret replaced by
:data:`REDACTED` (the message itself when it holds none), so it can be logged or stored as it
is; :func:`redact_json` does the same on wire JSON.

Only the messages that can carry such a value are looked at (:data:`REDACTED_ACTIONS`); every
other message is returned untouched at the cost of one set lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from ocpp_trio.domain.device_model import (
    OCPP16_COMPONENT,
    ComponentRef,
    DeviceModel,
    VariableRef,
    is_secret_variable,
)
from ocpp_trio.domain.wire import as_list, as_map, as_str
from ocpp_trio.messages._base import Message, Response

__all__ = ["REDACTED", "REDACTED_ACTIONS", "redact_json", "redact_message"]

#: what a secret is replaced with
REDACTED: Final = "***"

M = TypeVar("M", bound=Message)
_Rule = Callable[[dict[str, Any], "_Secrets"], bool]


class _Secrets:
    """Which attributes are write-only, by the known names and the device model."""

    def __init__(self, model: DeviceModel | None) -> None:
        self.model = model

    def write_only(self, component: object, variable: object, attribute: object) -> bool:
        c = ComponentRef.from_json(as_map(component))
        v = VariableRef.from_json(as_map(variable))
        if is_secret_variable(c.name, v.name):
            return True
        kind = as_str(attribute) or "Actual"
        return self.model is not None and self.model.is_write_only(c, v, kind)

    def key_write_only(self, key: object) -> bool:
        name = as_str(key) or ""
        if is_secret_variable(OCPP16_COMPONENT, name):
            return True
        return self.model is not None and self.model.is_write_only(OCPP16_COMPONENT, name)


def _items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in as_list(data.get(key)) if isinstance(item, dict)]


def _hide(item: dict[str, Any], key: str) -> bool:
    if key in item and item[key] != REDACTED:
        item[key] = REDACTED
        return True
    return False


def _variables(list_key: str) -> _Rule:
    """The rule for Set/GetVariables: ``attributeValue`` of the items under ``list_key``."""

    def rule(data: dict[str, Any], secrets: _Secrets) -> bool:
        changed = False
        for item in _items(data, list_key):
            kind = item.get("attributeType")
            if secrets.write_only(item.get("component"), item.get("variable"), kind):
                changed |= _hide(item, "attributeValue")
        return changed

    return rule


def _notify_report(data: dict[str, Any], secrets: _Secrets) -> bool:
    changed = False
    for item in _items(data, "reportData"):
        for attribute in _items(item, "variableAttribute"):
            mutability = as_str(attribute.get("mutability")) or ""
            if mutability.casefold() == "writeonly" or secrets.write_only(
                item.get("component"), item.get("variable"), attribute.get("type")
            ):
                changed |= _hide(attribute, "value")
    return changed


def _notify_event(data: dict[str, Any], secrets: _Secrets) -> bool:
    changed = False
    for item in _items(data, "eventData"):
        if secrets.write_only(item.get("component"), item.get("variable"), None):
            changed |= _hide(item, "actualValue")
    return changed


def _change_configuration(data: dict[str, Any], secrets: _Secrets) -> bool:
    return secrets.key_write_only(data.get("key")) and _hide(data, "value")


def _get_configuration(data: dict[str, Any], secrets: _Secrets) -> bool:
    changed = False
    for item in _items(data, "configurationKey"):
        if secrets.key_write_only(item.get("key")):
            changed |= _hide(item, "value")
    return changed


def _network_profile(data: dict[str, Any], secrets: _Secrets) -> bool:
    connection = data.get("connectionData")
    return isinstance(connection, dict) and _hide(connection, "basicAuthPassword")


# (action, request?) -> the rule that hides its secrets in place
_RULES: Final[Mapping[tuple[str, bool], _Rule]] = {
    ("SetVariables", True): _variables("setVariableData"),
    ("GetVariables", False): _variables("getVariableResult"),
    ("NotifyReport", True): _notify_report,
    ("NotifyEvent", True): _notify_event,
    ("ChangeConfiguration", True): _change_configuration,
    ("GetConfiguration", False): _get_configuration,
    ("SetNetworkProfile", True): _network_profile,
}
#: the actions whose messages may carry a secret
REDACTED_ACTIONS: Final = frozenset(action for action, _request in _RULES)


def redact_json(
    action: str,
    payload: Mapping[str, Any],
    *,
    request: bool,
    device_model: DeviceModel | None = None,
) -> Mapping[str, Any]:
    """``payload`` (wire JSON of ``action``'s request or response) with every secret replaced
    by :data:`REDACTED`: a new object when something was hidden, else ``payload`` itself.

    ``device_model`` adds the attributes the station reported ``WriteOnly``; the known secrets
    are hidden without it.
    """
    rule = _RULES.get((action, request))
    if rule is None:
        return payload
    copy = _deep_copy(payload)
    return copy if rule(copy, _Secrets(device_model)) else payload


def redact_message(message: M, device_model: DeviceModel | None = None) -> M:
    """``message`` with every secret replaced by :data:`REDACTED` (see :func:`redact_json`);
    the same object when it holds none."""
    action = message.ACTION
    request = not isinstance(message, Response)
    if (action, request) not in _RULES:
        return message
    data = message.to_json()
    hidden = redact_json(action, data, request=request, device_model=device_model)
    if hidden is data:
        return message
    return type(message).from_json(hidden)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_copy(v) for v in value]
    return value
