"""Every example runs, so none can rot."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import trio

from yoi_runtime import (
    Event,
    Runtime,
    ScriptedEngine,
    ScriptedReply,
    TurnCancelledData,
    open_runtime,
)
from yoi_runtime._ask import ABANDONED

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOCS = Path(__file__).resolve().parents[1] / "docs"


async def run_example(name: str, *args: str, stdin: bytes = b"") -> str:
    with trio.fail_after(300):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / name), *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()[-3000:]
    return output


@pytest.mark.llm
async def test_companion_embedded() -> None:
    output = await run_example("companion_embedded.py")
    assert "[turn.completed: finish_reason " in output
    assert "[busy: turn t-" in output
    assert "[cancel -> cancelled (turn.cancelled) turn t-" in output
    assert ": demo: cancel]" in output
    assert "[ask: finish_reason " in output
    assert "[worker is idle after 3 turns]" in output


@pytest.mark.llm
async def test_companion_chat_reads_lines_and_remembers(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path}/chat/companion.db"
    output = await run_example(
        "companion_chat.py", "--store", store, stdin=b"Hello!\nName a fruit.\n"
    )
    assert "(0 earlier turns)" in output
    assert "you> Hello!" in output
    assert "you> Name a fruit." in output
    assert output.count("yoi> ") == 2
    assert "Bye (2 turns)." in output
    # Run again on the same store: the same Companion, its turns counted on.
    output = await run_example(
        "companion_chat.py", "--store", store, stdin=b"And a colour?\n"
    )
    assert "Companion companion is ready (2 earlier turns)" in output
    assert "Bye (3 turns)." in output


@pytest.mark.llm
async def test_companion_remote() -> None:
    output = await run_example("companion_remote.py")
    assert "(process)" in output
    assert "[turn.completed: finish_reason " in output
    assert "[busy: turn t-" in output
    assert "[cancel -> cancelled (turn.cancelled)" in output
    assert "[worker is idle after 2 turns]" in output


# -- the Quart-Trio streaming endpoint (docs/embedding.md) ----------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


endpoint = load_example("streaming_endpoint")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Runtime, str]]:
    """The example's app over an embedded Runtime with scripted engines."""
    engines = {
        "slow": ScriptedEngine([ScriptedReply(deltas=("a ", "b ", "c "), delay=0.01)]),
        "hang": ScriptedEngine([ScriptedReply(deltas=("partial ",), hang=True)]),
    }
    async with open_runtime(engines) as runtime, trio.open_nursery() as nursery:
        shutdown = trio.Event()
        urls = await nursery.start(
            endpoint.serve, endpoint.create_app(runtime), shutdown
        )
        yield runtime, urls[0]
        shutdown.set()


async def post_events(url: str, body: Any) -> list[tuple[str, dict[str, Any]]]:
    async with httpx.AsyncClient() as http, http.stream("POST", url, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events: list[tuple[str, dict[str, Any]]] = await endpoint.read_events(r)
        return events


async def test_streaming_endpoint_streams_deltas_then_the_result(
    served: tuple[Runtime, str],
) -> None:
    runtime, base = served
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="slow")).worker_id
        events = await post_events(f"{base}/workers/{worker_id}/ask", {"text": "go"})
        last = (await runtime.get_worker(worker_id)).last_turn
    assert last is not None
    assert events == [
        ("delta", {"text": "a "}),
        ("delta", {"text": "b "}),
        ("delta", {"text": "c "}),
        (
            "result",
            {
                "turn_id": last.turn_id,
                "worker_id": worker_id,
                "text": "a b c ",
                "finish_reason": last.finish_reason,
                "truncated": False,
                "usage": {"input_tokens": 1, "output_tokens": 3},
            },
        ),
    ]


async def test_streaming_endpoint_client_disconnect_cancels_the_turn(
    served: tuple[Runtime, str],
) -> None:
    runtime, base = served
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        url = f"{base}/workers/{worker_id}/ask"
        async with runtime.subscribe(worker_id) as events:
            async with httpx.AsyncClient() as http:
                async with http.stream("POST", url, json={"text": "go"}) as response:
                    first = await endpoint.read_events(response, stop_after=1)
                # Leaving the block closed the connection mid-answer.
            async for item in events:
                assert isinstance(item, Event)
                if item.type == "turn.cancelled":
                    break
        detail = await runtime.get_worker(worker_id)
    assert first == [("delta", {"text": "partial "})]
    assert isinstance(item.data, TurnCancelledData)
    assert item.data.reason == ABANDONED
    assert detail.status.value == "idle"


async def test_streaming_endpoint_errors(served: tuple[Runtime, str]) -> None:
    runtime, base = served
    with trio.fail_after(10):
        worker_id = (await runtime.create_worker(engine="hang")).worker_id
        url = f"{base}/workers/{worker_id}/ask"
        async with runtime.open_turn(worker_id, "first") as turn:
            busy = await post_events(url, {"text": "second"})
        async with httpx.AsyncClient() as http:
            bad = await http.post(url, json={"txt": "typo"})
    assert busy == [
        (
            "error",
            {
                "code": "worker_busy",
                "message": busy[0][1]["message"],
                "details": {
                    "worker_id": worker_id,
                    "turn_id": turn.turn_id,
                    "started_at": busy[0][1]["details"]["started_at"],
                },
            },
        )
    ]
    assert bad.status_code == 422
    assert json.loads(bad.content)["error"]["code"] == "invalid_input"


def test_the_docs_show_the_recipe_as_it_runs() -> None:
    source = (EXAMPLES / "streaming_endpoint.py").read_text()
    recipe = source.split("# --- recipe start\n")[1].split("# --- recipe end")[0]
    assert recipe.strip() in (DOCS / "embedding.md").read_text()


@pytest.mark.llm
async def test_streaming_endpoint_example() -> None:
    output = await run_example("streaming_endpoint.py")
    assert "[result: finish_reason " in output
    assert f"[disconnected -> turn.cancelled: {ABANDONED}]" in output


@pytest.mark.llm
async def test_readme_snippet_runs(tmp_path: Path) -> None:
    from yoi_runtime.local_model import open_local_model_server

    readme = (EXAMPLES.parent / "README.md").read_text()
    snippet = readme.split("```python\n")[1].split("```")[0]
    assert 'base_url="http://127.0.0.1:8080/v1"' in snippet
    with trio.fail_after(300):
        async with open_local_model_server() as server:
            script = tmp_path / "snippet.py"
            script.write_text(
                snippet.replace("http://127.0.0.1:8080/v1", server.base_url)
            )
            done = await trio.run_process(
                [sys.executable, str(script)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()[-3000:]
    assert re.search(r"\S", output)
    assert re.search(r"\[(stop|length)\]\n$", output), output
