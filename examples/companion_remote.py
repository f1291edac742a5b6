"""Talk to a Companion in a ``yoi-runtime`` process over the network.

Starts llama-cpp-python's server with SmolLM2-135M-Instruct, then a
``yoi-runtime`` process (``--bind 127.0.0.1:0``, a bearer token, a durable
SQLite store, its default engine pointed at that model server), and drives it
with
``yoi_runtime.client``: creates a Companion, asks it a question (``ask``),
streams an answer over the WebSocket, shows a busy rejection and a cancel,
as the embedded example does in-process.

Run: .venv/bin/python examples/companion_remote.py
"""

from __future__ import annotations

import secrets
import tempfile

import trio

from yoi_runtime import Event, TurnTextDeltaData, WorkerBusyError
from yoi_runtime.client import RemoteSubscription, open_runtime_client
from yoi_runtime.local_model import open_local_model_server
from yoi_runtime.testing import open_runtime_process


async def print_answer(
    events: RemoteSubscription, *, stop_after: int | None = None
) -> str:
    """Print text deltas until the turn ends; return the final event type."""
    deltas = 0
    async for item in events:
        if not isinstance(item, Event):
            continue
        if isinstance(item.data, TurnTextDeltaData):
            print(item.data.text, end="", flush=True)
            deltas += 1
            if deltas == stop_after:
                return item.type
        elif item.type in ("turn.completed", "turn.failed", "turn.cancelled"):
            print()
            return item.type
    raise RuntimeError("event stream ended early")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="yoi-runtime-") as directory:
        await demo(directory)


async def demo(directory: str) -> None:
    token = secrets.token_urlsafe(24)
    async with (
        open_local_model_server() as model,
        open_runtime_process(
            "--model-url", model.base_url, "--model", model.model,
            "--store", f"sqlite:{directory}/runtime.db",  # durable
            env={"YOI_RUNTIME_TOKEN": token},
        ) as process,
        open_runtime_client(process.url, token=token) as runtime,
    ):  # fmt: skip
        summary = await runtime.summary()
        print(f"remote runtime {runtime.runtime_id} ({summary.capabilities.placement})")
        companion = await runtime.create_worker("companion", display_name="Yoi")
        worker_id = companion.worker_id
        print("\n> Name three colours of the rainbow.")
        result = await runtime.ask(worker_id, "Name three colours of the rainbow.")
        print(f"{result.text}\n[turn.completed: finish_reason {result.finish_reason}]")
        async with runtime.subscribe(worker_id) as events:
            print("\n> Write a long story about a lighthouse keeper.")
            turn = await runtime.send_input(
                worker_id, "Write a long story about a lighthouse keeper."
            )
            await print_answer(events, stop_after=5)
            try:
                await runtime.send_input(worker_id, "Are you there?")
            except WorkerBusyError as exc:
                print(f"\n[busy: turn {exc.turn_id} is running, input refused]")
            cancel = await runtime.cancel(worker_id, reason="demo: cancel")
            ended = await print_answer(events)
            print(f"[cancel -> {cancel.outcome.value} ({ended}) turn {turn.turn_id}]")
        detail = await runtime.get_worker(worker_id)
        print(f"[worker is {detail.status.value} after {detail.turns} turns]")


if __name__ == "__main__":
    trio.run(main)
