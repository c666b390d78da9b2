"""A tiny HTTP/1.1 client for the admin API tests (one request per connection)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import h11
import trio

from ocpp_trio.client.charge_point import ChargePoint
from ocpp_trio.client.handlers import ChargePointRouter
from ocpp_trio.messages import v2_0_1

__all__ = ["TOKEN", "Answer", "http", "read_answer", "read_raw", "station_router"]

#: the admin API token the tests configure (and send by default)
TOKEN = "a-test-admin-token"


@attrs.frozen
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


async def http(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    token: str | None = TOKEN,
    host: str | None = None,
    content_type: str | None = "application/json",
) -> Answer:
    """One request over a fresh connection (the API closes it after answering), with the
    bearer ``token`` (the tests' one unless told otherwise; ``None``: none), ``Host``
    127.0.0.1:port and, for a POST or PATCH, the JSON content type."""
    conn = h11.Connection(h11.CLIENT)
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        request_headers = [
            ("Host", host or f"127.0.0.1:{port}"),
            ("Content-Length", str(len(data))),
        ]
        if token is not None:
            request_headers.append(("Authorization", f"Bearer {token}"))
        if method in ("POST", "PATCH") and content_type is not None:
            request_headers.append(("Content-Type", content_type))
        await stream.send_all(
            conn.send(
                h11.Request(method=method, target=path, headers=request_headers + (headers or []))
            )
            + (conn.send(h11.Data(data=data)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )
        return await read_answer(stream, conn)


async def read_answer(stream: trio.abc.Stream, conn: h11.Connection) -> Answer:
    answer = await read_raw(stream, conn)
    return Answer(answer.status, json.loads(answer.body), answer.headers)


async def read_raw(stream: trio.abc.Stream, conn: h11.Connection) -> Answer:
    """The answer with its body as bytes (for the endpoints that do not answer JSON)."""
    response: h11.Response | None = None
    content = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            found = {k.decode(): v.decode() for k, v in response.headers}
            return Answer(response.status_code, content, found)


def station_router() -> ChargePointRouter:
    """A 2.0.1 station that accepts Reset and SetVariables, answers GetVariables with 120,
    and never answers ClearCache (to time out)."""
    router = ChargePointRouter()

    @router.on(v2_0_1.ResetRequest)
    async def reset(cp: ChargePoint, request: v2_0_1.ResetRequest) -> v2_0_1.ResetResponse:
        return v2_0_1.ResetResponse(status=v2_0_1.ResetStatusEnumType.ACCEPTED)

    @router.on(v2_0_1.GetVariablesRequest)
    async def get_variables(
        cp: ChargePoint, request: v2_0_1.GetVariablesRequest
    ) -> v2_0_1.GetVariablesResponse:
        return v2_0_1.GetVariablesResponse(
            get_variable_result=tuple(
                v2_0_1.GetVariableResultType(
                    attribute_status=v2_0_1.GetVariableStatusEnumType.ACCEPTED,
                    attribute_value="120",
                    component=item.component,
                    variable=item.variable,
                )
                for item in request.get_variable_data
            )
        )

    @router.on(v2_0_1.SetVariablesRequest)
    async def set_variables(
        cp: ChargePoint, request: v2_0_1.SetVariablesRequest
    ) -> v2_0_1.SetVariablesResponse:
        return v2_0_1.SetVariablesResponse(
            set_variable_result=tuple(
                v2_0_1.SetVariableResultType(
                    attribute_status=v2_0_1.SetVariableStatusEnumType.ACCEPTED,
                    component=item.component,
                    variable=item.variable,
                )
                for item in request.set_variable_data
            )
        )

    @router.on(v2_0_1.ClearCacheRequest)
    async def slow(cp: ChargePoint, request: v2_0_1.ClearCacheRequest) -> Any:
        await trio.sleep(5)
        raise AssertionError("not reached")  # pragma: no cover

    return router
