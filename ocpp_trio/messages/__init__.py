"""Typed OCPP messages and the codec between them and parsed JSON.

The classes live in one generated module per version (``ocpp_trio.messages.v1_6``, ``v2_0_1``,
``v2_1``), imported on first use.  This package adds the version-independent entry points:

* :func:`actions` -- the action registry of a version;
* :func:`decode_request` / :func:`decode_response` -- check a parsed payload against its schema
  and build the message object (one pass; raises :class:`~ocpp_trio.MessageValidationError`);
* :func:`encode` -- the JSON-ready dict of a message, re-checked against the schema.

Nothing here imports trio.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ocpp_trio.errors import LocalProtocolError, MessageValidationError
from ocpp_trio.messages._base import (
    ActionSpec,
    Datatype,
    Direction,
    Message,
    Request,
    Response,
    ResponseT,
    Send,
)
from ocpp_trio.protocol.version import Version

__all__ = [
    "ActionSpec",
    "Datatype",
    "Direction",
    "Message",
    "Request",
    "Response",
    "ResponseT",
    "Send",
    "Version",
    "actions",
    "decode_request",
    "decode_response",
    "encode",
]

_MODULES = {Version.V16: "v1_6", Version.V201: "v2_0_1", Version.V21: "v2_1"}
_loaded: dict[str, Mapping[str, ActionSpec]] = {}
# version -> action -> class, filled with the registry: decoding is on the path of every message
_request_classes: dict[str, dict[str, type[Message]]] = {}
_response_classes: dict[str, dict[str, type[Response]]] = {}


def _module(version: Version) -> ModuleType:
    return importlib.import_module(f"{__name__}.{_MODULES[version]}")


def actions(version: Version | str) -> Mapping[str, ActionSpec]:
    """The action registry of ``version``: action name -> :class:`ActionSpec`.

    The version's generated module is imported on the first call and cached.

    Raises:
        ValueError: ``version`` is not a version this library speaks.
    """
    # Version is a StrEnum: "2.0.1" and Version.V201 are the same dict key
    registry = _loaded.get(version)
    if registry is None:
        v = Version(version)
        registry = _module(v).ACTIONS
        _request_classes[v] = {name: spec.request for name, spec in registry.items()}
        _response_classes[v] = {
            name: spec.response for name, spec in registry.items() if spec.response is not None
        }
        _loaded[v] = registry
    return registry


def decode_request(version: Version | str, action: str, payload: object) -> Message:
    """Check the payload of a CALL (or a 2.1 SEND) and build its message object.

    Args:
        version: the connection's OCPP version.
        action: the action name from the frame.
        payload: the parsed JSON payload.

    Returns:
        A :class:`Request` instance, or a :class:`Send` one for SEND-only actions.

    Raises:
        KeyError: ``action`` is not an action of ``version``.
        MessageValidationError: the payload breaks its schema (``.version`` is set).
    """
    try:
        cls = _request_classes[version][action]
    except KeyError:
        cls = _request_class(version, action)
    return cls.from_json(payload)


def _request_class(version: Version | str, action: str) -> type[Message]:
    """The slow path of :func:`decode_request`: load the version, or report the action."""
    try:
        return actions(version)[action].request
    except KeyError:
        raise KeyError(action) from None


def decode_response(version: Version | str, action: str, payload: object) -> Response:
    """Check the payload of a CALLRESULT to an ``action`` CALL and build its message object.

    Raises:
        KeyError: ``action`` is not an action of ``version``, or is SEND-only (never answered).
        MessageValidationError: the payload breaks its schema (``.version`` is set).
    """
    try:
        cls = _response_classes[version][action]
    except KeyError:
        cls = _response_class(version, action)
    return cls.from_json(payload)


def _response_class(version: Version | str, action: str) -> type[Response]:
    """The slow path of :func:`decode_response`: load the version, or report the action."""
    try:
        response = actions(version)[action].response
    except KeyError:
        raise KeyError(action) from None
    if response is None:
        raise KeyError(f"{action} is a SEND-only action and has no response") from None
    return response


def encode(message: Datatype, *, validate: bool = True) -> dict[str, Any]:
    """The JSON-ready payload of ``message``: wire names, optional fields omitted.

    Args:
        message: any generated message (or datatype) object.
        validate: check the encoded dict against the schema once more, so that a mistake of
            ours (or a value of the wrong type that slipped past the type checker) is reported
            here as ours, not by the peer.

    Raises:
        LocalProtocolError: with ``validate``, the encoded payload breaks its schema; the
            :class:`~ocpp_trio.MessageValidationError` is the ``__cause__``.
    """
    data = message.to_json()
    if validate:
        try:
            type(message).from_json(data)
        except MessageValidationError as e:
            what = getattr(message, "ACTION", type(message).__name__)
            raise LocalProtocolError(f"refusing to send an invalid {what} payload: {e}") from e
    return data
