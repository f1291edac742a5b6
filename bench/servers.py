"""The servers ``bench_server.py`` runs besides ``python -m yoi_runtime``.

Each runs in its own subprocess, prints ``listening on URL`` once it accepts
connections, and runs until it is terminated.

``python bench/servers.py http [--timed]``
    The HTTP baseline: a Quart-Trio app with one JSON endpoint,
    ``GET /v1/workers/{id}``, answering a constant body shaped like a real
    Worker summary, served by Hypercorn with the settings ``serve_runtime``
    uses.

``python bench/servers.py ws EVENTS.jsonl``
    The WebSocket baseline: a trio-websocket server that, for every text
    frame ``"N"`` a client sends, sends the next N lines of the file
    (pre-serialized event objects), one per frame, cycling through the file.

``python bench/servers.py yoi-timed YOI-RUNTIME-ARGS...``
    The real ``yoi-runtime`` command (``yoi_runtime._server._serve.main``)
    with its app wrapped by :func:`timed`; ``--timed`` wraps the baseline the
    same way.

:func:`timed` measures the server-side time of each HTTP request from
inside the process: from Hypercorn calling the ASGI app to the app handing
Hypercorn the last body chunk (Quart plus the handler; not Hypercorn's HTTP
parsing nor the socket write). ``GET /__timings`` (answered by the wrapper
itself) returns the durations recorded since the last call, in ns, and
forgets them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import hypercorn
import hypercorn.trio
import trio
import trio_websocket
from quart import Response
from quart_trio import QuartTrio

#: What the HTTP baseline answers: the shape and size (~750 bytes) of a real
#: ``{"worker": WorkerSummary}`` after one turn.
SUMMARY: dict[str, Any] = {
    "runtime_id": "rt-2f6e4c399f784764",
    "display_name": None,
    "profile": "companion",
    "engine": {"name": "echo", "kind": "scripted", "model": "scripted"},
    "tools": [],
    "status": "idle",
    "created_at": "2026-11-22T03:52:11.204693+00:00",
    "active_turn": None,
    "last_turn": {
        "turn_id": "t-1",
        "worker_id": "w-4b8cf23ed6552740",
        "status": "completed",
        "input": "ping",
        "accepted_at": "2026-11-22T03:52:11.243425+00:00",
        "started_at": "2026-11-22T03:52:11.243602+00:00",
        "ended_at": "2026-11-22T03:52:11.244346+00:00",
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "error": None,
        "reason": None,
        "input_id": None,
    },
    "turns": 1,
    "usage": {"input_tokens": 1, "output_tokens": 1},
    "last_seq": 7,
    "error": None,
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def timed(app: Any) -> ASGIApp:
    """Wrap an ASGI app to record each HTTP request's server-side time."""
    durations: list[int] = []

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == "/__timings":
            body = json.dumps(durations).encode()
            durations.clear()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        started = time.perf_counter_ns()

        async def timed_send(message: Message) -> None:
            # Recorded before the send: after it, the request may be over and
            # this task cancelled.
            if message["type"] == "http.response.body" and not message.get(
                "more_body", False
            ):
                durations.append(time.perf_counter_ns() - started)
            await send(message)

        await app(scope, receive, timed_send)

    return wrapper


def create_app() -> QuartTrio:
    app = QuartTrio("bare")

    @app.get("/v1/workers/<worker_id>")
    async def get_worker(worker_id: str) -> Response:
        body = {"worker": {"worker_id": worker_id, **SUMMARY}}
        return Response(json.dumps(body), status=200, content_type="application/json")

    return app


async def serve_http(is_timed: bool) -> None:
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    config.errorlog = None
    app: Any = timed(create_app()) if is_timed else create_app()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn.trio.serve, app, config))
        print(f"bare-http listening on {binds[0]}", flush=True)


async def serve_ws(events_path: str) -> None:
    frames = (await trio.Path(events_path).read_text(encoding="utf-8")).splitlines()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        index = 0
        try:
            while True:
                count = int(await ws.get_message())
                for _ in range(count):
                    await ws.send_message(frames[index])
                    index = (index + 1) % len(frames)
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        )
        print(f"bare-ws listening on ws://127.0.0.1:{server.port}", flush=True)


def serve_yoi_timed(argv: list[str]) -> int:
    """``yoi-runtime ARGS`` with :func:`timed` around its app (bench only:
    this reaches into a private module of the library, read-only)."""
    from yoi_runtime._server import _serve
    from yoi_runtime._server._app import ServerState, create_app

    def create_timed_app(state: ServerState) -> ASGIApp:
        return timed(create_app(state))

    vars(_serve)["create_app"] = create_timed_app  # what serve_runtime calls
    return _serve.main(argv)


if __name__ == "__main__":
    mode, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    if mode == "http" and args in ([], ["--timed"]):
        trio.run(serve_http, args == ["--timed"])
    elif mode == "ws" and len(args) == 1:
        trio.run(serve_ws, args[0])
    elif mode == "yoi-timed":
        sys.exit(serve_yoi_timed(args))
    else:
        sys.exit("usage: servers.py http [--timed] | ws EVENTS.jsonl | yoi-timed ARGS")
