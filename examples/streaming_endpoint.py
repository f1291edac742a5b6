"""Stream a Companion's answer from a Quart-Trio endpoint (``docs/embedding.md``).

``POST /workers/<worker_id>/ask`` with ``{"text": "..."}`` answers
``text/event-stream``: one ``delta`` event per text delta, then one
``result`` event (the JSON form of :class:`yoi_runtime.TurnResult`) or one
``error`` event (the JSON form of the error). A client that goes away
mid-answer cancels the turn.

The demo starts the local model server, embeds a Runtime, serves the app on
a free loopback port, streams one whole answer, then starts another and
disconnects after a few deltas, and shows that turn ended ``cancelled``.

Run: .venv/bin/python examples/streaming_endpoint.py
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import hypercorn
import hypercorn.trio
import trio
from quart import Response, request
from quart_trio import QuartTrio

from yoi_runtime import (
    Event,
    InvalidInputError,
    Runtime,
    TurnCancelledData,
    YoiRuntimeError,
    open_runtime,
    to_json,
)
from yoi_runtime.local_model import open_local_model_server

# --- recipe start


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def create_app(runtime: Runtime) -> QuartTrio:
    """A Quart-Trio app that streams a Worker's answers from ``runtime``."""
    app = QuartTrio(__name__)

    @app.post("/workers/<worker_id>/ask")
    async def ask(worker_id: str) -> Response:
        body = await request.get_json(silent=True)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            error = InvalidInputError("expected {'text': str}", path="text")
            body = json.dumps({"error": to_json(error)})
            return Response(body, 422, mimetype="application/json")

        async def stream() -> AsyncIterator[bytes]:
            # When the client disconnects, Quart-Trio cancels this generator's
            # task; leaving open_turn early then cancels the turn.
            try:
                async with runtime.open_turn(worker_id, text) as turn:
                    async for delta in turn:
                        yield sse("delta", {"text": delta})
                yield sse("result", to_json(turn.result))
            except YoiRuntimeError as exc:  # busy, failed, cancelled, ...
                yield sse("error", to_json(exc))

        response = Response(stream(), mimetype="text/event-stream")
        response.timeout = None  # not Quart's 60 s cap: answers may take longer
        return response

    return app


# --- recipe end


async def serve(
    app: QuartTrio,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on a free loopback port until ``shutdown`` is set.

    Calls ``task_status.started(urls)`` once it listens.
    """
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 5.0
    await hypercorn.trio.serve(
        app,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown.wait,
        task_status=task_status,
    )


async def read_events(
    response: httpx.Response, *, stop_after: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Read server-sent events (``stop_after`` deltas, or to the end)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    with trio.CancelScope() as reading:
        async for line in response.aiter_lines():
            if reading.cancel_called:
                continue  # lines that were already buffered
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
                if name == "delta" and len(events) == stop_after:
                    # Not ``break``: a cancel unwinds httpx's nested generators.
                    reading.cancel()
    return events


async def main() -> None:
    async with (
        open_local_model_server() as server,
        open_runtime({"local": server.chat_engine(max_tokens=96)}) as runtime,
        trio.open_nursery() as nursery,
        httpx.AsyncClient(timeout=120) as http,
    ):
        worker_id = (await runtime.create_worker(display_name="Yoi")).worker_id
        shutdown = trio.Event()
        urls = await nursery.start(serve, create_app(runtime), shutdown)
        ask = f"{urls[0]}/workers/{worker_id}/ask"

        print("> Name a planet.")
        body = {"text": "Name a planet."}
        async with http.stream("POST", ask, json=body) as response:
            for name, data in await read_events(response):
                if name == "delta":
                    print(data["text"], end="", flush=True)
                else:
                    print(f"\n[{name}: finish_reason {data.get('finish_reason')}]")

        print("\n> Write a long story about a lighthouse keeper.")
        body = {"text": "Write a long story about a lighthouse keeper."}
        async with runtime.subscribe(worker_id) as events:
            async with http.stream("POST", ask, json=body) as response:
                for _, data in await read_events(response, stop_after=3):
                    print(data["text"], end="", flush=True)
            # Leaving the block closed the connection mid-answer.
            async for item in events:
                if isinstance(item, Event) and isinstance(item.data, TurnCancelledData):
                    print(f"\n[disconnected -> turn.cancelled: {item.data.reason}]")
                    break
                if isinstance(item, Event) and item.type == "turn.completed":
                    print("\n[the answer ended before the disconnect]")
                    break
        shutdown.set()


if __name__ == "__main__":
    trio.run(main)
