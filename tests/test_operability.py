"""Logs, request ids and metrics of a real ``yoi-runtime`` process.

One scenario (a turn that completes, one whose engine is unreachable and
retries, a scrape, a graceful shutdown) against the command run as a
subprocess; every line it writes is kept, checked for the lines
``docs/operations.md`` promises, and searched for the secrets it was given
(the bearer token, an API key; an engine URL with credentials is refused
at start). The workspace's test does the same for the backend.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "tok-" + "s3cr3t" * 6
API_KEY = "sk-apikey-" + "k3y" * 8
SECRETS = (TOKEN, API_KEY)


@attrs.define(eq=False)
class LoggedProcess:
    """A server child process and everything it wrote (stdout and stderr)."""

    process: trio.Process
    url: str
    output: bytearray
    ended: trio.Event

    @property
    def lines(self) -> list[str]:
        return self.output.decode(errors="replace").splitlines()

    async def stop(self) -> int:
        """SIGTERM, then wait for the exit and the end of its output."""
        self.process.send_signal(signal.SIGTERM)
        status = await self.process.wait()
        await self.ended.wait()
        return status


@asynccontextmanager
async def open_logged_process(
    command: Sequence[str], listening: bytes, env: dict[str, str]
) -> AsyncIterator[LoggedProcess]:
    """Run ``command`` until it prints ``listening URL``; keep all output."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                list(command),
                check=False,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
        assert process.stdout is not None
        output = bytearray()
        ready, ended = trio.Event(), trio.Event()
        found: list[str] = []

        async def read(stream: trio.abc.ReceiveStream) -> None:
            async for chunk in stream:
                output.extend(chunk)
                if not found and listening in output:
                    rest = output[output.index(listening) + len(listening) :]
                    if b"\n" in rest:
                        found.append(rest.split(b"\n")[0].strip().decode())
                        ready.set()
            ready.set()
            ended.set()

        nursery.start_soon(read, process.stdout)
        await ready.wait()
        assert found, output.decode(errors="replace")
        try:
            yield LoggedProcess(process, found[0], output, ended)
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def runtime_config(path: Path) -> Path:
    """Engines: ``echo`` (completes) and ``far`` (unreachable, with an API
    key, retried once)."""
    file = path / "runtime.toml"
    file.write_text(
        f"""
default_engine = "echo"
enable_test_engines = true

[engines.echo]
kind = "scripted"

[engines.far]
kind = "openai-chat"
base_url = "http://127.0.0.1:{closed_port()}/v1"
model = "m"
api_key_env = "YOI_TEST_OPS_KEY"
retry_attempts = 2
retry_wait_max = 0.5
connect_timeout = 1.0
""",
        encoding="utf-8",
    )
    return file


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_turn(http: httpx.AsyncClient, worker_id: str, turns: int) -> None:
    """Poll the Worker until ``turns`` turns have ended (it is idle)."""
    while True:
        worker = (await http.get(f"/v1/workers/{worker_id}")).json()["worker"]
        if worker["turns"] >= turns and worker["status"] == "idle":
            return
        await trio.sleep(0.05)


