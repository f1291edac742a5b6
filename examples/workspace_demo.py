"""The workspace backend over three kinds of Runtime, through the browser API.

Starts llama-cpp-python's server with SmolLM2-135M-Instruct, a ``yoi-runtime``
process beside it (``rt-office``, with a bearer token), writes a yoi home
holding one Pod of the older local-pod model (in yoi's own format, left
behind by a crash), and starts the ``yoi-workspace`` backend with a config
listing a durable embedded Runtime (``store = "sqlite:companion.db"``), that
process and the yoi home. Then, only through the browser API (HTTP with
httpx, WebSocket with trio-websocket), it shows the workspace, lists
everything, chats with a Companion in each Runtime on the real model, reads
the old Pod's transcript and the diagnostics, and shows the remote Runtime
going down and coming back while the all-Workers event stream stays open.

Run: .venv/bin/python examples/workspace_demo.py
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from yoi_runtime.testing import (
    LlamaServer,
    ServerProcess,
    open_llama_server,
    open_runtime_process,
    open_server_process,
)

WORKSPACE_LISTENING = re.compile(rb"yoi-workspace listening on (http://\S+)")
REMOTE = "rt-office"


def engine_toml(model: LlamaServer) -> str:
    """An ``openai-chat`` engine on the local model (short, repeatable)."""
    return (
        f'kind = "openai-chat"\nbase_url = "{model.base_url}"\n'
        f'model = "{model.model}"\ntemperature = 0.0\nmax_tokens = 48\n'
    )


def write_yoi_home(home: Path) -> None:
    """One Pod in yoi's format (``docs/compat-local-pod.md``): metadata, an
    allocation whose process is gone (a crash: the Pod reads as stale) and
    its active segment log."""
    session = "018f3a1c-9e00-7000-8000-000000000001"
    segment = "018f3a1c-9e00-7000-8000-000000000002"
    pod = home / "pods" / "helper-2024"
    pod.mkdir(parents=True)
    metadata = {
        "pod_name": "helper-2024",
        "active": {"session_id": session, "segment_id": segment},
        "workspace_root": "/workspace/demo",
    }
    (pod / "metadata.json").write_text(json.dumps(metadata, indent=2))
    allocation = {
        "pod_name": "helper-2024",
        "pid": 4_194_297,  # long gone
        "socket": str(home / "run" / "helper-2024" / "sock"),
        "scope_allow": [],
        "scope_deny": [],
        "delegated_from": None,
        "segment_id": segment,
    }
    (home / "run").mkdir()
    (home / "run" / "pods.json").write_text(
        json.dumps({"allocations": [allocation]}, indent=2)
    )
    ts = int(datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC).timestamp())
    ts *= 1000
    config = {
        "max_tokens": None,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "stop_sequences": [],
        "reasoning": None,
    }
    answer = [{"kind": "text", "text": "A tower that guides ships."}]
    lines = [
        {
            "kind": "segment_start",
            "ts": ts,
            "session_id": session,
            "system_prompt": None,
            "config": config,
            "history": [],
        },
        {"kind": "invoke", "ts": ts, "trigger": "user_send"},
        {
            "kind": "user_input",
            "ts": ts,
            "segments": [{"kind": "text", "content": "What is a lighthouse?"}],
        },
        {
            "kind": "assistant_item",
            "ts": ts + 900,
            "item": {"kind": "message", "role": "assistant", "content": answer},
        },
        {"kind": "turn_end", "ts": ts + 901, "turn_count": 1},
        {
            "kind": "run_completed",
            "ts": ts + 902,
            "interrupted": False,
            "result": "finished",
        },
    ]
    log = home / "sessions" / session / f"{segment}.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))


async def show_runtimes(http: httpx.AsyncClient) -> dict[str, str]:
    """Print every Runtime (``/api/runtimes`` lists them in the original
    server's shape; ``/api/runtimes/{id}`` is the project's own view, with
    usage); return their status by id."""
    listed = (await http.get("/api/runtimes")).json()["items"]
    status = {}
    for item in listed:
        runtime_id = item["runtime_id"]
        runtime = (await http.get(f"/api/runtimes/{runtime_id}")).json()["runtime"]
        print(
            f"runtime {runtime_id} ({runtime['kind']}): {runtime['status']}, "
            f"workers {runtime['workers']}, usage {runtime['usage']}"
        )
        status[runtime_id] = runtime["status"]
    return status


async def chat(http: httpx.AsyncClient, url: str, runtime_id: str, text: str) -> str:
    """Create a Companion in ``runtime_id``, stream its answer to ``text``."""
    made = await http.post(
        f"/api/runtimes/{runtime_id}/workers", json={"display_name": "Yoi"}
    )
    made.raise_for_status()
    worker_id = made.json()["worker"]["worker_id"]
    base = f"/api/runtimes/{runtime_id}/workers/{worker_id}"
    ws_url = url.replace("http://", "ws://") + f"{base}/events"
    async with open_websocket_url(ws_url) as ws:
        print(f"\n[{runtime_id}] > {text}")
        (await http.post(f"{base}/input", json={"text": text})).raise_for_status()
        ended = await print_answer(ws)
    print(f"[{runtime_id}] {ended}")
    return worker_id


async def print_answer(ws: WebSocketConnection) -> str:
    """Print text deltas until the turn ends; return the final event type."""
    while True:
        frame = json.loads(await ws.get_message())
        for item in frame if isinstance(frame, list) else [frame]:
            if item["type"] == "turn.text_delta":
                print(item["data"]["text"], end="", flush=True)
            elif item["type"] in ("turn.completed", "turn.failed", "turn.cancelled"):
                print()
                return str(item["type"])


async def follow_everything(url: str, seen: Counter[str], reset: trio.Event) -> None:
    """Count what the all-Workers stream (``/api/events``) delivers; set
    ``reset`` when a Runtime's stream starts over (a restarted process)."""
    ws_url = url.replace("http://", "ws://") + "/api/events"
    async with open_websocket_url(ws_url) as ws:
        while True:
            frame = json.loads(await ws.get_message())
            for item in frame if isinstance(frame, list) else [frame]:
                if item["type"] == "stream.reset":
                    seen[f"reset of {item['runtime_id']}"] += 1
                    reset.set()
                elif item["type"] != "stream.heartbeat":
                    seen[f"events of {item['runtime_id']}"] += 1


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        token_file = directory / "office.token"
        token_file.write_text(secrets.token_urlsafe(24) + "\n")
        token_file.chmod(0o600)
        write_yoi_home(directory / "yoi-home")
        async with open_llama_server() as model:
            remote_config = directory / "office.toml"
            remote_config.write_text(
                f'runtime_id = "{REMOTE}"\n[engines.local]\n{engine_toml(model)}'
            )
            remote_args = ("--config", str(remote_config))
            remote_args += ("--token-file", str(token_file))
            async with open_runtime_process(*remote_args) as office:
                port = office.url.rsplit(":", 1)[1]
                config = directory / "workspace.toml"
                config.write_text(
                    'workspace_id = "demo"\nworkspace_root = "/workspace/demo"\n\n'
                    '[embedded]\nstore = "sqlite:companion.db"\n\n'
                    f"[embedded.engines.local]\n{engine_toml(model)}\n"
                    f'[[remote]]\nruntime_id = "{REMOTE}"\nurl = "{office.url}"\n'
                    'token_file = "office.token"\nconnect_timeout = 1.0\n\n'
                    '[[compat]]\nruntime_id = "legacy-pods"\nyoi_home = "yoi-home"\n'
                )
                command = [sys.executable, "-m", "yoi_workspace"]
                command += ["--bind", "127.0.0.1:0", "--config", str(config)]
                async with (
                    open_server_process(command, WORKSPACE_LISTENING) as workspace,
                    httpx.AsyncClient(base_url=workspace.url, timeout=120) as http,
                    trio.open_nursery() as nursery,
                ):
                    print(f"workspace backend at {workspace.url}")
                    seen: Counter[str] = Counter()
                    reset = trio.Event()
                    nursery.start_soon(follow_everything, workspace.url, seen, reset)
                    await demo(http, workspace.url, office, remote_args, port, reset)
                    print(f"\n/api/events saw: {dict(sorted(seen.items()))}")
                    nursery.cancel_scope.cancel()


