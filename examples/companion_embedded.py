"""Embed a Runtime in a Trio program and talk to a Companion on a local model.

Starts llama-cpp-python's server with SmolLM2-135M-Instruct on a free loopback
port, opens a Runtime in this program (no sockets between the two), creates a
Companion Worker, streams its answer to the terminal, then shows that input
during a turn is refused as busy and that cancel ends a turn at once.

Run: .venv/bin/python examples/companion_embedded.py
"""

from __future__ import annotations

import trio

from yoi_runtime import (
    Event,
    OpenAIChatEngine,
    Subscription,
    WorkerBusyError,
    open_runtime,
)
from yoi_runtime.testing import open_llama_server


async def print_answer(events: Subscription, *, stop_after: int | None = None) -> str:
    """Print text deltas until the turn ends; return the final event type.

    With ``stop_after``, return after that many deltas instead.
    """
    deltas = 0
    async for item in events:
        if not isinstance(item, Event):
            continue
        if item.type == "turn.text_delta":
            print(item.data["text"], end="", flush=True)
            deltas += 1
            if deltas == stop_after:
                return item.type
        elif item.type in ("turn.completed", "turn.failed", "turn.cancelled"):
            print()
            return item.type
    raise RuntimeError("event stream ended early")


async def main() -> None:
    async with open_llama_server() as server:
        engine = OpenAIChatEngine(
            base_url=server.base_url,
            model=server.model,
            temperature=0.0,
            max_tokens=96,
        )
        async with open_runtime({"local": engine}) as runtime:
            companion = await runtime.create_worker("companion", display_name="Yoi")
            worker_id = companion.worker_id
            print(f"runtime {runtime.runtime_id}, companion {worker_id}")
            events = runtime.subscribe(worker_id)

            print("\n> Tell me one fact about the Moon.")
            await runtime.send_input(worker_id, "Tell me one fact about the Moon.")
            ended = await print_answer(events)
            print(f"[{ended}]")

            print("\n> Write a long story about a lighthouse keeper.")
            turn = await runtime.send_input(
                worker_id, "Write a long story about a lighthouse keeper."
            )
            await print_answer(events, stop_after=5)
            try:
                await runtime.send_input(worker_id, "Are you there?")
            except WorkerBusyError as exc:
                print(f"\n[busy: turn {exc.turn_id} is running, input refused]")
            result = await runtime.cancel(worker_id, reason="demo: cancel")
            ended = await print_answer(events)
            print(f"[cancel -> {result.outcome.value} ({ended}) turn {turn.turn_id}]")

            detail = await runtime.get_worker(worker_id)
            print(f"[worker is {detail.status.value} after {detail.turns} turns]")


if __name__ == "__main__":
    trio.run(main)
