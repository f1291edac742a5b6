"""Reading ``text/event-stream`` responses in tests, over a raw socket.

:func:`open_sse` sends a plain HTTP/1.1 ``GET`` asking for
``text/event-stream``, checks the head, and yields an :class:`SSEReader`
that undoes the chunked framing and parses events (``id``, ``data``) and
comment lines as a browser's ``EventSource`` would. :func:`get_sse_refusal`
reads a refusal (status and JSON body) instead.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio


@attrs.frozen
class SSEEvent:
    """One dispatched event: its ``id:`` (None when it had none) and its
    ``data:`` parsed as JSON."""

    id: str | None
    data: Any


@attrs.define
class _Connection:
    """A raw HTTP/1.1 connection: the head, then the (chunked) body."""

    stream: trio.SocketStream
    buffer: bytes = b""

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the connection closed")
        self.buffer += data

    async def read_until(self, mark: bytes) -> bytes:
        while mark not in self.buffer:
            await self._more()
        head, _, self.buffer = self.buffer.partition(mark)
        return head

    async def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self._more()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    async def head(self) -> tuple[int, dict[str, str]]:
        lines = (await self.read_until(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def chunk(self) -> bytes:
        size = int((await self.read_until(b"\r\n")).split(b";")[0], 16)
        data = await self.read_exactly(size)
        await self.read_exactly(2)
        if size == 0:
            raise EOFError("the stream ended")
        return data


@attrs.define
class SSEReader:
    """Parses the body's lines into events and comments."""

    _connection: _Connection
    _text: str = ""
    comments: list[str] = attrs.field(factory=list)

    async def _line(self) -> str:
        while "\n" not in self._text:
            self._text += (await self._connection.chunk()).decode("utf-8")
        line, _, self._text = self._text.partition("\n")
        return line

    async def next(self) -> SSEEvent | str:
        """The next event, or the next comment's text."""
        event_id: str | None = None
        data: list[str] = []
        while True:
            line = await self._line()
            if line == "":
                if data:
                    return SSEEvent(event_id, json.loads("\n".join(data)))
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                self.comments.append(value)
                return value
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)

    async def event(self) -> SSEEvent:
        """The next event (comments are recorded and skipped)."""
        while True:
            got = await self.next()
            if isinstance(got, SSEEvent):
                return got

    async def events(self, count: int) -> list[SSEEvent]:
        return [await self.event() for _ in range(count)]

    async def until(self, item_type: str) -> list[SSEEvent]:
        """Events up to and including the first whose data has this type."""
        found: list[SSEEvent] = []
        while not found or found[-1].data.get("type") != item_type:
            found.append(await self.event())
        return found


@asynccontextmanager
async def _open(
    base_url: str, target: str, headers: dict[str, str] | None
) -> AsyncIterator[tuple[_Connection, int, dict[str, str]]]:
    url = httpx.URL(base_url)
    assert url.port is not None
    sent = {
        "Host": f"{url.host}:{url.port}",
        "Accept": "text/event-stream",
        **(headers or {}),
    }
    request = f"GET {target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in sent.items()
    )
    stream = await trio.open_tcp_stream(url.host, url.port)
    async with stream:
        await stream.send_all((request + "\r\n").encode("latin-1"))
        connection = _Connection(stream)
        status, head = await connection.head()
        yield connection, status, head


@asynccontextmanager
async def open_sse(
    base_url: str, target: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSEReader]:
    """GET ``target`` as ``text/event-stream``; wait for the opening comment
    (the subscription is live once it arrives). Leaving closes the
    connection."""
    async with _open(base_url, target, headers) as (connection, status, head):
        assert status == 200, (status, connection.buffer)
        assert head["content-type"] == "text/event-stream; charset=utf-8"
        assert head["transfer-encoding"] == "chunked"
        reader = SSEReader(connection)
        assert await reader.next() == "yoi event stream"
        yield reader


async def get_sse_refusal(
    base_url: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET ``target`` asking for ``text/event-stream``; return the status
    and JSON body of the refusal."""
    async with _open(base_url, target, headers) as (connection, status, head):
        if "content-length" in head:
            body = await connection.read_exactly(int(head["content-length"]))
        else:
            body = b""
            with contextlib.suppress(EOFError):
                while True:
                    body += await connection.chunk()
        return status, json.loads(body)
