"""A WebSocket client over a stream the test owns (plain TCP or TLS), on trio-websocket: an
implementation independent of ours, driven through its public API only."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from ocpp_trio.errors import TransportClosedError
from ocpp_trio.transport.base import CloseReason, ConnectionInfo

__all__ = ["TrioWebSocketPeer", "ws_station"]


@asynccontextmanager
async def ws_station(
    port: int,
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    subprotocols: Sequence[str] = ("ocpp2.0.1",),
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket client whose stream the test owns (closed whatever happens)."""
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
    if ssl_context is None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    else:
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", port, ssl_context=ssl_context, https_compatible=True
        )
    async with stream, trio.open_nursery() as nursery:
        with trio.fail_after(5):
            ws = await wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                path,
                subprotocols=list(subprotocols),
                extra_headers=list(headers),
            )
        try:
            yield ws
        finally:
            with trio.move_on_after(2):
                await ws.aclose()
            nursery.cancel_scope.cancel()


class TrioWebSocketPeer:
    """A ``Transport`` over a trio-websocket connection, through its public API only."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    @staticmethod
    def _lost(exc: ConnectionClosed) -> TransportClosedError:
        return TransportClosedError(exc.reason.code, exc.reason.reason or "")

    async def send_message(self, message: str) -> None:
        try:
            await self.ws.send_message(message)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def get_message(self) -> str | bytes:
        try:
            return await self.ws.get_message()
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.aclose(code, reason or None)

    @property
    def closed(self) -> CloseReason | None:
        reason = self.ws.closed
        return None if reason is None else CloseReason(reason.code, reason.reason or "")

    @property
    def info(self) -> ConnectionInfo:
        return ConnectionInfo(path=self.ws.path, subprotocol=self.ws.subprotocol)