async def test_logs_request_ids_and_metrics(tmp_path: Path) -> None:
    config = runtime_config(tmp_path)
    command = [sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0"]
    command += ["--config", str(config), "--log-format", "json"]
    env = {"YOI_RUNTIME_TOKEN": TOKEN, "YOI_TEST_OPS_KEY": API_KEY}
    with trio.fail_after(60):
        async with open_logged_process(
            command, b"yoi-runtime listening on", env
        ) as served:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=served.url, headers=auth) as http:
                assert (
                    await http.get("/metrics", headers={"Authorization": ""})
                ).status_code == 401
                before = metrics((await http.get("/metrics")).text)

                created = await http.post(
                    "/v1/workers", json={}, headers={"X-Request-Id": "ops-req-1"}
                )
                assert created.headers["X-Request-Id"] == "ops-req-1"
                echo = created.json()["worker"]["worker_id"]
                bad = await http.post(
                    "/v1/workers", json={}, headers={"X-Request-Id": "bad id!"}
                )
                assert bad.headers["X-Request-Id"].startswith("req-")
                await http.post(f"/v1/workers/{echo}/input", json={"text": "hi"})
                await wait_turn(http, echo, 1)
                far = (await http.post("/v1/workers", json={"engine": "far"})).json()
                far_id = far["worker"]["worker_id"]
                await http.post(f"/v1/workers/{far_id}/input", json={"text": "x"})
                await wait_turn(http, far_id, 1)
                refused = await http.get("/v1/runtime", headers={"Host": "evil.test"})
                assert refused.status_code == 421
                assert refused.headers["X-Request-Id"].startswith("req-")

                after = metrics((await http.get("/metrics")).text)
            assert await served.stop() == 0

    # -- metrics moved as they should ---------------------------------------
    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("yoi_turns_total", outcome="completed", code="") == 1
    failed = {
        dict(labels)["code"]: count
        for (name, labels), count in after.items()
        if name == "yoi_turns_total" and dict(labels)["outcome"] == "failed"
    }
    assert sum(failed.values()) == 1
    assert moved("yoi_turn_retries_total") == 1
    assert moved("yoi_turn_duration_seconds_count", outcome="completed") == 1
    assert moved("yoi_turn_time_to_first_token_seconds_count") >= 1
    assert moved("yoi_events_published_total") > 10
    assert value(after, "yoi_workers", status="idle") == 3
    assert value(after, "yoi_tokens_total", direction="input") > 0
    post = {"method": "POST", "route": "/v1/workers", "status": "201"}
    assert moved("yoi_http_requests_total", **post) == 3
    get = {"method": "GET", "route": "/metrics", "status": "200"}
    assert value(after, "yoi_http_requests_total", **get) == 1
    assert (
        value(after, "yoi_engine_turns_in_flight", engine="far", kind="openai-chat")
        == 0
    )
    assert ("yoi_event_subscribers", ()) in after

    # -- the lines ------------------------------------------------------------
    text = served.output.decode(errors="replace")
    for secret in SECRETS:
        assert secret not in text
    records = [json.loads(line) for line in served.lines if line.startswith("{")]
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_logger.setdefault(record["logger"], []).append(record)
    (start, *_) = by_logger["yoi_runtime.process"]
    assert start["engines"] == {"echo": "scripted", "far": "openai-chat"}
    assert start["auth"] == "token"
    access = by_logger["yoi_runtime.http"]
    assert {
        "method": "POST",
        "route": "/v1/workers",
        "status": 201,
        "request_id": "ops-req-1",
    }.items() <= next(r for r in access if r["request_id"] == "ops-req-1").items()
    assert any(
        r["route"] == "-" and r["status"] == 421 and r["method"] == "GET"
        for r in access
    )
    assert all(isinstance(r["duration_ms"], float) for r in access)
    turns = by_logger["yoi_runtime.turns"]
    retries = [r for r in turns if r["message"].startswith("engine retry")]
    assert len(retries) == 1  # once, not again by stamina
    assert not any(r["logger"].startswith("stamina") for r in records)
    (failure,) = [r for r in turns if r["message"].startswith("turn failed")]
    assert failure["worker"] == far_id
    assert failure["code"] in failed
    assert "request_id" not in failure
    messages = [r["message"] for r in by_logger["yoi_runtime.process"]]
    assert any(m.startswith("shutting down") for m in messages)
    assert any(m.startswith("drained in") for m in messages)
    assert messages[-1] == "stopped"


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0"]
    command += ["--config", str(runtime_config(tmp_path)), "--no-metrics"]
    with trio.fail_after(60):
        async with open_logged_process(
            command, b"yoi-runtime listening on", {"YOI_TEST_OPS_KEY": API_KEY}
        ) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                response = await http.get("/metrics")
                assert response.status_code == 404
                assert response.headers["X-Request-Id"].startswith("req-")
            assert await served.stop() == 0
    # Console lines: time, level, logger, message.
    assert any(" INFO yoi_runtime.http GET - 404 " in line for line in served.lines)


async def test_a_durable_runtime_shows_its_store_commits(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0"]
    command += ["--config", str(runtime_config(tmp_path))]
    command += ["--store", f"sqlite:{tmp_path / 'runtime.db'}"]
    with trio.fail_after(60):
        async with open_logged_process(
            command, b"yoi-runtime listening on", {"YOI_TEST_OPS_KEY": API_KEY}
        ) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                before = metrics((await http.get("/metrics")).text)
                created = await http.post("/v1/workers", json={})
                worker_id = created.json()["worker"]["worker_id"]
                await http.post(f"/v1/workers/{worker_id}/input", json={"text": "hi"})
                await wait_turn(http, worker_id, 1)
                after = metrics((await http.get("/metrics")).text)
            assert await served.stop() == 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    commits = moved("yoi_store_commit_seconds_count")
    # At least the create and the input were each committed before they were
    # acknowledged; the turn's events after them.
    assert commits >= 2
    assert moved("yoi_store_commit_batch_size_count") == commits
    assert moved("yoi_store_commit_batch_size_sum") >= 8  # events and rows
    assert moved("yoi_store_commit_seconds_sum") > 0
    assert value(after, "yoi_store_commit_seconds_bucket", le="+Inf") == value(
        after, "yoi_store_commit_seconds_count"
    )
