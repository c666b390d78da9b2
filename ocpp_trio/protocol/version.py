"""OCPP versions and their WebSocket subprotocol names."""

from __future__ import annotations

import enum

__all__ = ["Version"]


class Version(enum.StrEnum):
    """An OCPP-J version this library speaks."""

    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"

    @property
    def subprotocol(self) -> str:
        """The ``Sec-WebSocket-Protocol`` token, e.g. ``ocpp2.0.1``."""
        return "ocpp" + self.value

    @classmethod
    def from_subprotocol(cls, token: str) -> Version | None:
        """The version for a subprotocol token, or ``None`` when we do not speak it."""
        return _BY_SUBPROTOCOL.get(token)


_BY_SUBPROTOCOL = {v.subprotocol: v for v in Version}
