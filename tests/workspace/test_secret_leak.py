"""The browser API never shows where or how a Runtime is reached.

The ``yoi-workspace`` process is started with a remote Runtime (a real
``yoi-runtime`` process) whose URL and token are known strings, and a yoi
home whose Pods name sockets, session logs and pids (in yoi's format). Every route is
called and every event read, with the remote up and then down; no response
status line, header, body, WebSocket frame, close reason or refusal may
contain any of those strings.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import attrs
import httpx
import trio
from conformance.support import open_runtime_process
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection
from workspace.handle_support import REMOTE_ID, runtime_config, write_pod
from workspace.workspace_support import (
    open_workspace_process,
    open_ws,
    three_kinds,
    write_config,
)

#: A pid no live process has (the pod is shown stale), distinctive enough
#: that it cannot appear by chance.
DEAD_PID = 4_194_297


@attrs.define
class Seen:
    """Everything the browser side received, as text."""

    texts: list[str] = attrs.field(factory=list)

    def response(self, response: httpx.Response) -> httpx.Response:
        self.texts.append(f"{response.status_code} {response.reason_phrase}")
        self.texts += [f"{k}: {v}" for k, v in response.headers.multi_items()]
        self.texts.append(response.text)
        return response

    def refusal(self, refused: ConnectionRejected) -> None:
        self.texts.append(str(refused.status_code))
        self.texts += [f"{k!r}: {v!r}" for k, v in refused.headers or []]
        self.texts.append((refused.body or b"").decode())

    def check(self, secrets: list[str]) -> None:
        everything = "\n".join(self.texts)
        assert len(everything) > 10_000, "the test saw too little"
        for secret in secrets:
            assert secret not in everything, f"{secret!r} leaked"


async def read_frames(ws: WebSocketConnection, seen: Seen, count: int) -> None:
    """Record up to ``count`` frames, up to the first heartbeat (what was
    ready has been sent) or the close (whose reason is recorded)."""
    try:
        for _ in range(count):
            frame = str(await ws.get_message())
            seen.texts.append(frame)
            if '"stream.heartbeat"' in frame:
                return
    except ConnectionClosed as closed:
        seen.texts.append(repr(closed.reason))


async def stream(url: str, resource: str, seen: Seen, frames: int) -> None:
    """Open a stream and record its frames, or record its refusal."""
    try:
        async with open_ws(url, resource) as ws:
            await read_frames(ws, seen, frames)
    except* ConnectionRejected as group:
        for refused in group.exceptions:
            assert isinstance(refused, ConnectionRejected)
            seen.refusal(refused)


async def call_every_route(
    http: httpx.AsyncClient, url: str, seen: Seen, *, remote_up: bool
) -> None:
    get, post = http.get, http.post
    seen.response(await get("/api/health"))
    runtimes = seen.response(await get("/api/runtimes")).json()["items"]
    for runtime in runtimes:
        runtime_id = runtime["runtime_id"]
        base = f"/api/runtimes/{runtime_id}"
        seen.response(await get(base))
        for host_id in runtime["host_ids"]:
            seen.response(await get(f"/api/hosts/{host_id}/workers"))
        created = seen.response(await post(f"{base}/workers", json={}))
        listed = seen.response(await get(f"{base}/workers"))
        workers = listed.json().get("workers", []) if listed.is_success else []
        if created.status_code == 201:
            workers.append(created.json()["worker"])
        for worker in workers[-2:]:
            one = f"{base}/workers/{worker['worker_id']}"
            seen.response(await get(one))
            seen.response(await post(f"{one}/input", json={"text": "hi"}))
            seen.response(await post(f"{one}/input", json={"text": "busy?"}))
            seen.response(await get(f"{one}/transcript"))
            await stream(url, f"{one}/events?after=0", seen, 3)
            seen.response(await post(f"{one}/cancel", json={}))
            seen.response(await post(f"{one}/stop", json={"reason": "done"}))
            await stream(url, f"{one}/events?after=0", seen, 20)
        seen.response(await get(f"{base}/workers/w-0000000000000000"))
    seen.response(await get("/api/hosts"))
    seen.response(await get("/api/workers"))
    seen.response(await get("/api/workspace"))
    seen.response(await get("/api/diagnostics"))
    seen.response(await get("/api/runtimes/rt-nope"))
    await stream(url, "/api/events?after=e30", seen, 2)
    remote_status = "available" if remote_up else "unavailable"
    assert [r["status"] for r in runtimes if r["kind"] == "remote"] == [remote_status]


async def test_no_endpoint_token_path_or_pid_reaches_the_browser(
    tmp_path: Path,
) -> None:
    pods = tmp_path / "yoi-home"
    write_pod(pods, "live-pod")
    write_pod(pods, "dead-pod", "hello", pid=DEAD_PID)
    seen = Seen()
    with trio.fail_after(120):
        async with open_runtime_process(
            tmp_path, config=runtime_config(tmp_path)
        ) as remote:
            config = write_config(tmp_path, three_kinds(remote.url, pods))
            async with open_workspace_process("--config", str(config)) as workspace:
                async with httpx.AsyncClient(base_url=workspace.url) as http:
                    async with open_ws(workspace.url, "/api/events?after=e30") as ws:
                        await call_every_route(
                            http, workspace.url, seen, remote_up=True
                        )
                        # Secrets offered by the browser are refused, not echoed.
                        for body in (
                            {"url": remote.url},
                            {"token": remote.token},
                            {"pods_dir": str(pods)},
                        ):
                            refused = await http.post(
                                "/api/runtimes/emb/workers", json=body
                            )
                            assert refused.status_code == 400
                            seen.response(refused)
                        remote.process.send_signal(signal.SIGTERM)
                        await remote.process.wait()
                        await call_every_route(
                            http, workspace.url, seen, remote_up=False
                        )
                        await read_frames(ws, seen, 200)
    secrets = [
        remote.url,
        remote.url.removeprefix("http://"),
        remote.token,
        str(tmp_path),
        str(pods),
        str(pods / "run" / "live-pod" / "sock"),
        str(pods / "sessions"),
        str(pods / "pods" / "dead-pod" / "metadata.json"),
        "metadata.json",
        "socket_path",
        "session_path",
        "session_id",
        "segment_id",
        str(DEAD_PID),
        '"pid"',
    ]
    seen.check(secrets)
    everything = "\n".join(seen.texts)
    # The test did see all three kinds of Runtime and both pods.
    for expected in ('"emb"', f'"{REMOTE_ID}"', '"pods"', '"live-pod"', '"dead-pod"'):
        assert expected in everything
    assert json.dumps("unavailable") in everything
