"""Logs, request ids and metrics of a real ``yoi-workspace`` process.

The backend fronts a ``yoi-runtime`` process (reached through a URL with a
password in it) and an embedded Runtime whose engine has an API key; its
browser API needs a bearer token. The scenario creates a remote Worker and
sends it input with known request ids, then stops and restarts the
Runtime process. Every line of both processes is kept; the test checks the
lines ``docs/operations.md`` promises, that the request id reached the
Runtime process and the audit log, and that none of the secrets appears.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
from test_operability import (
    API_KEY,
    closed_port,
    metrics,
    open_logged_process,
    value,
)

WS_TOKEN = "ws-" + "t0ken" * 8
URL_PASSWORD = "urlpassw0rd"
SECRETS = (WS_TOKEN, API_KEY, URL_PASSWORD)
RUNTIME_ID = "rt-ops"
UP = "yoi_workspace_runtime_up"


def runtime_command(bind: str) -> list[str]:
    return [
        *(sys.executable, "-m", "yoi_runtime", "--bind", bind),
        *("--runtime-id", RUNTIME_ID, "--model-url", "http://127.0.0.1:9/v1"),
    ]


def workspace_config(path: Path, runtime_url: str) -> Path:
    port = httpx.URL(runtime_url).port
    file = path / "workspace.toml"
    file.write_text(
        f"""
audit_log = "audit.jsonl"
log_format = "json"

[auth]
mode = "token"
[[auth.tokens]]
caller = "ada"
token_env = "YOI_TEST_WS_TOKEN"

[embedded]
enable_test_engines = true
default_engine = "echo"
[embedded.engines.echo]
kind = "scripted"
[embedded.engines.far]
kind = "openai-chat"
base_url = "http://127.0.0.1:{closed_port()}/v1"
model = "m"
api_key_env = "YOI_TEST_OPS_KEY"

[[remote]]
runtime_id = "{RUNTIME_ID}"
url = "http://ops:{URL_PASSWORD}@127.0.0.1:{port}"
connect_timeout = 2.0
""",
        encoding="utf-8",
    )
    return file


async def test_workspace_logs_request_ids_and_metrics(tmp_path: Path) -> None:
    runtime_listening = b"yoi-runtime listening on"
    env = {"YOI_TEST_WS_TOKEN": WS_TOKEN, "YOI_TEST_OPS_KEY": API_KEY}
    outputs: list[str] = []
    with trio.fail_after(90):
        async with open_logged_process(
            runtime_command("127.0.0.1:0"), runtime_listening, {}
        ) as runtime:
            config = workspace_config(tmp_path, runtime.url)
            command = [sys.executable, "-m", "yoi_workspace", "--bind", "127.0.0.1:0"]
            command += ["--config", str(config)]
            async with open_logged_process(
                command, b"yoi-workspace listening on", env
            ) as workspace:
                auth = {"Authorization": f"Bearer {WS_TOKEN}"}
                async with httpx.AsyncClient(
                    base_url=workspace.url, headers=auth
                ) as http:
                    assert (
                        await http.get("/metrics", headers={"Authorization": ""})
                    ).status_code == 401
                    before = metrics((await http.get("/metrics")).text)
                    assert value(before, UP, runtime_id=RUNTIME_ID, kind="remote") == 1

                    workers = f"/api/runtimes/{RUNTIME_ID}/workers"
                    created = await http.post(
                        workers, json={}, headers={"X-Request-Id": "ws-req-7"}
                    )
                    assert created.status_code == 201
                    assert created.headers["X-Request-Id"] == "ws-req-7"
                    worker_id = created.json()["worker"]["worker_id"]
                    sent = await http.post(
                        f"{workers}/{worker_id}/input",
                        json={"text": "hi"},
                        headers={"X-Request-Id": "ws-req-8"},
                    )
                    assert sent.status_code == 202

                    assert await runtime.stop() == 0
                    outputs.append(runtime.output.decode(errors="replace"))
                    down = await http.get(workers)
                    assert down.status_code == 503
                    assert down.headers["X-Request-Id"].startswith("req-")
                    during = metrics((await http.get("/metrics")).text)
                    assert value(during, UP, runtime_id=RUNTIME_ID, kind="remote") == 0

                    port = httpx.URL(runtime.url).port
                    async with open_logged_process(
                        runtime_command(f"127.0.0.1:{port}"), runtime_listening, {}
                    ) as again:
                        assert (await http.get(workers)).status_code == 200
                        after = metrics((await http.get("/metrics")).text)
                        assert await again.stop() == 0
                    outputs.append(again.output.decode(errors="replace"))
                assert await workspace.stop() == 0
            outputs.append(workspace.output.decode(errors="replace"))

    # -- no secret in any line of either process ------------------------------
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output

    # -- the request id reached the Runtime process and the audit log --------
    first_runtime = outputs[0]
    assert "POST /v1/workers 201" in first_runtime
    assert "request_id=ws-req-7" in first_runtime
    assert "request_id=ws-req-8" in first_runtime
    audit = [
        json.loads(line)
        for line in (tmp_path / "audit.jsonl").read_text("utf-8").splitlines()
    ]
    assert [(r["operation"], r["request_id"]) for r in audit] == [
        ("create", "ws-req-7"),
        ("input", "ws-req-8"),
    ]

    # -- the workspace's own lines --------------------------------------------
    records: list[dict[str, Any]] = [
        json.loads(line) for line in outputs[2].splitlines() if line.startswith("{")
    ]
    start = next(r for r in records if r["logger"] == "yoi_workspace.process")
    assert start["runtimes"] == {"embedded": "embedded", RUNTIME_ID: "remote"}
    assert start["engines"] == {"echo": "scripted", "far": "openai-chat"}
    assert start["auth"] == "token"
    access = [r for r in records if r["logger"] == "yoi_workspace.http"]
    create = next(r for r in access if r["request_id"] == "ws-req-7")
    assert create["route"] == "/api/runtimes/<runtime_id>/workers"
    assert create["status"] == 201
    assert create["caller"] == "ada"
    assert any(r["status"] == 401 and "caller" not in r for r in access)
    remote = [r["message"] for r in records if r["logger"] == "yoi_workspace.remote"]
    assert remote[0] == f"remote runtime available: runtime={RUNTIME_ID}"
    assert remote[1].startswith(f"remote runtime unavailable: runtime={RUNTIME_ID}")
    assert remote[2] == f"remote runtime available again: runtime={RUNTIME_ID}"
    assert len(remote) == 3
    process = [r["message"] for r in records if r["logger"] == "yoi_workspace.process"]
    assert any(m.startswith("shutting down") for m in process)
    assert process[-1] == "stopped"

    # -- metrics ----------------------------------------------------------------
    assert value(after, UP, runtime_id=RUNTIME_ID, kind="remote") == 1
    assert value(after, UP, runtime_id="embedded", kind="embedded") == 1
    post = {"method": "POST", "route": "/api/runtimes/<runtime_id>/workers"}
    assert value(after, "yoi_http_requests_total", **post, status="201") == 1
    get = {"method": "GET", "route": "/api/runtimes/<runtime_id>/workers"}
    assert value(after, "yoi_http_requests_total", **get, status="503") == 1
    assert value(after, "yoi_workers", status="idle") == 0  # the embedded one's
