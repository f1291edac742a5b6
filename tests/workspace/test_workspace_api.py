"""The browser-facing API on a real Hypercorn server (and as a process).

Most tests serve the app in-process on ``127.0.0.1:0`` over a registry of an
embedded Runtime (scripted engines) and a compat pod directory; the last ones
run ``python -m yoi_workspace`` with a config file and a real
``yoi-runtime`` process beside it.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from conformance.support import open_runtime_process, scripted_engines
from trio_websocket import ConnectionClosed
from workspace.handle_support import (
    REMOTE_ID,
    WORKSPACE_ROOT,
    runtime_config,
    write_pod,
)
from workspace.workspace_support import (
    Served,
    completed,
    error_of,
    items_until,
    open_workspace_process,
    open_ws,
    rejection,
    serve_registry,
    three_kinds,
    through,
    write_config,
)

from yoi_runtime import open_runtime
from yoi_workspace import (
    EmbeddedRuntimeHandle,
    HideWorkers,
    LocalPodSource,
    MemoryAuditSink,
    RuntimeRegistry,
)
from yoi_workspace._auth import Authenticator

ADMIN = {"X-Yoi-Caller": "root", "X-Yoi-Roles": "ops, admin"}
#: The tests stand in for the authenticating proxy (docs/security.md).
PROXY = Authenticator.behind_proxy(trusted_proxies=["127.0.0.1"])


@attrs.frozen
class HideUnderscored:
    """Workers whose display name starts with '_' are hidden from all but admins."""

    def why_hidden(self, caller: Any, worker: Any) -> str | None:
        if (worker.display_name or "").startswith("_") and "admin" not in caller.roles:
            return "private"
        return None


@pytest.fixture
def audit() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
async def served(tmp_path: Path, audit: MemoryAuditSink) -> AsyncIterator[Served]:
    home = tmp_path / "yoi-home"
    write_pod(home, "old", allocated=False)
    hide = HideWorkers(runtimes=frozenset({"rt-hidden"}))
    registry = RuntimeRegistry(visibility=HideUnderscored(), commands=hide, audit=audit)
    async with (
        open_runtime(scripted_engines(), default_engine="echo", runtime_id="emb") as rt,
        open_runtime(scripted_engines(), runtime_id="rt-hidden") as other,
    ):
        registry.add(EmbeddedRuntimeHandle(rt))
        registry.add(EmbeddedRuntimeHandle(other))
        registry.add(LocalPodSource("pods", home, workspace_root=WORKSPACE_ROOT))
        async with serve_registry(
            registry, heartbeat_interval=0.2, max_body_bytes=4096, auth=PROXY
        ) as served:
            with trio.fail_after(30):
                yield served


async def create(served: Served, runtime_id: str = "emb", **body: Any) -> str:
    response = await served.http.post(f"/api/runtimes/{runtime_id}/workers", json=body)
    assert response.status_code == 201, response.text
    worker_id: str = response.json()["worker"]["worker_id"]
    return worker_id


async def test_runtime_routes(served: Served) -> None:
    http = served.http
    # /api/runtimes is the original server's list; /api/runtimes/{id} the
    # project's own projection.
    runtimes = (await http.get("/api/runtimes")).json()["items"]
    assert [(r["runtime_id"], r["kind"], r["status"]) for r in runtimes] == [
        ("emb", "embedded", "available"),
        ("rt-hidden", "embedded", "available"),
        ("pods", "local_pod", "available"),
    ]
    one = (await http.get("/api/runtimes/pods")).json()["runtime"]
    assert (one["kind"], one["status"], one["authority"]) == (
        "compat-local-pod",
        "read-only",
        False,
    )
    missing = await http.get("/api/runtimes/rt-nope")
    assert missing.status_code == 404
    assert error_of(missing) == {
        "code": "unknown_runtime",
        "message": "no runtime 'rt-nope'",
        "details": {"runtime_id": "rt-nope"},
    }
    assert (await http.get("/api/health")).json() == {"status": "serving"}


async def test_worker_routes_on_the_embedded_runtime(
    served: Served, audit: MemoryAuditSink
) -> None:
    http = served.http
    worker_id = await create(served, display_name="Ada")
    base = f"/api/runtimes/emb/workers/{worker_id}"
    detail = (await http.get(base)).json()["worker"]
    assert (detail["display_name"], detail["kind"], detail["status"]) == (
        "Ada",
        "embedded",
        "idle",
    )
    page = (await http.get("/api/runtimes/emb/workers", params={"limit": 1})).json()
    assert [w["worker_id"] for w in page["workers"]] == [worker_id]
    assert page["next_cursor"] is None
    turn = await http.post(f"{base}/input", json={"text": "hi"})
    assert turn.status_code == 202
    assert turn.json()["turn"]["status"] == "accepted"
    async with open_ws(served.url, f"{base}/events?after=0") as ws:
        await items_until(ws, completed(worker_id))
    transcript = (await http.get(f"{base}/transcript")).json()
    assert [e["text"] for e in transcript["entries"]] == ["hi", "echo: hi"]

    slow = await create(served, engine="hang")
    slow_base = f"/api/runtimes/emb/workers/{slow}"
    running = (await http.post(f"{slow_base}/input", json={"text": "go"})).json()
    busy = await http.post(f"{slow_base}/input", json={"text": "again"})
    assert busy.status_code == 409
    details = error_of(busy)["details"]
    assert (details["worker_id"], details["turn_id"]) == (
        slow,
        running["turn"]["turn_id"],
    )
    cancel = await http.post(f"{slow_base}/cancel", json={"reason": "enough"})
    assert cancel.json()["result"]["outcome"] == "cancelled"
    stop = await http.post(f"{slow_base}/stop")
    assert (stop.status_code, stop.json()["worker"]["status"]) == (200, "stopped")
    stopped = await http.post(f"{slow_base}/input", json={"text": "late"})
    assert (stopped.status_code, error_of(stopped)["code"]) == (409, "worker_stopped")
    assert [(r.operation, r.outcome) for r in audit.records] == [
        ("create", "ok"),
        ("input", "ok"),
        ("create", "ok"),
        ("input", "ok"),
        ("input", "worker_busy"),
        ("cancel", "ok"),
        ("stop", "ok"),
        ("input", "worker_stopped"),
    ]


async def test_compat_routes_read_and_refuse(served: Served) -> None:
    http = served.http
    (pod,) = (await http.get("/api/runtimes/pods/workers")).json()["workers"]
    assert (pod["kind"], pod["display_name"]) == ("compat-local-pod", "old")
    assert (pod["status"], pod["stale"]) == ("stopped", False)
    base = f"/api/runtimes/pods/workers/{pod['worker_id']}"
    assert (await http.get(base)).json()["worker"] == pod
    assert (await http.get(f"{base}/transcript")).json()["entries"] == []
    for path, body in [
        ("/api/runtimes/pods/workers", {}),
        (f"{base}/input", {"text": "hi"}),
        (f"{base}/stop", {}),
        (f"{base}/cancel", {}),
    ]:
        response = await http.post(path, json=body)
        assert response.status_code == 501, path
        assert error_of(response)["code"] == "operation_unsupported"
    refused = await rejection(served.url, f"{base}/events")
    assert refused.status_code == 501
    assert json.loads(refused.body or b"")["error"]["code"] == "operation_unsupported"


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("POST", "/api/runtimes/emb/workers", {"url": "http://x:1"}, "url"),
        ("POST", "/api/runtimes/emb/workers", {"Base-URL": "http://x"}, "Base-URL"),
        ("POST", "/api/runtimes/emb/workers?endpoint=x", None, "endpoint"),
        ("GET", "/api/runtimes?token=abc", None, "token"),
        ("GET", "/api/workers?socket_path=/tmp/s", None, "socket_path"),
        (
            "POST",
            "/api/runtimes/emb/workers",
            {"x": [{"session_path": 1}]},
            "session_path",
        ),
        ("POST", "/api/runtimes/emb/workers", {"metadata_path": "/m"}, "metadata_path"),
        ("POST", "/api/runtimes/emb/workers", {"pods_dir": "/p"}, "pods_dir"),
    ],
)
async def test_requests_naming_an_endpoint_token_or_path_are_refused(
    served: Served, audit: MemoryAuditSink, method: str, path: str, body: Any, key: str
) -> None:
    response = await served.http.request(method, path, json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["details"]) == ("invalid_input", {"path": key})
    assert "http://x" not in response.text
    assert "/tmp/s" not in response.text
    assert not audit.records


async def test_stream_requests_naming_an_endpoint_are_refused(served: Served) -> None:
    refused = await rejection(served.url, "/api/events?url=http://x:1")
    assert refused.status_code == 400
    assert json.loads(refused.body or b"")["error"]["details"] == {"path": "url"}


@pytest.mark.parametrize(
    ("content", "status", "code", "path"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_input", "$"),
        (b'{"display_name": 5}', 400, "invalid_input", "display_name"),
        (b'{"nickname": "x"}', 400, "invalid_input", "$"),
        (b'{"engine": "gpt-9"}', 400, "invalid_input", "engine"),
        (b'{"display_name": "' + b"x" * 5000 + b'"}', 413, "payload_too_large", None),
    ],
)
async def test_malformed_bodies_are_typed_errors(
    served: Served, content: bytes, status: int, code: str, path: str | None
) -> None:
    response = await served.http.post(
        "/api/runtimes/emb/workers",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["details"].get("path") == path


async def test_routing_errors_use_the_envelope(served: Served) -> None:
    http = served.http
    nowhere = await http.get("/api/nowhere")
    assert (nowhere.status_code, nowhere.json()) == (
        404,
        {"error": "not_found", "message": "unknown api route"},
    )
    wrong = await http.delete("/api/runtimes")
    assert (wrong.status_code, error_of(wrong)["code"]) == (405, "method_not_allowed")
    plain = await http.get("/api/events")
    assert (plain.status_code, error_of(plain)["code"]) == (400, "websocket_required")
    bad = await http.get("/api/runtimes/emb/workers", params={"limit": "many"})
    assert (bad.status_code, error_of(bad)["details"]) == (400, {"path": "limit"})
    status = await http.get("/api/runtimes/emb/workers", params={"status": "asleep"})
    assert (status.status_code, error_of(status)["details"]) == (
        400,
        {"path": "status"},
    )


async def test_hidden_workers_answer_exactly_like_unknown_ones(
    served: Served, audit: MemoryAuditSink
) -> None:
    http = served.http
    hidden = await create(served, display_name="_private")
    unknown = "w-0000000000000000"
    for suffix, method in [("", "GET"), ("/transcript", "GET"), ("/input", "POST")]:
        answers = []
        for worker_id in (hidden, unknown):
            body = {"text": "hi"} if method == "POST" else None
            response = await http.request(
                method, f"/api/runtimes/emb/workers/{worker_id}{suffix}", json=body
            )
            assert response.status_code == 404
            answers.append(response.text.replace(worker_id, "ID"))
        assert answers[0] == answers[1]
    refused = await rejection(served.url, f"/api/runtimes/emb/workers/{hidden}/events")
    assert refused.status_code == 404
    # An admin (named by the proxy's headers) sees it; the audit names them.
    seen = await http.get(f"/api/runtimes/emb/workers/{hidden}", headers=ADMIN)
    assert seen.json()["worker"]["display_name"] == "_private"
    listed = await http.get("/api/workers")
    assert hidden not in listed.text
    assert hidden in (await http.get("/api/workers", headers=ADMIN)).text
    assert [(r.worker_id, r.outcome, r.reason) for r in list(audit.records)[-2:]] == [
        (hidden, "worker_not_visible", "private"),
        (unknown, "worker_not_found", None),
    ]
    notes = [d for d in served.registry.diagnostics() if d.code == "worker_hidden"]
    assert len(notes) == 4


async def test_command_refused_is_403(served: Served, audit: MemoryAuditSink) -> None:
    response = await served.http.post("/api/runtimes/rt-hidden/workers", json={})
    assert response.status_code == 403
    assert error_of(response) == {
        "code": "command_refused",
        "message": "create is not allowed here",
        "details": {"operation": "create"},
    }
    assert (audit.records[-1].operation, audit.records[-1].outcome) == (
        "create",
        "command_refused",
    )


async def test_malformed_caller_header_is_refused(served: Served) -> None:
    response = await served.http.get(
        "/api/runtimes/emb/workers", headers={"X-Yoi-Caller": "x" * 300}
    )
    assert (response.status_code, error_of(response)["code"]) == (
        400,
        "invalid_input",
    )


async def test_worker_stream_heartbeats_and_resumes_by_seq(served: Served) -> None:
    worker_id = await create(served)
    base = f"/api/runtimes/emb/workers/{worker_id}"
    await served.http.post(f"{base}/input", json={"text": "hi"})
    through_idle = through(worker_id, 7)
    async with open_ws(served.url, f"{base}/events?after=0") as ws:
        items = await items_until(ws, through_idle)
        assert [i["seq"] for i in items] == list(range(1, 8))
        beat = await items_until(ws, bool, heartbeats=True)
    assert beat == [{"type": "stream.heartbeat", "position": 7}]
    async with open_ws(served.url, f"{base}/events?after=3") as ws:
        rest = await items_until(ws, through_idle)
    assert rest == items[3:]
    await served.http.post(f"{base}/stop")
    async with open_ws(served.url, f"{base}/events?after={items[-1]['seq']}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await items_until(ws, lambda seen: False)
    assert closed.value.reason.code == 1000
    bad = await rejection(served.url, f"{base}/events?after=-1")
    assert bad.status_code == 400
    ahead = await rejection(served.url, f"{base}/events?after=999")
    assert json.loads(ahead.body or b"")["error"]["details"] == {"path": "after"}
    unknown = await rejection(served.url, "/api/runtimes/nope/workers/w-1/events")
    assert unknown.status_code == 404


async def test_all_events_stream_and_resume_by_cursor(served: Served) -> None:
    async with open_ws(served.url, "/api/events") as ws:
        beat = await items_until(ws, lambda seen: bool(seen), heartbeats=True)
        assert beat[0]["type"] == "stream.heartbeat"
        start = beat[0]["position"]
        worker_id = await create(served)
        hidden = await create(served, display_name="_private")
        for target in (hidden, worker_id):
            await served.http.post(
                f"/api/runtimes/emb/workers/{target}/input",
                json={"text": "hi"},
                headers=ADMIN,
            )
        items = await items_until(ws, through(worker_id, 7))
    assert {i["worker_id"] for i in items} == {worker_id}
    assert {i["runtime_id"] for i in items} == {"emb"}
    assert all(isinstance(i["position"], str) for i in items)
    async with open_ws(served.url, f"/api/events?after={start}") as ws:
        again = await items_until(ws, through(worker_id, 7))
    assert again == items
    async with open_ws(served.url, f"/api/events?after={items[2]['position']}") as ws:
        rest = await items_until(ws, through(worker_id, 7))
    assert rest == items[3:]
    bad = await rejection(served.url, "/api/events?after=bm90IGpzb24")
    assert json.loads(bad.body or b"")["error"]["details"] == {"path": "after"}


async def test_legacy_list_endpoints_project_the_runtimes(served: Served) -> None:
    http = served.http
    worker_id = await create(served, display_name="Ada")
    await create(served, display_name="_private")
    hosts = (await http.get("/api/hosts")).json()
    assert [(h["host_id"], h["kind"], h["status"]) for h in hosts["items"]] == [
        ("emb", "embedded-runtime-host", "available"),
        ("rt-hidden", "embedded-runtime-host", "available"),
        (hosts["items"][2]["host_id"], "local-pod-host", "available"),
    ]
    assert hosts["items"][2]["host_id"].startswith("local-")
    pods_host = hosts["items"][2]["host_id"]
    emb = (await http.get("/api/hosts/emb/workers")).json()["items"]
    assert [w["worker_id"] for w in emb] == [worker_id]
    pods = (await http.get(f"/api/hosts/{pods_host}/workers")).json()["items"]
    assert [(w["label"], w["status"]) for w in pods] == [("old", "active:segment")]
    every = (await http.get("/api/workers")).json()
    assert [w["label"] for w in every["items"]] == ["Ada", "old"]
    assert every["diagnostics"] == []
    missing = await http.get("/api/hosts/nope/workers")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "Not Found", "message": "unknown local host `nope`"},
    )


async def test_the_workspace_process_with_a_remote_runtime(tmp_path: Path) -> None:
    home = tmp_path / "yoi-home"
    write_pod(home, "old")
    with trio.fail_after(60):
        async with open_runtime_process(
            tmp_path, config=runtime_config(tmp_path)
        ) as remote:
            text = three_kinds(remote.url, "yoi-home", 'audit_log = "audit.jsonl"')
            text += '\n[auth]\nmode = "proxy"\ntrusted_proxies = ["127.0.0.1"]\n'
            config = write_config(tmp_path, text)
            async with open_workspace_process("--config", str(config)) as workspace:
                async with httpx.AsyncClient(base_url=workspace.url) as http:
                    runtimes = (await http.get("/api/runtimes")).json()["items"]
                    assert [(r["runtime_id"], r["status"]) for r in runtimes] == [
                        ("emb", "available"),
                        (REMOTE_ID, "available"),
                        ("pods", "available"),
                    ]
                    workers = (await http.get("/api/workers")).json()["items"]
                    assert [w["label"] for w in workers] == ["old"]
                    made = await http.post(
                        f"/api/runtimes/{REMOTE_ID}/workers",
                        json={"display_name": "Far"},
                        headers={"X-Yoi-Caller": "ada"},
                    )
                    far = made.json()["worker"]["worker_id"]
                    base = f"/api/runtimes/{REMOTE_ID}/workers/{far}"
                    async with open_ws(workspace.url, "/api/events") as all_:
                        await http.post(f"{base}/input", json={"text": "hi"})
                        items = await items_until(all_, completed(far))
                        assert items[0]["type"] == "turn.accepted"
                        async with open_ws(workspace.url, f"{base}/events") as one:
                            workspace.process.send_signal(signal.SIGTERM)
                            for ws in (all_, one):
                                with pytest.raises(ConnectionClosed) as closed:
                                    await items_until(ws, lambda seen: False)
                                assert closed.value.reason.code == 1001
                assert await workspace.process.wait() == 0
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(x["caller"], x["operation"], x["outcome"]) for x in lines] == [
        ("ada", "create", "ok"),
        ("anonymous", "input", "ok"),
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[remote]]\nruntime_id = "r"\nurl = "ftp://x"\n', b"config.remote[0].url"),
        ('[embedded]\ndefault_engine = "nope"\n', b"config.embedded.default_engine"),
        ('[[compat]]\nruntime_id = "embedded"\nyoi_home = "p"\n', b"config.compat[0]"),
        ('[[compat]]\npods_dir = "p"\n', b"pods_dir"),
        ('[embedded]\nstore = "postgres:x"\n', b"config.embedded.store"),
    ],
)
async def test_the_workspace_command_refuses_a_bad_config(
    tmp_path: Path, text: str, named: bytes
) -> None:
    config = write_config(tmp_path, text)
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "yoi_workspace", "--bind", "127.0.0.1:0"]
            + ["--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(b"yoi-workspace: ")
    assert named in done.stderr
    assert b"ftp://x" not in done.stderr