async def demo(
    http: httpx.AsyncClient,
    url: str,
    office: ServerProcess,
    remote_args: tuple[str, ...],
    port: str,
    reset: trio.Event,
) -> None:
    """List, chat in each Runtime, read the old pod, then stop and restart
    the remote Runtime (on the same port), chat there again, and wait until
    the all-Workers stream has noticed the restart (``reset``)."""
    workspace = (await http.get("/api/workspace")).json()
    print(f"workspace {workspace['workspace_id']} ({workspace['display_name']}), "
          f"store {workspace['extension_points']['store']}")  # fmt: skip
    await show_runtimes(http)
    workers = (await http.get("/api/workers")).json()["items"]
    for worker in workers:
        print(f"worker {worker['label']!r} in {worker['runtime_id']}")
    await chat(http, url, "embedded", "Name three colours of the rainbow.")
    await chat(http, url, REMOTE, "What is the capital of France?")

    (pod,) = (await http.get("/api/runtimes/legacy-pods/workers")).json()["workers"]
    base = f"/api/runtimes/legacy-pods/workers/{pod['worker_id']}"
    print(f"\nold pod {pod['display_name']!r}: {pod['status']}, stale {pod['stale']}")
    for entry in (await http.get(f"{base}/transcript")).json()["entries"]:
        print(f"  {entry['kind']}: {entry['text']}")
    refused = await http.post(f"{base}/input", json={"text": "hello?"})
    print(f"  input refused: {refused.status_code} {refused.json()['error']['code']}")
    diagnostics = (await http.get("/api/diagnostics")).json()["diagnostics"]
    for item in diagnostics:
        print(f"  diagnostic of {item['source']}: {item['code']}")

    print(f"\nstopping {REMOTE} ...")
    office.process.terminate()
    await office.process.wait()
    status = await show_runtimes(http)
    print(f"{REMOTE} is down: {status[REMOTE]}")
    refused = await http.post(f"/api/runtimes/{REMOTE}/workers", json={})
    print(f"create refused: {refused.status_code} {refused.json()['error']['code']}")
    listing = (await http.get("/api/workers")).json()
    codes = [item["code"] for item in listing["diagnostics"]]
    print(f"/api/workers still lists {len(listing['items'])} (diagnostics: {codes})")

    print(f"\nstarting {REMOTE} again on the same port ...")
    again = (*remote_args, "--bind", f"127.0.0.1:{port}")
    async with open_runtime_process(*again):
        status = await show_runtimes(http)
        print(f"{REMOTE} is back: {status[REMOTE]}")
        await chat(http, url, REMOTE, "Say hello.")
        # /api/events follows the restarted process by itself.
        with trio.fail_after(30):
            await reset.wait()


if __name__ == "__main__":
    trio.run(main)
