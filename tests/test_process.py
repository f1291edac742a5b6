"""The ``yoi-runtime`` command as a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

from yoi_runtime.testing import open_runtime_process

CONFIG = Path(__file__).parent / "conformance" / "runtime.toml"


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "yoi_runtime", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown(sig: signal.Signals) -> None:
    with trio.fail_after(30):
        async with open_runtime_process("--config", str(CONFIG)) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                assert (await http.get("/v1/health")).json() == {"status": "serving"}
                created = await http.post("/v1/workers", json={"engine": "hang"})
                worker_id = created.json()["worker"]["worker_id"]
                await http.post(f"/v1/workers/{worker_id}/input", json={"text": "go"})
                url = httpx.URL(served.url)
                assert url.port is not None
                stream = await trio.open_tcp_stream(url.host, url.port)
                try:
                    async with trio.open_nursery() as nursery:
                        ws = await wrap_client_stream(
                            nursery, stream, url.host, "/v1/events?after=0"
                        )
                        served.process.send_signal(sig)
                        items: list[dict[str, object]] = []

                        async def read_all() -> None:
                            while True:
                                frame = json.loads(await ws.get_message())
                                items.extend(
                                    frame if isinstance(frame, list) else [frame]
                                )

                        with pytest.raises(ConnectionClosed) as info:
                            await read_all()
                finally:
                    await stream.aclose()
            assert info.value.reason.code == 1001
            by_type: dict[object, Any] = {
                i["type"]: i["data"] for i in items if "data" in i
            }
            assert by_type["turn.cancelled"]["reason"] == "shutdown"
            assert by_type["worker.stopped"]["reason"] == "shutdown"
            started = trio.current_time()
            assert await served.process.wait() == 0
            # An idle keep-alive connection (httpx's) does not hold it up.
            assert trio.current_time() - started < 5


def test_refuses_a_public_bind_without_a_token() -> None:
    child = run_command("--bind", "0.0.0.0:0", "--config", str(CONFIG))
    out, err = child.communicate(timeout=30)
    assert child.returncode == 2
    assert "without a token" in err
    assert out == ""


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[engines.x]\nkind = "openai-chat"\nmodel = 7\n')
    child = run_command("--bind", "127.0.0.1:0", "--config", str(config))
    _, err = child.communicate(timeout=30)
    assert child.returncode == 2
    assert "config.engines.x.model must be a string" in err
    assert "config.engines.x.base_url is required" in err
    assert "Traceback" not in err


def test_scripted_engines_need_the_test_flag(tmp_path: Path) -> None:
    config = tmp_path / "scripted.toml"
    config.write_text('[engines.s]\nkind = "scripted"\n')
    child = run_command("--bind", "127.0.0.1:0", "--config", str(config))
    _, err = child.communicate(timeout=30)
    assert child.returncode == 2
    assert "enable_test_engines" in err


def test_bad_bind_is_a_usage_error() -> None:
    child = run_command("--bind", "nowhere")
    _, err = child.communicate(timeout=30)
    assert child.returncode == 2
    assert "HOST:PORT" in err


async def test_token_from_file_and_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-123\n")
    with trio.fail_after(30):
        async with open_runtime_process(
            "--config", str(CONFIG), "--token-file", str(token_file)
        ) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                assert (await http.get("/v1/runtime")).status_code == 401
                ok = await http.get(
                    "/v1/runtime", headers={"Authorization": "Bearer file-token-123"}
                )
                assert ok.status_code == 200
        async with open_runtime_process(
            "--config", str(CONFIG), env={"YOI_RUNTIME_TOKEN": "env-token-456"}
        ) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                ok = await http.get(
                    "/v1/runtime", headers={"Authorization": "Bearer env-token-456"}
                )
                assert ok.status_code == 200
                summary = ok.json()
                assert summary["capabilities"]["placement"] == "process"
                assert summary["runtime_id"].startswith("rt-")
