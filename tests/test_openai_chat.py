"""OpenAIChatEngine against a real HTTP server on loopback.

Each test runs hypercorn's trio server on ``127.0.0.1:0`` (started with
``nursery.start``) with a raw ASGI app whose per-test handler serves a canned
response; every I/O test runs under ``trio.fail_after``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import hypercorn
import hypercorn.trio
import pytest
import trio

from yoi_runtime import (
    CancelOutcome,
    Event,
    TurnCompletedData,
    TurnRetryingData,
    WorkerStatus,
    open_runtime,
)
from yoi_runtime._engines import _openai_chat
from yoi_runtime._engines._base import Completion, Message, Retry, TurnRequest, Usage
from yoi_runtime._engines._openai_chat import OpenAIChatEngine
from yoi_runtime._errors import (
    ContextLengthExceededError,
    EngineConfigError,
    EngineConnectError,
    EngineError,
    EngineProtocolError,
    EngineStatusError,
    EngineStreamIncompleteError,
    EngineTimeoutError,
    TurnFailedError,
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[["ModelServer", Receive, Send], Awaitable[None]]

SECRET = "sk-test-5ecret-do-not-leak"
REQUEST = TurnRequest(
    worker_id="w1",
    turn_id="t1",
    system_prompt="Be brief.",
    history=[Message("user", "hi"), Message("assistant", "hello")],
    input="Say hello",
)


@attrs.frozen
class Recorded:
    path: str
    client: tuple[str, int]
    headers: dict[str, str]
    body: Any


@attrs.define
class Collect:
    """A turn listener that keeps what the engine reports."""

    texts: list[str] = attrs.Factory(list)
    retries: list[Retry] = attrs.Factory(list)

    def on_text(self, text: str) -> None:
        self.texts.append(text)

    def on_retry(self, retry: Retry) -> None:
        self.retries.append(retry)


@attrs.define(eq=False)
class ModelServer:
    """A raw ASGI app standing in for a Chat Completions server."""

    handler: Handler | None = None
    url: str = ""
    requests: list[Recorded] = attrs.Factory(list)
    disconnected: trio.Event = attrs.Factory(trio.Event)

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            Recorded(scope["path"], tuple(scope["client"]), headers, json.loads(body))
        )
        assert self.handler is not None
        await self.handler(self, receive, send)

    async def wait_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()


def chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
    choices: bool = True,
) -> str:
    """Return one ``chat.completion.chunk`` as JSON."""
    obj: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk"}
    obj["choices"] = (
        [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
        if choices
        else []
    )
    if usage is not None:
        obj["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return json.dumps(obj)


def sse_handler(
    payloads: list[str], *, end: bool = True, content_type: bytes = b"text/event-stream"
) -> Handler:
    """Serve ``data: <payload>`` events, then end the body or wait forever."""

    async def handler(server: ModelServer, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        for payload in payloads:
            event = f"data: {payload}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if end:
            await send({"type": "http.response.body", "body": b""})
        else:
            await server.wait_disconnect(receive)

    return handler


def error_handler(status: int, body: bytes) -> Handler:
    async def handler(server: ModelServer, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return handler


def openai_error(message: str, code: str | int | None = None) -> str:
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    )


def dead_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def server(nursery: trio.Nursery) -> ModelServer:
    app = ModelServer()
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    binds = await nursery.start(partial(hypercorn.trio.serve, app, config))  # type: ignore[arg-type]
    app.url = binds[0] + "/v1"
    return app


@pytest.fixture
async def engine(server: ModelServer) -> AsyncIterator[OpenAIChatEngine]:
    # No retries: these tests see each failure as the server sent it.
    engine = OpenAIChatEngine(base_url=server.url, model="test-model", retry_attempts=1)
    yield engine
    await engine.aclose()


async def run(engine: OpenAIChatEngine) -> tuple[list[str], Completion]:
    listener = Collect()
    with trio.fail_after(5):
        completion = await engine.run_turn(REQUEST, listener)
    return listener.texts, completion


NORMAL_STREAM = [
    json.dumps(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ),
    chunk("Hel"),
    chunk(None),
    chunk("lo"),
    chunk(""),
    chunk(" world"),
    chunk(None, finish="stop"),
    chunk(usage=(12, 3), choices=False),
    "[DONE]",
]


async def test_streams_text_and_usage(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler(NORMAL_STREAM)
    texts, completion = await run(engine)
    assert texts == ["Hel", "lo", " world"]
    assert completion == Completion("stop", Usage(input_tokens=12, output_tokens=3))
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["accept"] == "text/event-stream"
    assert "authorization" not in request.headers
    assert request.body == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "Say hello"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # Reading to the end after [DONE] returns the connection to the pool.
    assert await run(engine) == (texts, completion)
    assert server.requests[1].client == server.requests[0].client


async def test_done_then_silence_still_completes(
    server: ModelServer, engine: OpenAIChatEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real time: after [DONE] the engine waits _DRAIN_TIMEOUT for the body's
    # end, then closes the response; the turn has succeeded either way.
    monkeypatch.setattr(_openai_chat, "_DRAIN_TIMEOUT", 0.1)
    server.handler = sse_handler(NORMAL_STREAM, end=False)
    assert await run(engine) == (
        ["Hel", "lo", " world"],
        Completion("stop", Usage(12, 3)),
    )
    with trio.fail_after(5):
        await server.disconnected.wait()


async def test_sends_sampling_options(server: ModelServer) -> None:
    server.handler = sse_handler(NORMAL_STREAM)
    engine = OpenAIChatEngine(
        base_url=server.url, model="m", temperature=0.25, max_tokens=64
    )
    try:
        await run(engine)
    finally:
        await engine.aclose()
    body = server.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.25, 64)


async def test_finish_without_done_or_usage(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([chunk("a"), chunk("b", finish="length")])
    assert await run(engine) == (["a", "b"], Completion("length", Usage(0, 0)))


async def test_api_key_is_sent_and_never_shown(
    server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOI_TEST_KEY", SECRET)
    engine = OpenAIChatEngine(
        base_url=server.url, model="m", api_key_env="YOI_TEST_KEY"
    )
    errors: list[EngineError] = []
    try:
        server.handler = sse_handler(NORMAL_STREAM)
        await run(engine)
        assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"

        async def echo_key(server: ModelServer, receive: Receive, send: Send) -> None:
            key = server.requests[-1].headers["authorization"]
            body = openai_error(f"Incorrect API key provided: {key}", "invalid_api_key")
            await error_handler(401, body.encode())(server, receive, send)

        server.handler = echo_key
        with pytest.raises(EngineStatusError) as status_error:
            await run(engine)
        errors.append(status_error.value)
        assert status_error.value.status_code == 401
        assert "Incorrect API key provided: Bearer ***" in str(status_error.value)

        server.handler = sse_handler(
            [json.dumps({"error": {"message": f"bad key {SECRET}"}})]
        )
        with pytest.raises(EngineProtocolError) as protocol_error:
            await run(engine)
        errors.append(protocol_error.value)

        # The key is read per turn: rotating it needs no restart.
        monkeypatch.setenv("YOI_TEST_KEY", "sk-rotated")
        server.handler = sse_handler(NORMAL_STREAM)
        await run(engine)
        assert server.requests[-1].headers["authorization"] == "Bearer sk-rotated"
    finally:
        await engine.aclose()
    assert SECRET not in repr(engine)
    assert "YOI_TEST_KEY" in repr(engine)
    for error in errors:
        assert SECRET not in str(error)
        assert SECRET not in repr(error)


async def test_api_key_from_file(server: ModelServer, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"  {SECRET}\n")
    engine = OpenAIChatEngine(base_url=server.url, model="m", api_key_file=key_file)
    server.handler = sse_handler(NORMAL_STREAM)
    try:
        await run(engine)
    finally:
        await engine.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_unreadable_key_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YOI_TEST_MISSING_KEY", raising=False)
    url = f"http://127.0.0.1:{dead_port()}/v1"
    from_env = OpenAIChatEngine(
        base_url=url, model="m", api_key_env="YOI_TEST_MISSING_KEY"
    )
    with pytest.raises(EngineConfigError, match="YOI_TEST_MISSING_KEY"):
        await run(from_env)
    missing = tmp_path / "secret-name"
    from_file = OpenAIChatEngine(base_url=url, model="m", api_key_file=missing)
    with pytest.raises(EngineConfigError, match="the key file") as error:
        await run(from_file)
    assert "secret-name" not in str(error.value)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    from_empty = OpenAIChatEngine(base_url=url, model="m", api_key_file=empty)
    with pytest.raises(EngineConfigError, match="the key file is empty"):
        await run(from_empty)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The server had an error while processing your request."),
        (401, "You didn't provide an API key."),
    ],
)
async def test_http_error_status(
    server: ModelServer, engine: OpenAIChatEngine, status: int, message: str
) -> None:
    server.handler = error_handler(status, openai_error(message).encode())
    with pytest.raises(EngineStatusError) as error:
        await run(engine)
    assert error.value.status_code == status
    assert error.value.provider_code == "invalid_request_error"
    assert str(error.value) == (
        f"the model server answered HTTP {status} (invalid_request_error): {message}"
    )


async def test_http_error_body_is_cut(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = error_handler(502, b"<html>" + b"x" * 1_000_000)
    with pytest.raises(EngineStatusError) as error:
        await run(engine)
    assert error.value.status_code == 502
    assert str(error.value).startswith("the model server answered HTTP 502: <html>x")
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param(
            '{"id": "c1", "object": "chat.completion.chunk"}', id="no-choices"
        ),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"choices": [{"delta": {"content": 5}}]}', id="content-not-text"),
        pytest.param('{"choices": [], "usage": {"prompt_tokens": "x"}}', id="usage"),
    ],
)
async def test_malformed_data(
    server: ModelServer, engine: OpenAIChatEngine, payload: str
) -> None:
    server.handler = sse_handler([chunk("ok"), payload, chunk(finish="stop")])
    with pytest.raises(EngineProtocolError):
        await run(engine)


async def test_in_stream_error_with_status_code(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([chunk("a"), openai_error("invalid grammar", 400)])
    with pytest.raises(EngineStatusError) as error:
        await run(engine)
    assert error.value.status_code == 400
    assert "invalid grammar" in str(error.value)


async def test_in_stream_error_without_status_code(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([chunk("a"), openai_error("overloaded", "busy")])
    with pytest.raises(EngineProtocolError, match="overloaded"):
        await run(engine)


async def test_stream_cut_before_finish(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([chunk("a"), chunk("b")])
    listener = Collect()
    with trio.fail_after(5), pytest.raises(EngineStreamIncompleteError) as error:
        await engine.run_turn(REQUEST, listener)
    assert error.value.code == "engine_stream_incomplete"
    assert "without a finish_reason" in str(error.value)
    assert listener.texts == ["a", "b"]


async def test_not_an_event_stream(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([], content_type=b"application/json")
    with pytest.raises(EngineProtocolError, match="text/event-stream"):
        await run(engine)


async def test_read_timeout(server: ModelServer) -> None:
    # Real time: the client gives up after 0.2 s of silence.
    server.handler = sse_handler([chunk("a")], end=False)
    engine = OpenAIChatEngine(base_url=server.url, model="m", read_timeout=0.2)
    listener = Collect()
    try:
        with trio.fail_after(5):
            with pytest.raises(EngineTimeoutError, match="nothing for 0.2 s"):
                await engine.run_turn(REQUEST, listener)
            await server.disconnected.wait()
    finally:
        await engine.aclose()
    assert listener.texts == ["a"]
    assert listener.retries == []  # text had streamed: never retried


async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{dead_port()}/v1"
    engine = OpenAIChatEngine(base_url=url, model="m", retry_attempts=1)
    try:
        with pytest.raises(EngineConnectError):
            await run(engine)
    finally:
        await engine.aclose()


async def test_cancel_closes_the_response(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    server.handler = sse_handler([chunk("first")], end=False)
    texts: list[str] = []
    returned = False
    with trio.fail_after(5):
        with trio.CancelScope() as scope:

            class CancelOnText(Collect):
                def on_text(self, text: str) -> None:
                    texts.append(text)
                    scope.cancel()

            await engine.run_turn(REQUEST, CancelOnText())
            returned = True
        await server.disconnected.wait()
    assert scope.cancelled_caught
    assert not returned
    assert texts == ["first"]


async def test_closed_engine(engine: OpenAIChatEngine) -> None:
    await engine.aclose()
    await engine.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await run(engine)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ftp://127.0.0.1/v1"}, "http"),
        ({"base_url": "http://user:pw@127.0.0.1/v1"}, "credentials"),
        ({"api_key_env": "A", "api_key_file": "/k"}, "not both"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"connect_timeout": -1.0}, "connect_timeout"),
    ],
)
def test_invalid_settings(kwargs: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(ValueError, match=match) as error:
        OpenAIChatEngine(**(settings | kwargs))
    assert "pw" not in str(error.value)


async def test_runtime_cancel_closes_the_model_stream(server: ModelServer) -> None:
    """Runtime.cancel mid-stream ends the turn and the model server sees the
    connection go away; the Worker is idle and takes input again."""
    server.handler = sse_handler([chunk("first")], end=False)
    engine = OpenAIChatEngine(base_url=server.url, model="test-model")
    with trio.fail_after(10):
        async with open_runtime({"local": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            events = runtime.subscribe(worker_id)
            await runtime.send_input(worker_id, "talk forever")
            async for item in events:
                if isinstance(item, Event) and item.type == "turn.text_delta":
                    break
            result = await runtime.cancel(worker_id, reason="enough")
            assert result.outcome is CancelOutcome.CANCELLED
            await server.disconnected.wait()
            detail = await runtime.get_worker(worker_id)
            assert detail.status is WorkerStatus.IDLE
            server.handler = sse_handler(NORMAL_STREAM)
            await runtime.send_input(worker_id, "and now briefly")
            async for item in events:
                if isinstance(item, Event) and item.type == "turn.completed":
                    assert isinstance(item.data, TurnCompletedData)
                    assert item.data.usage == Usage(12, 3)
                    break


# -- misbehaving servers --------------------------------------------------------


def role_delta() -> str:
    return json.dumps(
        {
            "choices": [
                {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
            ]
        }
    )


async def test_interrupted_stream_is_incomplete(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    """What llama.cpp's server sends a request it interrupts (a role delta,
    then ``[DONE]``, no finish reason) is not a finished answer."""
    server.handler = sse_handler([role_delta(), "[DONE]"])
    with pytest.raises(EngineStreamIncompleteError, match=r"after \[DONE\]"):
        await run(engine)


async def test_runtime_reports_an_interrupted_stream_as_failed(
    server: ModelServer,
) -> None:
    server.handler = sse_handler([role_delta(), chunk("Hal"), "[DONE]"])
    engine = OpenAIChatEngine(base_url=server.url, model="m")
    with trio.fail_after(10):
        async with open_runtime({"local": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            with pytest.raises(TurnFailedError) as failed:
                await runtime.ask(worker_id, "hello")
            assert failed.value.error.code == "engine_stream_incomplete"
            assert failed.value.text == "Hal"
            entries = (await runtime.transcript(worker_id)).items
    assert [(e.kind, e.text, e.status.value) for e in entries[1:]] == [
        ("assistant", "Hal", "failed"),
        ("error", str(failed.value.error.message), "failed"),
    ]


async def test_length_finish_is_a_truncated_completion(server: ModelServer) -> None:
    server.handler = sse_handler([chunk("Once upon"), chunk(finish="length"), "[DONE]"])
    engine = OpenAIChatEngine(base_url=server.url, model="m", max_tokens=2)
    with trio.fail_after(10):
        async with open_runtime({"local": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            answer = await runtime.ask(worker_id, "a story")
    assert (answer.text, answer.finish_reason, answer.truncated) == (
        "Once upon",
        "length",
        True,
    )


OPENAI_CONTEXT_ERROR = json.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However,"
            " your messages resulted in 9000 tokens. Please reduce the length.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)
LLAMA_CPP_CONTEXT_ERROR = json.dumps(
    {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try"
            " increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 5000,
            "n_ctx": 4096,
        }
    }
)
LLAMA_CPP_PYTHON_CONTEXT_ERROR = json.dumps(
    {
        "error": {
            "message": "Requested tokens (5000) exceed context window of 2048",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(OPENAI_CONTEXT_ERROR, id="openai"),
        pytest.param(LLAMA_CPP_CONTEXT_ERROR, id="llama.cpp"),
        pytest.param(LLAMA_CPP_PYTHON_CONTEXT_ERROR, id="llama-cpp-python"),
    ],
)
async def test_context_length_error_is_typed(
    server: ModelServer, engine: OpenAIChatEngine, body: str
) -> None:
    server.handler = error_handler(400, body.encode())
    with pytest.raises(ContextLengthExceededError) as error:
        await run(engine)
    assert error.value.code == "context_length_exceeded"
    assert error.value.status_code == 400
    assert len(server.requests) == 1  # a 400 is never retried


async def test_after_a_context_error_the_next_turn_sends_less_and_succeeds(
    server: ModelServer,
) -> None:
    engine = OpenAIChatEngine(base_url=server.url, model="m")
    with trio.fail_after(20):
        async with open_runtime({"local": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            server.handler = sse_handler(NORMAL_STREAM)
            for i in range(6):
                await runtime.ask(worker_id, f"question {i}")
            assert len(server.requests[-1].body["messages"]) == 12  # system, 5 + 1
            server.handler = error_handler(400, OPENAI_CONTEXT_ERROR.encode())
            with pytest.raises(TurnFailedError) as failed:
                await runtime.ask(worker_id, "one too many")
            assert failed.value.error.code == "context_length_exceeded"
            server.handler = sse_handler(NORMAL_STREAM)
            answer = await runtime.ask(worker_id, "again")
            assert answer.text == "Hello world"
            assert len(server.requests[-1].body["messages"]) < 12


def status_handler(statuses: list[tuple[int, dict[str, str]]]) -> Handler:
    """Answer the n-th request with the n-th status (headers added), then
    stream ``NORMAL_STREAM`` once they run out."""

    async def handler(server: ModelServer, receive: Receive, send: Send) -> None:
        number = len(server.requests) - 1
        if number >= len(statuses):
            await sse_handler(NORMAL_STREAM)(server, receive, send)
            return
        status, headers = statuses[number]
        body = json.dumps(
            {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")]
                + [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return handler


async def test_429_is_retried_after_retry_after(server: ModelServer) -> None:
    # Real time: Retry-After is 1 second.
    server.handler = status_handler([(429, {"retry-after": "1"})])
    engine = OpenAIChatEngine(base_url=server.url, model="m")
    listener = Collect()
    try:
        with trio.fail_after(10):
            started = trio.current_time()
            completion = await engine.run_turn(REQUEST, listener)
            elapsed = trio.current_time() - started
    finally:
        await engine.aclose()
    assert completion.finish_reason == "stop"
    assert listener.texts == ["Hel", "lo", " world"]
    [retry] = listener.retries
    assert (retry.attempt, retry.delay) == (2, 1.0)
    assert isinstance(retry.error, EngineStatusError)
    assert retry.error.status_code == 429
    assert len(server.requests) == 2
    assert elapsed >= 1.0


async def test_retries_are_bounded_and_keep_the_provider_status(
    server: ModelServer,
) -> None:
    server.handler = status_handler([(503, {"retry-after": "0"})] * 10)
    engine = OpenAIChatEngine(base_url=server.url, model="m", retry_attempts=3)
    listener = Collect()
    try:
        with trio.fail_after(10), pytest.raises(EngineStatusError) as error:
            await engine.run_turn(REQUEST, listener)
    finally:
        await engine.aclose()
    assert [r.attempt for r in listener.retries] == [2, 3]
    assert len(server.requests) == 3
    assert error.value.status_code == 503
    assert error.value.provider_code == "rate_limit_exceeded"
    assert error.value.details() == {
        "status_code": 503,
        "provider_code": "rate_limit_exceeded",
    }


async def test_a_retry_after_longer_than_allowed_fails_at_once(
    server: ModelServer,
) -> None:
    server.handler = status_handler([(429, {"retry-after": "3600"})])
    engine = OpenAIChatEngine(base_url=server.url, model="m")
    try:
        with trio.fail_after(10), pytest.raises(EngineStatusError) as error:
            await engine.run_turn(REQUEST, Collect())
    finally:
        await engine.aclose()
    assert error.value.status_code == 429
    assert len(server.requests) == 1


async def test_runtime_publishes_each_retry(server: ModelServer) -> None:
    server.handler = status_handler([(502, {"retry-after": "0"})])
    engine = OpenAIChatEngine(base_url=server.url, model="m")
    with trio.fail_after(10):
        async with open_runtime({"local": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            events = runtime.subscribe(worker_id)
            await runtime.send_input(worker_id, "hello")
            seen = []
            async for item in events:
                assert isinstance(item, Event)
                seen.append(item)
                if item.type == "turn.completed":
                    break
    [retrying] = [e for e in seen if e.type == "turn.retrying"]
    data = retrying.data
    assert isinstance(data, TurnRetryingData)
    assert (data.attempt, data.delay) == (2, 0.0)
    assert data.error.code == "engine_http_error"
    assert data.error.status_code == 502


@attrs.define(eq=False)
class RawServer:
    """A raw TCP server: per connection, read one request, then act out
    the next scripted behaviour ("reset", "reset-after-text", "ok")."""

    behaviours: list[str]
    url: str = ""
    requests: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk_ = await stream.receive_some(65536)
            if not chunk_:
                return
            data += chunk_
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += await stream.receive_some(65536)
        behaviour = self.behaviours[min(self.requests, len(self.behaviours) - 1)]
        self.requests += 1
        headers = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"connection: close\r\n\r\n"
        )
        if behaviour == "ok":
            events = b"".join(f"data: {p}\n\n".encode() for p in NORMAL_STREAM)
            await stream.send_all(headers + events)
            await stream.aclose()
            return
        if behaviour == "reset-after-text":
            await stream.send_all(headers + f"data: {chunk('Hel')}\n\n".encode())
            await trio.sleep(0.05)
        # SO_LINGER 0: close with a TCP reset, as a crashed server does.
        stream.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        stream.socket.close()


@pytest.fixture
async def raw_server(nursery: trio.Nursery) -> RawServer:
    server = RawServer(["ok"])
    listeners = await nursery.start(
        partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/v1"
    return server


async def test_reset_before_the_first_token_is_retried(raw_server: RawServer) -> None:
    raw_server.behaviours = ["reset", "ok"]
    engine = OpenAIChatEngine(base_url=raw_server.url, model="m")
    listener = Collect()
    try:
        with trio.fail_after(10):
            completion = await engine.run_turn(REQUEST, listener)
    finally:
        await engine.aclose()
    assert completion == Completion("stop", Usage(12, 3))
    assert listener.texts == ["Hel", "lo", " world"]
    assert [r.attempt for r in listener.retries] == [2]
    assert raw_server.requests == 2


async def test_reset_after_the_first_token_is_not_retried(
    raw_server: RawServer,
) -> None:
    raw_server.behaviours = ["reset-after-text", "ok"]
    engine = OpenAIChatEngine(base_url=raw_server.url, model="m")
    listener = Collect()
    try:
        with trio.fail_after(10), pytest.raises(EngineProtocolError) as error:
            await engine.run_turn(REQUEST, listener)
    finally:
        await engine.aclose()
    assert not isinstance(error.value, EngineStreamIncompleteError)
    assert listener.texts == ["Hel"]
    assert listener.retries == []
    assert raw_server.requests == 1


async def test_surrogates_are_joined_or_replaced(
    server: ModelServer, engine: OpenAIChatEngine
) -> None:
    # json.dumps writes a lone surrogate as a \\ud83d escape, as a server
    # that splits a UTF-16 pair across two chunks does.
    server.handler = sse_handler(
        [
            chunk("smile \ud83d"),
            chunk("\ude00 ok"),
            chunk("lone \ud800 here"),
            chunk("end \udbff"),
            chunk(finish="stop"),
        ]
    )
    texts, completion = await run(engine)
    assert "".join(texts) == "smile \U0001f600 oklone \ufffd hereend \ufffd"
    for text in texts:
        text.encode("utf-8")  # valid Unicode: no surrogate left
    assert completion.finish_reason == "stop"
