"""The serving layer's browser-facing rules and connection limits, black-box.

Most tests talk raw HTTP/1.x over a TCP socket to a runtime app served on
``127.0.0.1:0`` (httpx would fix up the Host header, reuse or drop
connections and hide what the server does with them); the memory test runs
the real ``yoi-runtime`` process and reads its ``/proc/PID/status``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from yoi_runtime import ScriptedEngine, open_runtime
from yoi_runtime._server._app import ServerState, create_app
from yoi_runtime.serving import MAX_JSON_DEPTH, ConnectionLimits, serve_app
from yoi_runtime.serving._streams import StreamSettings
from yoi_runtime.testing import open_runtime_process

CONFIG = Path(__file__).parent / "conformance" / "runtime.toml"


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Served:
    port: int
    state: ServerState

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


async def serve(nursery: trio.Nursery, limits: ConnectionLimits) -> Served:
    """A runtime app served until the test's nursery ends."""
    runtime = await nursery.start(_runtime)
    state = ServerState(runtime, None, StreamSettings(), max_body_bytes=4096)
    binds = await nursery.start(
        partial(
            serve_app,
            create_app(state),
            "127.0.0.1",
            0,
            shutdown_trigger=trio.Event(),
            shutdown_timeout=1.0,
            drain=state.close_streams,
            limits=limits,
        )
    )
    return Served(int(binds[0].rsplit(":", 1)[1]), state)


async def _runtime(*, task_status: trio.TaskStatus[Any]) -> None:
    async with open_runtime({"echo": ScriptedEngine()}, default_engine="echo") as rt:
        task_status.started(rt)
        await trio.sleep_forever()


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    with trio.fail_after(30):
        yield await serve(nursery, ConnectionLimits(keep_alive_timeout=0.5))


async def read_reply(stream: trio.SocketStream, buffer: bytearray) -> Reply:
    """Read one response (with a Content-Length) from ``stream``."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed before a response: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        rest += chunk
    buffer[:] = rest[length:]
    return Reply(int(lines[0].split()[1]), headers, rest[:length])


async def closed_within(stream: trio.SocketStream, seconds: float) -> bool:
    """Whether the server closes ``stream`` within ``seconds``."""
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass  # reset: closed too
        return True
    return False


async def request(
    served: Served, raw: bytes, *, close_within: float = 0.0
) -> tuple[Reply, bool]:
    """Send ``raw`` on a new connection; the reply, and whether the server
    closed the connection within ``close_within`` seconds after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        await stream.send_all(raw)
        reply = await read_reply(stream, bytearray())
        closed = await closed_within(stream, close_within) if close_within else False
        return reply, closed


def post(path: str, body: bytes, host: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def error_code(reply: Reply) -> str:
    body = reply.json()
    assert set(body["error"]) == {"code", "message", "details"}
    code: str = body["error"]["code"]
    return code


# -- Host, Origin, content type, headers -------------------------------------------


@pytest.mark.parametrize(
    ("host", "status", "code"),
    [
        ("evil.example", 421, "host_not_allowed"),
        ("evil.example:1234", 421, "host_not_allowed"),
        ("10.1.2.3", 421, "host_not_allowed"),
        ("bad host", 400, "invalid_host"),
        ("[::1", 400, "invalid_host"),
    ],
)
async def test_foreign_host_is_refused(
    served: Served, host: str, status: int, code: str
) -> None:
    raw = f"GET /v1/runtime HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reply, closed = await request(served, raw, close_within=2)
    assert (reply.status, error_code(reply)) == (status, code)
    assert closed


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:80", "[::1]:9"])
async def test_loopback_hosts_are_served(served: Served, host: str) -> None:
    raw = f"GET /v1/runtime HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reply, _ = await request(served, raw)
    assert reply.status == 200


async def test_two_host_headers_are_refused(served: Served) -> None:
    raw = (
        f"GET /v1/runtime HTTP/1.1\r\nHost: {served.host}\r\nHost: evil.example\r\n\r\n"
    ).encode()
    reply, _ = await request(served, raw)
    assert reply.status == 400  # h11 refuses it before the app


async def test_cross_site_post_is_refused(served: Served) -> None:
    raw = post(
        "/v1/workers",
        b"{}",
        served.host,
        Content_Type="application/json",
        Origin="http://evil.example",
    )
    reply, _ = await request(served, raw)
    assert (reply.status, error_code(reply)) == (403, "origin_not_allowed")
    listing = await request(served, get("/v1/workers", served.host))
    assert listing[0].json()["workers"] == []


def get(path: str, host: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", f"Host: {host}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"text": "hi"}'),
        ("application/x-www-form-urlencoded", b"a=b"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("application/json; charset=latin-1", b"{}"),
        ("text/plain", b""),
        (None, b"{}"),
    ],
)
async def test_bodies_must_be_json(
    served: Served, content_type: str | None, body: bytes
) -> None:
    headers = {} if content_type is None else {"Content_Type": content_type}
    reply, closed = await request(
        served, post("/v1/workers", body, served.host, **headers), close_within=2
    )
    assert (reply.status, error_code(reply)) == (415, "unsupported_media_type")
    assert reply.headers["connection"] == "close"
    assert closed
    listing = await request(served, get("/v1/workers", served.host))
    assert listing[0].json()["workers"] == []


