"""``GET /api/openapi.json``: the browser API's document is valid, needs a
caller as every route but health does, and covers every route the app
serves (the HTTP ones as paths; the event streams, WebSocket and their
``text/event-stream`` GETs, in its description, as the runtime process's).

The served process is fuzzed against the same document in
``test_workspace_fuzz.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conformance.support import scripted_engines
from openapi_spec_validator import validate
from workspace.handle_support import WORKSPACE_ROOT, write_pod
from workspace.workspace_support import Served, serve_registry

from yoi_runtime import open_runtime
from yoi_runtime._server._openapi import openapi_document as runtime_document
from yoi_runtime.serving._streams import StreamControl, StreamSettings
from yoi_workspace import EmbeddedRuntimeHandle, LocalPodSource, RuntimeRegistry
from yoi_workspace._auth import Authenticator
from yoi_workspace._policy import Caller
from yoi_workspace._server._app import WorkspaceState, create_app

TOKEN = "openapi-test-token-5b2e9d0c1a7f4e3b8c6d"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    home = tmp_path / "yoi-home"
    write_pod(home, "old", allocated=False)
    registry = RuntimeRegistry()
    auth = Authenticator.with_tokens({TOKEN: Caller("ada", frozenset({"admin"}))})
    async with open_runtime(
        scripted_engines(), default_engine="echo", runtime_id="emb"
    ) as runtime:
        registry.add(EmbeddedRuntimeHandle(runtime))
        registry.add(LocalPodSource("pods", home, workspace_root=WORKSPACE_ROOT))
        async with serve_registry(registry, auth=auth) as served:
            with trio.fail_after(30):
                yield served


async def document_of(served: Served) -> dict[str, Any]:
    response = await served.http.get("/api/openapi.json", headers=BEARER)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_the_document_is_valid_openapi(served: Served) -> None:
    document = await document_of(served)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "yoi-workspace browser API"


async def test_the_document_needs_a_caller(served: Served) -> None:
    response = await served.http.get("/api/openapi.json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_the_document_is_filled_from_the_registry(served: Served) -> None:
    document = await document_of(served)
    runtime = document["paths"]["/api/runtimes/{runtime_id}"]["get"]
    assert runtime["parameters"][0]["schema"]["enum"] == ["emb", "pods"]
    create = document["paths"]["/api/runtimes/{runtime_id}/workers"]["post"]
    properties = create["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]
    engines = list(scripted_engines())
    assert properties["engine"]["enum"] == [*engines, None]
    assert properties["profile"]["enum"] == ["coder", "companion", "reviewer"]


async def test_bodies_and_envelope_are_the_runtime_process_s(served: Served) -> None:
    document = await document_of(served)
    runtime = runtime_document(("companion",), tuple(scripted_engines()))
    worker = "/api/runtimes/{runtime_id}/workers/{worker_id}"
    pairs = {
        "/api/runtimes/{runtime_id}/workers": "/v1/workers",
        worker + "/input": "/v1/workers/{worker_id}/input",
        worker + "/stop": "/v1/workers/{worker_id}/stop",
        worker + "/cancel": "/v1/workers/{worker_id}/cancel",
    }
    for ours, theirs in pairs.items():
        body = document["paths"][ours]["post"]["requestBody"]
        assert body == runtime["paths"][theirs]["post"]["requestBody"], ours
    schemas = document["components"]["schemas"]
    for name in ("ErrorEnvelope", "TurnSummary", "CancelResult", "Event", "Gap"):
        assert schemas[name] == runtime["components"]["schemas"][name], name
    assert {"RuntimeView", "WorkerView", "WorkerViewPage"} <= schemas.keys()


def served_routes() -> tuple[set[str], set[str]]:
    """The app's HTTP operations (``METHOD /path/{param}``) and WebSocket
    paths, from its URL map."""
    state = WorkspaceState(RuntimeRegistry(), StreamControl(StreamSettings(15.0)))
    operations, streams = set(), set()
    for rule in create_app(state).url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if not path.startswith("/api/"):
            continue  # the console's files and Quart's static route
        if rule.websocket:
            streams.add(path)
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                operations.add(f"{method} {path}")
    return operations, streams


async def test_every_route_is_described(served: Served) -> None:
    document = await document_of(served)
    described = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
    }
    operations, streams = served_routes()
    sse = {f"GET {path}" for path in streams}
    assert described == operations - sse
    assert streams == {
        "/api/events",
        "/api/runtimes/{runtime_id}/workers/{worker_id}/events",
    }
    for path in streams:
        assert path in document["info"]["description"]
    assert "text/event-stream" in document["info"]["description"]
    assert "StreamReset" in document["components"]["schemas"]
