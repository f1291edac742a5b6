"""Chat with a Companion Worker on a real local model (the README's main job).

Type a line and press Enter; the answer streams back. An answer the token
limit cut off ends with a visible marker. Ctrl-C during an answer cancels
that turn only (the model server runs in its own process group, so it never
sees the Ctrl-C) and the chat takes the next line; Ctrl-C at the prompt,
Ctrl-D or "/quit" leaves, and so does closing the terminal (the model server
stops with the chat). When standard input is not a terminal, each line
read from it is one message (``echo "Hi" | python examples/companion_chat.py``).

The Runtime keeps the Companion in a durable store (``.yoi/companion.db`` by
default), so leaving and running it again continues the same conversation:
the Companion is created with a fixed ``worker_id``, which makes the create
idempotent. ``--store memory`` forgets everything on exit. The history sent
to the model is trimmed to the server's context window, so a long
conversation never stops working.

Run: .venv/bin/python examples/companion_chat.py [--store sqlite:PATH|memory]
     [--max-tokens N] [--n-ctx N]
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from yoi_runtime import Runtime, TurnCancelledError, TurnFailedError, open_runtime
from yoi_runtime.local_model import DEFAULT_N_CTX, open_local_model_server

#: Printed after an answer the token limit cut off (finish reason "length").
TRUNCATED = "[... cut off: the answer reached the token limit]"
#: Printed when Ctrl-C cancelled the answer.
CANCELLED = "[cancelled]"


async def read_line(prompt: str) -> str | None:
    """Read one line from standard input without blocking Trio; None at EOF."""
    if sys.stdin.isatty():
        print(prompt, end="", flush=True)
    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return line.rstrip("\n") if line else None


async def cancel_on_sigint(
    signals: AsyncIterator[int], scope: trio.CancelScope
) -> None:
    """Cancel ``scope`` at the first Ctrl-C (SIGINT)."""
    async for _ in signals:
        scope.cancel()
        return


async def answer(runtime: Runtime, worker_id: str, text: str) -> None:
    """Send one message and stream the answer; Ctrl-C cancels the turn.

    Leaving :meth:`Runtime.open_turn` early (here: its scope cancelled by
    Ctrl-C) cancels the turn.
    """
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as interrupted:
                nursery.start_soon(cancel_on_sigint, signals, interrupted)
                try:
                    async with runtime.open_turn(worker_id, text) as turn:
                        async for delta in turn:
                            print(delta, end="", flush=True)
                    if turn.result.truncated:
                        print(f" {TRUNCATED}", end="")
                except TurnFailedError as exc:
                    print(f"\n[turn failed: {exc.error.code}: {exc.error.message}]")
                except TurnCancelledError as exc:
                    print(f"\n[turn cancelled: {exc.reason}]", end="")
            if interrupted.cancelled_caught:
                print(f" {CANCELLED}", end="")
            nursery.cancel_scope.cancel()
    print("\n", flush=True)


async def main(store: str, max_tokens: int, n_ctx: int) -> None:
    """Chat until the input ends; a closed terminal (SIGHUP) or SIGTERM ends
    the chat early, and with it, cleanly, the model server (which runs in its
    own session, so those signals never reach it)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_on_hangup, nursery.cancel_scope)
        await chat(store, max_tokens, n_ctx)
        nursery.cancel_scope.cancel()


async def cancel_on_hangup(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` at the first SIGHUP or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def chat(store: str, max_tokens: int, n_ctx: int) -> None:
    if store.startswith("sqlite:"):
        Path(store.removeprefix("sqlite:")).parent.mkdir(parents=True, exist_ok=True)
    print("Starting the local model server (SmolLM2-135M-Instruct)...", flush=True)
    async with open_local_model_server(n_ctx=n_ctx) as server:
        engine = server.chat_engine(max_tokens=max_tokens)
        async with open_runtime({"local": engine}, store=store) as runtime:
            companion = await runtime.create_worker(
                "companion", display_name="Yoi", worker_id="companion"
            )
            print(
                f"Companion {companion.worker_id} is ready "
                f"({companion.turns} earlier turns). /quit leaves.\n",
                flush=True,
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
            turns = (await runtime.get_worker(companion.worker_id)).turns
            print(f"Bye ({turns} turns).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Chat with a Companion Worker.")
    parser.add_argument(
        "--store",
        default="sqlite:.yoi/companion.db",
        help="sqlite:PATH (the default: .yoi/companion.db) or memory",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        help="the longest answer, in tokens (default 256)",
    )
    parser.add_argument(
        "--n-ctx",
        type=int,
        default=DEFAULT_N_CTX,
        help=f"the model's context window, in tokens (default {DEFAULT_N_CTX})",
    )
    args = parser.parse_args()
    try:
        trio.run(main, args.store, args.max_tokens, args.n_ctx)
    except KeyboardInterrupt:
        print("\nBye.")