async def test_json_and_empty_bodies_pass(served: Served) -> None:
    created, _ = await request(
        served,
        post(
            "/v1/workers",
            b"{}",
            served.host,
            Content_Type="application/json; charset=utf-8",
            Origin=f"http://{served.host}",
        ),
    )
    # The runtime process allows no browser origin, not even its own.
    assert (created.status, error_code(created)) == (403, "origin_not_allowed")
    created, _ = await request(
        served, post("/v1/workers", b"{}", served.host, Content_Type="application/json")
    )
    assert created.status == 201
    worker_id = created.json()["worker"]["worker_id"]
    stopped, _ = await request(
        served, post(f"/v1/workers/{worker_id}/stop", b"", served.host)
    )
    assert stopped.status == 200


async def test_security_headers(served: Served) -> None:
    for raw in (
        get("/v1/health", served.host),
        get("/v1/nowhere", served.host),
        get("/v1/runtime", "evil.example"),
    ):
        reply, _ = await request(served, raw)
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert not [h for h in reply.headers if h.startswith("access-control-")]


# -- connections -------------------------------------------------------------------


async def test_connection_close_is_honoured(served: Served) -> None:
    raw = get("/v1/health", served.host, "Connection: close")
    reply, closed = await request(served, raw, close_within=1)
    assert reply.status == 200
    assert closed


async def test_http_1_0_is_closed(served: Served) -> None:
    reply, closed = await request(
        served, get("/v1/health", served.host, version="1.0"), close_within=1
    )
    assert reply.status == 200
    assert closed


async def test_idle_keep_alive_connection_is_closed(served: Served) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        buffer = bytearray()
        for _ in range(2):  # the timer restarts after every response
            await stream.send_all(get("/v1/health", served.host))
            assert (await read_reply(stream, buffer)).status == 200
        started = trio.current_time()
        assert await closed_within(stream, 5)
        assert 0.4 < trio.current_time() - started < 2.0  # keep_alive_timeout 0.5


async def test_413_closes_the_connection(served: Served) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        body = json.dumps({"text": "x" * 10_000}).encode()
        raw = post("/v1/workers", body, served.host, Content_Type="application/json")
        await stream.send_all(raw + get("/v1/health", served.host))
        reply = await read_reply(stream, bytearray())
        assert (reply.status, error_code(reply)) == (413, "payload_too_large")
        assert reply.headers["connection"] == "close"
        assert await closed_within(stream, 2)
    # A new connection is served as usual.
    assert (await request(served, get("/v1/health", served.host)))[0].status == 200


async def test_close_after_an_early_answer_lingers(served: Served) -> None:
    """After a 413 the server half-closes and keeps reading what the client
    still sends (about a second), so the client is not reset mid-upload."""
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    async with stream:
        head = post("/v1/workers", b"", served.host, Content_Type="application/json")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 200000")
        await stream.send_all(head + b"x" * 10_000)  # more than 64 KiB to come
        reply = await read_reply(stream, bytearray())
        assert (reply.status, error_code(reply)) == (413, "payload_too_large")
        assert await stream.receive_some(65536) == b""  # FIN, not a reset
        for _ in range(3):  # a closed socket would answer these with a reset
            await stream.send_all(b"x" * 16384)
            await trio.sleep(0.1)  # time for a reset to come back


async def test_connection_cap_refuses_cleanly(nursery: trio.Nursery) -> None:
    with trio.fail_after(30):
        limits = ConnectionLimits(max_connections=2, keep_alive_timeout=0.5)
        served = await serve(nursery, limits)
        held = [await trio.open_tcp_stream("127.0.0.1", served.port) for _ in range(2)]
        for stream in held:
            await stream.send_all(get("/v1/health", served.host))
            assert (await read_reply(stream, bytearray())).status == 200
        reply, closed = await request(
            served, get("/v1/health", served.host), close_within=2
        )
        assert (reply.status, error_code(reply)) == (503, "too_many_connections")
        assert reply.headers["retry-after"] == "1"
        assert closed
        await held[0].aclose()
        # Hypercorn lets a closed connection's task run out its keep-alive
        # timer (0.5 s here) before it lets go of the slot.
        while reply.status == 503:
            await trio.sleep(0.1)
            reply, _ = await request(served, get("/v1/health", served.host))
        assert reply.status == 200
        await held[1].aclose()


