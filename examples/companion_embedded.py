"""Embed a Runtime in a Trio program and talk to a Companion on a local model.

Starts llama-cpp-python's server with SmolLM2-135M-Instruct on a free loopback
port, opens a Runtime in this program (no sockets between the two), creates a
Companion Worker, streams its answer to the terminal with ``open_turn``, shows
that input during a turn is refused as busy and that cancel ends a turn at
once, then asks one more question with ``ask``.

Run: .venv/bin/python examples/companion_embedded.py
"""

from __future__ import annotations

import trio

from yoi_runtime import TurnCancelledError, WorkerBusyError, open_runtime
from yoi_runtime.local_model import open_local_model_server


async def main() -> None:
    async with open_local_model_server() as server:
        engine = server.chat_engine(temperature=0.0, max_tokens=96)
        async with open_runtime({"local": engine}) as runtime:
            companion = await runtime.create_worker("companion", display_name="Yoi")
            worker_id = companion.worker_id
            print(f"runtime {runtime.runtime_id}, companion {worker_id}")

            print("\n> Tell me one fact about the Moon.")
            async with runtime.open_turn(
                worker_id, "Tell me one fact about the Moon."
            ) as turn:
                async for delta in turn:
                    print(delta, end="", flush=True)
            result = turn.result
            print(f"\n[turn.completed: finish_reason {result.finish_reason}]")

            print("\n> Write a long story about a lighthouse keeper.")
            story = "Write a long story about a lighthouse keeper."
            try:
                async with runtime.open_turn(worker_id, story) as turn:
                    deltas = 0
                    async for delta in turn:
                        print(delta, end="", flush=True)
                        deltas += 1
                        if deltas == 5:
                            try:
                                await runtime.send_input(worker_id, "Are you there?")
                            except WorkerBusyError as exc:
                                print(f"\n[busy: turn {exc.turn_id} is running]")
                            cancel = await runtime.cancel(
                                worker_id, reason="demo: cancel"
                            )
            except TurnCancelledError as exc:
                print(
                    f"\n[cancel -> {cancel.outcome.value} (turn.cancelled) "
                    f"turn {exc.turn_id}: {exc.reason}]"
                )

            print("\n> Say goodbye in three words.")
            answer = await runtime.ask(worker_id, "Say goodbye in three words.")
            print(f"{answer.text}\n[ask: finish_reason {answer.finish_reason}]")

            detail = await runtime.get_worker(worker_id)
            print(f"[worker is {detail.status.value} after {detail.turns} turns]")


if __name__ == "__main__":
    trio.run(main)
