"""Chat with a Companion Worker on a real local model (the README's main job).

Type a line and press Enter; the answer streams back. Ctrl-C during an answer
cancels that turn; Ctrl-C at the prompt, Ctrl-D or "/quit" leaves. When
standard input is not a terminal, each line read from it is one message
(``echo "Hi" | python examples/companion_chat.py``).

The Runtime keeps the Companion in a durable store (``.yoi/companion.db`` by
default), so leaving and running it again continues the same conversation:
the Companion is created with a fixed ``worker_id``, which makes the create
idempotent. ``--store memory`` forgets everything on exit.

Run: .venv/bin/python examples/companion_chat.py [--store sqlite:PATH|memory]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import trio

from yoi_runtime import Event, OpenAIChatEngine, Runtime, open_runtime
from yoi_runtime.testing import open_llama_server

_ENDINGS = ("turn.completed", "turn.failed", "turn.cancelled")


async def read_line(prompt: str) -> str | None:
    """Read one line from standard input without blocking Trio; None at EOF."""
    if sys.stdin.isatty():
        print(prompt, end="", flush=True)
    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return line.rstrip("\n") if line else None


async def answer(runtime: Runtime, worker_id: str, text: str) -> None:
    """Send one message and stream the answer; Ctrl-C cancels the turn."""
    events = runtime.subscribe(worker_id)
    await runtime.send_input(worker_id, text)
    async with trio.open_nursery() as nursery:

        async def cancel_on_interrupt() -> None:
            with trio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    await runtime.cancel(worker_id, reason="interrupted by user")

        if sys.stdin.isatty():
            nursery.start_soon(cancel_on_interrupt)
        async for item in events:
            if isinstance(item, Event) and item.type == "turn.text_delta":
                print(item.data["text"], end="", flush=True)
            elif isinstance(item, Event) and item.type in _ENDINGS:
                if item.type != "turn.completed":
                    print(f"\n[{item.type}: {dict(item.data)}]", end="")
                print("\n")
                break
        nursery.cancel_scope.cancel()


async def main(store: str) -> None:
    if store.startswith("sqlite:"):
        Path(store.removeprefix("sqlite:")).parent.mkdir(parents=True, exist_ok=True)
    print("Starting the local model server (SmolLM2-135M-Instruct)...", flush=True)
    async with open_llama_server() as server:
        engine = OpenAIChatEngine(
            base_url=server.base_url, model=server.model, max_tokens=256
        )
        async with open_runtime({"local": engine}, store=store) as runtime:
            companion = await runtime.create_worker(
                "companion", display_name="Yoi", worker_id="companion"
            )
            print(
                f"Companion {companion.worker_id} is ready "
                f"({companion.turns} earlier turns). /quit leaves.\n"
            )
            while True:
                line = await read_line("you> ")
                if line is None or line.strip() == "/quit":
                    break
                if line.strip():
                    if not sys.stdin.isatty():
                        print(f"you> {line}")
                    print("yoi> ", end="", flush=True)
                    await answer(runtime, companion.worker_id, line)
            usage = (await runtime.get_worker(companion.worker_id)).turns
            print(f"Bye ({usage} turns).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Chat with a Companion Worker.")
    parser.add_argument(
        "--store",
        default="sqlite:.yoi/companion.db",
        help="sqlite:PATH (the default: .yoi/companion.db) or memory",
    )
    try:
        trio.run(main, parser.parse_args().store)
    except KeyboardInterrupt:
        print("\nBye.")
