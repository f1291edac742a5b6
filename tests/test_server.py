"""The runtime process's HTTP/WebSocket API on a real Hypercorn server.

The app is served in-process on 127.0.0.1:0 so a test can also reach the
ServerState (to drain it); ``test_process.py`` runs the real command.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import httpx
import pytest
import trio
from openapi_spec_validator import validate
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
)

from yoi_runtime import (
    EngineStatusError,
    Runtime,
    ScriptedEngine,
    ScriptedReply,
    open_runtime,
)
from yoi_runtime._server._app import ServerState, create_app
from yoi_runtime.serving import serve_app
from yoi_runtime.serving._streams import StreamSettings

TOKEN = "tok-3b1f-very-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@attrs.define
class Served:
    url: str
    runtime: Runtime
    state: ServerState
    http: httpx.AsyncClient


def engines() -> dict[str, Any]:
    return {
        "echo": ScriptedEngine(),
        "hang": ScriptedEngine([ScriptedReply(deltas=("partial ",), hang=True)]),
        "fail": ScriptedEngine(
            [
                ScriptedReply(
                    deltas=("x",),
                    error=EngineStatusError("upstream said 503", status_code=503),
                )
            ]
        ),
        "flood": ScriptedEngine([ScriptedReply(deltas=("y" * 1000,) * 20_000)]),
    }


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    async with open_runtime(engines(), default_engine="echo") as runtime:
        state = ServerState(
            runtime,
            TOKEN,
            StreamSettings(heartbeat_interval=0.2),
            max_body_bytes=64 * 1024,
        )
        stop = trio.Event()
        async with trio.open_nursery() as inner:
            binds = await inner.start(
                partial(
                    serve_app,
                    create_app(state),
                    "127.0.0.1",
                    0,
                    shutdown_trigger=stop,
                    shutdown_timeout=10.0,
                    drain=state.close_streams,
                )
            )
            async with httpx.AsyncClient(base_url=binds[0], headers=AUTH) as http:
                with trio.fail_after(30):
                    yield Served(binds[0], runtime, state, http)
            stop.set()


@asynccontextmanager
async def open_ws(
    served: Served, resource: str, headers: dict[str, str], **kwargs: Any
) -> AsyncIterator[WebSocketConnection]:
    """A client WebSocket whose TCP stream this helper owns and closes.

    trio-websocket 0.12 leaves the client socket to the garbage collector
    when the server closes first or refuses the upgrade.
    """
    url = httpx.URL(served.url)
    assert url.port is not None
    stream = await trio.open_tcp_stream(url.host, url.port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery,
                stream,
                url.host,
                resource,
                extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
                **kwargs,
            )
            yield ws
            await ws.aclose()
    finally:
        await stream.aclose()


async def rejection(
    served: Served, resource: str, headers: dict[str, str]
) -> ConnectionRejected:
    """Open a WebSocket the server must refuse; return the refusal."""
    refusals: list[ConnectionRejected] = []
    try:
        async with open_ws(served, resource, headers):
            pass
    except* ConnectionRejected as group:
        refusals += [e for e in group.exceptions if isinstance(e, ConnectionRejected)]
    assert len(refusals) == 1, f"the server accepted {resource}"
    return refusals[0]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in response.text
    assert TOKEN not in response.text
    error: dict[str, Any] = body["error"]
    return error


async def new_worker(served: Served, **body: Any) -> str:
    response = await served.http.post("/v1/workers", json=body)
    assert response.status_code == 201, response.text
    worker_id: str = response.json()["worker"]["worker_id"]
    return worker_id


async def wait_turn_end(served: Served, worker_id: str) -> dict[str, Any]:
    while True:
        detail = (await served.http.get(f"/v1/workers/{worker_id}")).json()["worker"]
        if detail["active_turn"] is None:
            last: dict[str, Any] = detail["last_turn"]
            return last
        await trio.sleep(0.01)


# -- commands -------------------------------------------------------------------


async def test_every_command_route(served: Served) -> None:
    http = served.http
    summary = (await http.get("/v1/runtime")).json()
    assert summary["runtime_id"] == served.runtime.runtime_id
    assert summary["protocol_version"] == 1
    assert summary["capabilities"]["placement"] == "embedded"
    worker_id = await new_worker(served, display_name="Ada", engine="echo")
    detail = (await http.get(f"/v1/workers/{worker_id}")).json()["worker"]
    assert detail["display_name"] == "Ada"
    assert detail["status"] == "idle"
    response = await http.post(f"/v1/workers/{worker_id}/input", json={"text": "hi"})
    assert response.status_code == 202
    turn = response.json()["turn"]
    assert turn["status"] == "accepted"
    assert (await wait_turn_end(served, worker_id))["status"] == "completed"
    page = (await http.get(f"/v1/workers/{worker_id}/transcript?limit=1")).json()
    assert [e["text"] for e in page["entries"]] == ["hi"]
    rest = await http.get(
        f"/v1/workers/{worker_id}/transcript", params={"cursor": page["next_cursor"]}
    )
    assert [e["text"] for e in rest.json()["entries"]] == ["echo: hi"]
    cancel = await http.post(f"/v1/workers/{worker_id}/cancel")
    assert cancel.status_code == 200
    assert cancel.json()["result"]["outcome"] == "no_active_turn"
    late = await http.post(
        f"/v1/workers/{worker_id}/cancel", json={"turn_id": turn["turn_id"]}
    )
    assert late.json()["result"]["outcome"] == "already_completed"
    listing = (await http.get("/v1/workers", params={"status": "idle"})).json()
    assert [w["worker_id"] for w in listing["workers"]] == [worker_id]
    assert listing["next_cursor"] is None
    stop = await http.post(f"/v1/workers/{worker_id}/stop", json={"reason": "bye"})
    assert stop.status_code == 200
    assert stop.json()["worker"]["status"] == "stopped"
    again = await http.post(f"/v1/workers/{worker_id}/stop")
    assert again.json()["worker"]["status"] == "stopped"
    assert (await http.get("/v1/diagnostics")).json() == {"diagnostics": []}
    assert (await http.get("/v1/health")).json() == {"status": "serving"}


async def test_cancel_a_running_turn(served: Served) -> None:
    worker_id = await new_worker(served, engine="hang")
    await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "go"})
    response = await served.http.post(
        f"/v1/workers/{worker_id}/cancel", json={"reason": "enough"}
    )
    assert response.json()["result"]["outcome"] == "cancelled"
    last = await wait_turn_end(served, worker_id)
    assert (last["status"], last["reason"]) == ("cancelled", "enough")


async def test_list_workers_pages(served: Served) -> None:
    ids = [await new_worker(served) for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await served.http.get("/v1/workers", params=params)).json()
        seen += [w["worker_id"] for w in page["workers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def test_openapi_document_is_valid(served: Served) -> None:
    document = (await served.http.get("/v1/openapi.json")).json()
    create = document["paths"]["/v1/workers"]["post"]["requestBody"]
    properties = create["content"]["application/json"]["schema"]["properties"]
    assert properties["engine"]["enum"] == ["echo", "hang", "fail", "flood", None]
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "/v1/workers/{worker_id}/input" in document["paths"]


# -- errors ---------------------------------------------------------------------


async def test_invalid_json(served: Served) -> None:
    response = await served.http.post(
        "/v1/workers",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"display_name": 5}, "display_name"),
        ({"profile": ["companion"]}, "profile"),
        ({"base_url": "http://elsewhere.example"}, "$"),
        ({"engine": "gpt-9"}, "engine"),
        ({"profile": "painter"}, "profile"),
        ({"worker_id": "../../etc"}, "worker_id"),
    ],
)
async def test_invalid_create(served: Served, body: dict[str, Any], path: str) -> None:
    response = await served.http.post("/v1/workers", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert error["details"]["path"] == path


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "text"),
        ({"text": 42}, "text"),
        ({"text": ""}, "text"),
        ({"text": "hi", "extra": 1}, "$"),
        ([1, 2], "$"),
        ({"text": "hi", "input_id": "no spaces allowed"}, "input_id"),
    ],
)
async def test_invalid_input_body(served: Served, body: Any, path: str) -> None:
    worker_id = await new_worker(served)
    response = await served.http.post(f"/v1/workers/{worker_id}/input", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["details"]["path"] == path
    # Nothing was accepted, and the Worker still takes good input.
    detail = (await served.http.get(f"/v1/workers/{worker_id}")).json()["worker"]
    assert detail["turns"] == 0
    ok = await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "x"})
    assert ok.status_code == 202


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/v1/workers?limit=0", "limit"),
        ("/v1/workers?limit=many", "limit"),
        ("/v1/workers?limit=501", "limit"),
        ("/v1/workers?cursor=abc", "cursor"),
        ("/v1/workers?status=sleepy", "status"),
        ("/v1/workers/{w}/transcript?cursor=x", "cursor"),
        ("/v1/workers/{w}/transcript?limit=-3", "limit"),
        # Digits that are not ASCII ("²", "٣") are not numbers here.
        ("/v1/workers?limit=%C2%B2", "limit"),
        ("/v1/workers?cursor=%D9%A3", "cursor"),
        ("/v1/workers/{w}/transcript?cursor=%C2%B2", "cursor"),
    ],
)
async def test_bad_query_parameters(served: Served, url: str, path: str) -> None:
    worker_id = await new_worker(served)
    response = await served.http.get(url.format(w=worker_id))
    assert response.status_code == 422
    assert error_of(response)["details"]["path"] == path


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_unauthorized(served: Served, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as http:
        for method, url in [("GET", "/v1/runtime"), ("POST", "/v1/workers")]:
            response = await http.request(method, url)
            assert response.status_code == 401
            assert error_of(response)["code"] == "unauthorized"
        assert (await http.get("/v1/health")).status_code == 200
    refusal = await rejection(served, "/v1/events", headers)
    assert refusal.status_code == 401
    assert refusal.body is not None
    assert json.loads(refusal.body)["error"]["code"] == "unauthorized"
    assert (await served.runtime.summary()).workers["idle"] == 0


async def test_unknown_worker_and_route_and_method(served: Served) -> None:
    for method, url, body in [
        ("GET", "/v1/workers/w-nope", None),
        ("POST", "/v1/workers/w-nope/input", {"text": "hi"}),
        ("POST", "/v1/workers/w-nope/stop", {"reason": "x"}),
        ("POST", "/v1/workers/w-nope/cancel", None),
        ("GET", "/v1/workers/w-nope/transcript", None),
    ]:
        response = await served.http.request(method, url, json=body)
        assert response.status_code == 404, url
        error = error_of(response)
        assert error["code"] == "worker_not_found"
        assert error["details"] == {"worker_id": "w-nope"}
    response = await served.http.get("/v1/nothing/here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    response = await served.http.delete("/v1/workers")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    response = await served.http.get("/v1/events")
    assert response.status_code == 400
    assert error_of(response)["code"] == "websocket_required"


async def test_busy_and_stopped(served: Served) -> None:
    worker_id = await new_worker(served, engine="hang")
    first = await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "a"})
    turn_id = first.json()["turn"]["turn_id"]
    busy = await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "b"})
    assert busy.status_code == 409
    error = error_of(busy)
    assert error["code"] == "worker_busy"
    assert error["details"]["worker_id"] == worker_id
    assert error["details"]["turn_id"] == turn_id
    assert error["details"]["started_at"] == first.json()["turn"]["accepted_at"]
    await served.http.post(f"/v1/workers/{worker_id}/stop")
    stopped = await served.http.post(
        f"/v1/workers/{worker_id}/input", json={"text": "c"}
    )
    assert stopped.status_code == 409
    assert error_of(stopped)["code"] == "worker_stopped"
    assert error_of(stopped)["details"]["status"] == "stopped"


async def test_idempotent_create_and_conflict(served: Served) -> None:
    body = {"worker_id": "my-companion", "display_name": "A"}
    assert await new_worker(served, **body) == "my-companion"
    assert await new_worker(served, **body) == "my-companion"
    clash = await served.http.post("/v1/workers", json=body | {"display_name": "B"})
    assert clash.status_code == 409
    assert error_of(clash)["code"] == "idempotency_conflict"


async def test_payload_too_large(served: Served) -> None:
    worker_id = await new_worker(served)
    huge = {"text": "x" * (128 * 1024)}
    response = await served.http.post(f"/v1/workers/{worker_id}/input", json=huge)
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    ok = await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "x"})
    assert ok.status_code == 202


async def test_operation_unsupported(served: Served) -> None:
    response = await served.http.post("/v1/workers", json={"profile": "coder"})
    assert response.status_code == 501
    assert error_of(response)["code"] == "operation_unsupported"


async def test_runtime_unavailable_while_draining(served: Served) -> None:
    worker_id = await new_worker(served)
    served.state.begin_drain()
    await served.runtime.drain()
    health = await served.http.get("/v1/health")
    assert health.status_code == 503
    assert health.headers["Retry-After"] == "5"
    response = await served.http.post(
        f"/v1/workers/{worker_id}/input", json={"text": "late"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert error_of(response)["code"] == "runtime_unavailable"


async def test_failed_turn_is_reported_not_raised(served: Served) -> None:
    worker_id = await new_worker(served, engine="fail")
    await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "go"})
    last = await wait_turn_end(served, worker_id)
    assert last["status"] == "failed"
    assert last["error"] == {
        "code": "engine_http_error",
        "message": "upstream said 503",
    }


# -- observation ----------------------------------------------------------------


def items_of(message: str | bytes) -> list[dict[str, Any]]:
    frame = json.loads(message)
    return frame if isinstance(frame, list) else [frame]


async def test_stream_replays_then_goes_live_and_resumes(served: Served) -> None:
    worker_id = await new_worker(served)
    path = f"/v1/workers/{worker_id}/events"
    seqs: list[int] = []
    async with open_ws(served, path + "?after=0", AUTH) as ws:
        await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "one"})
        while not seqs or seqs[-1] < 4:
            seqs += [i["seq"] for i in items_of(await ws.get_message()) if "seq" in i]
    # Disconnected mid-turn; events keep coming; resume from the cursor.
    await wait_turn_end(served, worker_id)
    await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "two"})
    await wait_turn_end(served, worker_id)
    last_seq = (await served.runtime.get_worker(worker_id)).last_seq
    async with open_ws(served, f"{path}?after={seqs[-1]}", AUTH) as ws:
        while seqs[-1] < last_seq:
            seqs += [i["seq"] for i in items_of(await ws.get_message()) if "seq" in i]
    assert seqs == list(range(1, last_seq + 1))


async def test_runtime_stream_heartbeats_and_worker_stream_end(served: Served) -> None:
    async with open_ws(served, "/v1/events", AUTH) as ws:
        beat = items_of(await ws.get_message())
        assert beat == [{"type": "stream.heartbeat", "position": 0}]
        worker_id = await new_worker(served)
        created = items_of(await ws.get_message())
        assert created[0]["type"] == "worker.created"
        assert created[0]["cursor"] == 1
    path = f"/v1/workers/{worker_id}/events?after=0"
    async with open_ws(served, path, AUTH) as ws:
        await served.http.post(f"/v1/workers/{worker_id}/stop", json={"reason": "x"})
        types: list[str] = []

        async def read_all() -> None:
            while True:
                types.extend(i["type"] for i in items_of(await ws.get_message()))

        with pytest.raises(ConnectionClosed) as info:
            await read_all()
        assert info.value.reason.code == 1000
        assert types == ["worker.created", "worker.stopped"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?after=-1", 422, "invalid_input"),
        ("?after=abc", 422, "invalid_input"),
        ("?after=99", 422, "invalid_input"),
    ],
)
async def test_bad_stream_requests_are_refused(
    served: Served, query: str, status: int, code: str
) -> None:
    worker_id = await new_worker(served)
    for path in (f"/v1/workers/{worker_id}/events", "/v1/events"):
        refusal = await rejection(served, path + query, AUTH)
        assert refusal.status_code == status
        assert json.loads(refusal.body or b"")["error"]["code"] == code
    refusal = await rejection(served, "/v1/workers/w-nope/events", AUTH)
    assert refusal.status_code == 404
    assert json.loads(refusal.body or b"")["error"]["code"] == "worker_not_found"


async def test_slow_subscriber_gets_a_gap_and_never_slows_the_worker(
    served: Served,
) -> None:
    worker_id = await new_worker(served, engine="flood")
    path = f"/v1/workers/{worker_id}/events?after=0"
    async with open_ws(served, path, AUTH, message_queue_size=1) as ws:
        await served.http.post(f"/v1/workers/{worker_id}/input", json={"text": "go"})
        # Not reading while 20 MB of events stream: the turn still completes.
        last = await wait_turn_end(served, worker_id)
        assert last["status"] == "completed"
        last_seq = (await served.runtime.get_worker(worker_id)).last_seq
        items: list[dict[str, Any]] = []
        while not items or items[-1].get("seq") != last_seq:
            items += items_of(await ws.get_message())
    gaps = [i for i in items if i["type"] == "stream.gap"]
    assert len(gaps) == 1
    after_gap = [i["seq"] for i in items[items.index(gaps[0]) + 1 :]]
    assert after_gap == list(range(gaps[0]["resume_after"] + 1, last_seq + 1))
    before_gap = [i["seq"] for i in items[: items.index(gaps[0])]]
    assert before_gap == list(range(1, gaps[0]["after"] + 1))
    # The server keeps serving.
    assert (await served.http.get("/v1/health")).status_code == 200
