"""Hand-written base of the generated message modules.

Every generated class derives from one of :class:`Datatype`, :class:`Request`, :class:`Response`
or :class:`Send`.  The generated module of each version also exports ``ACTIONS``, a mapping from
action name to :class:`ActionSpec`.  Nothing in this module imports trio.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Generic, Self, TypeVar

import attrs

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
]


class Datatype:
    """A schema object: frozen, keyword-only, checked at construction.

    Generated subclasses implement :meth:`to_json` and :meth:`from_json`.
    """

    __slots__ = ()

    #: version of the schema this class was generated from
    VERSION: ClassVar[Version]

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict with wire names; absent optional fields are omitted."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: object, path: str = "") -> Self:
        """Check ``data`` (parsed JSON) against the schema and build an instance.

        Raises:
            MessageValidationError: naming the field path, the value and the OCPP error code.
        """
        raise NotImplementedError


class Message(Datatype):
    """A top-level payload of an OCPP action."""

    __slots__ = ()

    #: the action name as it appears in a CALL frame, e.g. ``"BootNotification"``
    ACTION: ClassVar[str]


class Response(Message):
    """The payload of a CALLRESULT."""

    __slots__ = ()


ResponseT = TypeVar("ResponseT", bound=Response, covariant=True)


class Request(Message, Generic[ResponseT]):
    """The payload of a CALL, generic over the type of its response.

    ``await station.call(request)`` is typed as returning ``ResponseT``.
    """

    __slots__ = ()

    #: the response class that answers this request
    RESPONSE: ClassVar[type[Response]]


class Send(Message):
    """The payload of a 2.1 SEND frame: never answered."""

    __slots__ = ()


class Direction(enum.Enum):
    """Who sends the CALL of an action."""

    STATION_TO_CSMS = "station->csms"
    CSMS_TO_STATION = "csms->station"
    BOTH = "both"

    def sent_by_station(self) -> bool:
        """Whether a station may send this action's CALL (or SEND)."""
        return self is not Direction.CSMS_TO_STATION

    def sent_by_csms(self) -> bool:
        """Whether the CSMS may send this action's CALL."""
        return self is not Direction.STATION_TO_CSMS


@attrs.frozen(kw_only=True)
class ActionSpec:
    """One entry of a version's action registry."""

    version: Version
    action: str
    #: the request class (a :class:`Send` subclass for SEND-only actions)
    request: type[Message]
    #: the response class; ``None`` for SEND-only actions
    response: type[Response] | None
    direction: Direction

    @property
    def is_send(self) -> bool:
        """Whether this action travels as a 2.1 SEND frame (never answered)."""
        return self.response is None