# -- WebSocket ---------------------------------------------------------------------


async def test_websocket_from_a_browser_origin_is_refused(served: Served) -> None:
    refusals: list[ConnectionRejected] = []
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    try:
        async with trio.open_nursery() as nursery:
            await wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                "/v1/events",
                extra_headers=[(b"origin", b"http://evil.example")],
            )
    except* ConnectionRejected as group:
        refusals += [e for e in group.exceptions if isinstance(e, ConnectionRejected)]
    finally:
        await stream.aclose()
    assert len(refusals) == 1
    assert refusals[0].status_code == 403
    assert json.loads(refusals[0].body or b"")["error"]["code"] == "origin_not_allowed"


async def test_websocket_data_frame_closes_with_1008(served: Served) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/v1/events")
            await ws.send_message("hello?")
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            await ws.aclose()
    finally:
        await stream.aclose()
    assert info.value.reason.code == 1008


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def flood(port: int, message_bytes: int, messages: int) -> None:
    """Open a WebSocket and send ``messages`` binary messages of
    ``message_bytes`` each as fast as the socket takes them (raw wsproto:
    it ignores the server's close, as a hostile client would)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/v1/events")))
        answer = await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        ws.receive_data(answer)
        frame = ws.send(_binary(message_bytes))
        with trio.move_on_after(5):
            try:
                for _ in range(messages):
                    await stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


def _binary(size: int) -> Any:
    from wsproto.events import BytesMessage

    return BytesMessage(data=b"\0" * size)


async def test_websocket_flood_memory_is_bounded_and_released() -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(CONFIG)) as served:
            pid = served.process.pid
            port = int(served.url.rsplit(":", 1)[1])
            await flood(port, 1000, 5)  # warm up
            before = rss_kib(pid)
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(flood, port, 16 * 1024 * 1024, 22)
            await trio.sleep(0.5)
            after = rss_kib(pid)
            # Unbounded, this was ~350 MB per connection (issue 10).
            assert after - before < 40 * 1024, (before, after)


# -- JSON and text -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        (b'{"text": "\\ud800"}', 422, "invalid_input", "text"),
        (b'{"text": "a\\udfffb"}', 422, "invalid_input", "text"),
        (b'{"text": "ok", "text": "again"}', 400, "invalid_json", None),
        (b"[" * 2000 + b"]" * 2000, 400, "invalid_json", None),  # < 4 KiB
        (
            b'{"text": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
            400,
            "invalid_json",
            None,
        ),
    ],
)
async def test_bad_json_input(
    served: Served, body: bytes, status: int, code: str, path: str | None
) -> None:
    created, _ = await request(
        served, post("/v1/workers", b"{}", served.host, Content_Type="application/json")
    )
    worker_id = created.json()["worker"]["worker_id"]
    raw = post(
        f"/v1/workers/{worker_id}/input",
        body,
        served.host,
        Content_Type="application/json",
    )
    reply, _ = await request(served, raw)
    assert (reply.status, error_code(reply)) == (status, code)
    if path is not None:
        assert reply.json()["error"]["details"]["path"] == path
    health = await request(served, get("/v1/health", served.host))
    assert health[0].json() == {"status": "serving"}


async def test_surrogate_pair_escape_is_a_character(served: Served) -> None:
    created, _ = await request(
        served,
        post(
            "/v1/workers",
            b'{"display_name": "\\ud83d\\ude00"}',
            served.host,
            Content_Type="application/json",
        ),
    )
    assert created.status == 201
    assert created.json()["worker"]["display_name"] == "\U0001f600"


@pytest.mark.parametrize(
    "name", ["a\u0000b", "bell\u0007", "rtl\u202eevil", "x\u2028y"]
)
async def test_control_characters_in_display_names(served: Served, name: str) -> None:
    body = json.dumps({"display_name": name}).encode()
    reply, _ = await request(
        served, post("/v1/workers", body, served.host, Content_Type="application/json")
    )
    assert (reply.status, error_code(reply)) == (422, "invalid_input")
    assert reply.json()["error"]["details"]["path"] == "display_name"


# -- process settings --------------------------------------------------------------


def test_short_token_refused_on_a_public_bind(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("short-token-123\n")
    child = subprocess.run(
        [sys.executable, "-m", "yoi_runtime", "--bind", "0.0.0.0:0",
         "--config", str(CONFIG), "--token-file", str(token)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert child.returncode == 2
    assert "shorter than 32 characters" in child.stderr
    assert "short-token-123" not in child.stderr
