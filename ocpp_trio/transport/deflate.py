"""permessage-deflate (RFC 7692) for 2.x connections, with a bound on inflation.

OCPP 2.0.1 and 2.1 say the CSMS SHALL support permessage-deflate (it is optional for stations;
1.6 advises against anything beyond RFC 6455).  :class:`BoundedPerMessageDeflate` is the whole
extension, written on wsproto's public :class:`~wsproto.extensions.Extension` interface, with
what a server facing untrusted stations needs:

* **A bound on inflation.** A few kilobytes of deflate data can inflate to gigabytes.  A
  message is never inflated beyond ``max_message_size`` + 1 bytes: one byte past the limit
  proves the message too big, the connection is failed with 1009 exactly as for an over-long
  uncompressed message, and the rest is never inflated.
* **No context takeover, both ways.** With context takeover a connection keeps a zlib
  compressor and decompressor (hundreds of kilobytes) for its whole life; an idle station would
  cost more than ten times its usual footprint.  The answer to an offer always carries
  ``server_no_context_takeover`` and ``client_no_context_takeover``, so both ends start every
  message afresh and nothing stays allocated between messages.
"""

from __future__ import annotations

import zlib
from typing import Final, Protocol

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["BoundedPerMessageDeflate"]

#: what the sender removes from the end of every compressed message (RFC 7692 §7.2.1)
_TAIL: Final = b"\x00\x00\xff\xff"
_DATA_OPCODES: Final = frozenset({Opcode.TEXT, Opcode.BINARY})
_PARAMETERS: Final = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


class _Inflater(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class _Deflater(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


class BoundedPerMessageDeflate(Extension):
    """permessage-deflate without context takeover, inflating at most ``max_message_size`` + 1
    bytes of a message.

    Give one to wsproto's ``AcceptConnection(extensions=[...])`` (server side): it is used only
    when the client offered permessage-deflate, and it answers the offer with
    ``server_no_context_takeover; client_no_context_takeover`` (plus the window size the client
    asked the server to keep to).  A message that inflates beyond ``max_message_size`` bytes
    fails the connection with 1009 (:attr:`CloseReason.MESSAGE_TOO_BIG`); corrupt deflate data
    fails it with 1007.  One instance serves one connection.

    Args:
        max_message_size: the largest inflated message accepted, in bytes.
    """

    name = "permessage-deflate"

    def __init__(self, max_message_size: int) -> None:
        if max_message_size < 1:
            raise ValueError(f"max_message_size must be >= 1, not {max_message_size}")
        self.max_message_size = max_message_size
        #: the window the server compresses with (the client may ask for a smaller one)
        self.server_max_window_bits = 15
        self._enabled = False
        # the message being received: None between messages, else whether it is compressed
        self._compressed: bool | None = None
        # whether the frame being received belongs to that message (not a control frame)
        self._data_frame = False
        self._decompressor: _Inflater | None = None
        self._inflated = 0
        self._compressor: _Deflater | None = None

    def enabled(self) -> bool:
        """Whether the handshake agreed on this extension."""
        return self._enabled

    # -- negotiation ---------------------------------------------------------------------------

    def offer(self) -> str:
        """The client's offer (for a client using this class): no context takeover both ways."""
        return "server_no_context_takeover; client_no_context_takeover"

    def finalize(self, offer: str) -> None:
        """The client side: the server accepted our offer."""
        self._enabled = True

    def accept(self, offer: str) -> str | None:
        """The server side: answer one of the client's offers, or decline it (``None``).

        Declined: unknown or repeated parameters, and a ``server_max_window_bits`` zlib cannot
        honour (below 9).  ``client_max_window_bits`` needs no answer: the inflater takes any
        window up to 15.
        """
        seen: set[str] = set()
        window: int | None = None
        for part in offer.split(";")[1:]:
            name, _, value = (s.strip() for s in part.partition("="))
            if name not in _PARAMETERS or name in seen:
                return None
            seen.add(name)
            value = value.strip('"')
            if name == "server_max_window_bits":
                if not value.isdigit() or not 9 <= int(value) <= 15:
                    return None
                window = int(value)
            elif name == "client_max_window_bits":
                if value and (not value.isdigit() or not 8 <= int(value) <= 15):
                    return None
            elif value:
                return None
        answer = "server_no_context_takeover; client_no_context_takeover"
        if window is not None:
            self.server_max_window_bits = window
            answer += f"; server_max_window_bits={window}"
        self._enabled = True
        return answer

    # -- receiving -------------------------------------------------------------------------------

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        """RSV1 marks the first frame of a compressed message, and nothing else."""
        if rsv.rsv1 and opcode not in _DATA_OPCODES:
            return CloseReason.PROTOCOL_ERROR
        self._data_frame = not opcode.iscontrol()
        if opcode in _DATA_OPCODES:
            self._compressed = rsv.rsv1
            self._inflated = 0
            self._decompressor = zlib.decompressobj(-15) if rsv.rsv1 else None
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate a piece of a compressed message, never past the bound."""
        if self._decompressor is None or not self._data_frame:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        """At the end of a compressed message, inflate the tail and forget the context."""
        if not fin or not self._data_frame or self._compressed is None:
            return None
        self._compressed = None
        if self._decompressor is None:
            return None
        tail = self._inflate(_TAIL)
        self._decompressor = None
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        room = self.max_message_size + 1 - self._inflated  # one byte past the limit proves it
        try:
            out = decompressor.decompress(data, room)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_message_size:
            self._decompressor = None  # what is left of the message is never inflated
            return CloseReason.MESSAGE_TOO_BIG
        return out

    # -- sending ---------------------------------------------------------------------------------

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        """Compress a data frame, with a fresh context for every message."""
        if opcode in _DATA_OPCODES:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.server_max_window_bits
            )
        elif opcode is not Opcode.CONTINUATION or self._compressor is None:
            return rsv, data
        compressor = self._compressor
        out = compressor.compress(data)
        if fin:
            out += compressor.flush(zlib.Z_SYNC_FLUSH)
            out = out[: -len(_TAIL)]
            self._compressor = None
        return rsv, out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_message_size={self.max_message_size}>"
