"""permessage-deflate (RFC 7692) for 2.x connections, with a bound on inflation.

OCPP 2.0.1 and 2.1 say the CSMS SHALL support permessage-deflate (it is optional for stations;
1.6 advises against anything beyond RFC 6455).  wsproto implements the extension; this module
adds what a server facing untrusted stations needs on top:

* **A bound on inflation.** A few kilobytes of deflate data can inflate to gigabytes.  wsproto
  inflates each chunk it is given in full; :class:`BoundedPerMessageDeflate` stops just past
  the message size limit, so the connection is closed with 1009 exactly as for an over-long
  uncompressed message, and the rest is never inflated.
* **No context takeover, both ways.** With context takeover a connection keeps a zlib
  compressor and decompressor (hundreds of kilobytes) for its whole life; an idle station
  would cost more than ten times its usual footprint.  The server asks for
  ``server_no_context_takeover`` and ``client_no_context_takeover``, so both ends start every
  message afresh and nothing stays allocated between messages.
* **Accepting it through trio-websocket**, whose public ``accept()`` takes no extensions:
  :func:`accept_with_deflate` does what ``WebSocketRequest.accept()`` does, with the extension
  added.  It relies on trio-websocket internals, checked first: when they are not as expected
  the connection is accepted without compression (logged once), never refused.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, Final

import trio_websocket
from wsproto.events import AcceptConnection
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

__all__ = ["BoundedPerMessageDeflate", "accept_with_deflate", "inflation_bound", "offers_deflate"]

logger = logging.getLogger("ocpp_trio.server")

#: the UTF-8 bytes a text message of N characters may take at most
_BYTES_PER_CHARACTER: Final = 4

_internals_checked: bool | None = None


class BoundedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, never inflating a message beyond ``max_bytes`` + 1 bytes.

    What lies beyond is not inflated: the message is cut there, and the part delivered (more
    than the connection's message size limit allows, see :func:`inflation_bound`) makes the
    connection close with 1009 exactly as an over-long uncompressed message does.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(client_no_context_takeover=True, server_no_context_takeover=True)
        self._max_bytes = max_bytes
        self._inflated = 0
        self._cut = False

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._inbound_compressed and self._inbound_is_compressible):
            result = super().frame_inbound_complete(proto, fin)
            if fin:
                self._inflated, self._cut = 0, False
            return result
        # the message's end: the empty stored block the sender removed (RFC 7692 7.2.2)
        tail = self._inflate(b"\x00\x00\xff\xff")
        self._inflated, self._cut = 0, False
        self._decompressor = None  # no context takeover: nothing kept between messages
        self._inbound_compressed = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        if self._cut:
            return b""
        if decompressor is None:
            return CloseReason.INTERNAL_ERROR
        room = self._max_bytes - self._inflated + 1
        try:
            out = decompressor.decompress(data, room)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._max_bytes or decompressor.unconsumed_tail:
            self._cut = True  # the rest of this message is dropped, never inflated
        return out


def inflation_bound(max_message_size: int) -> int:
    """The bytes to inflate at most for a limit of ``max_message_size`` characters: enough
    UTF-8 for more characters than the limit, so an over-long message is seen as one."""
    return (max_message_size + 1) * _BYTES_PER_CHARACTER


def offers_deflate(request: trio_websocket.WebSocketRequest) -> bool:
    """Whether the upgrade request offers permessage-deflate (wsproto keeps the offers out of
    the request's headers, on its private request event)."""
    offers = getattr(getattr(request, "_event", None), "extensions", None) or ()
    return any(
        isinstance(offer, str) and offer.split(";", 1)[0].strip() == PerMessageDeflate.name
        for offer in offers
    )


def _internals_ok(request: trio_websocket.WebSocketRequest) -> bool:
    global _internals_checked
    connection = getattr(request, "_connection", None)
    ok = (
        connection is not None
        and hasattr(request, "_event")
        and hasattr(connection, "_send")
        and hasattr(connection, "_subprotocol")
        and hasattr(connection, "_path")
        and hasattr(connection, "_open_handshake")
    )
    if not ok and _internals_checked is None:
        logger.warning(
            "this trio-websocket version cannot be given the permessage-deflate extension; "
            "connections are accepted without compression"
        )
    _internals_checked = ok
    return ok


async def accept_with_deflate(
    request: trio_websocket.WebSocketRequest,
    *,
    subprotocol: str | None,
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    """Accept the upgrade like ``request.accept(subprotocol=...)``, also accepting
    permessage-deflate when the client offered it (bounded by ``max_message_size``
    characters)."""
    if not _internals_ok(request):
        return await request.accept(subprotocol=subprotocol)
    connection: Any = request._connection  # private: see the module docstring
    extension = BoundedPerMessageDeflate(inflation_bound(max_message_size))
    # what WebSocketConnection._accept does, with the extension
    connection._subprotocol = subprotocol
    connection._path = request._event.target
    await connection._send(
        AcceptConnection(subprotocol=subprotocol, extra_headers=[], extensions=[extension])
    )
    connection._open_handshake.set()
    result: trio_websocket.WebSocketConnection = connection
    return result
