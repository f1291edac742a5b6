"""Shared by the conformance suite and the client tests: the engines both sides
offer, a ``yoi-runtime`` process launcher, and stream helpers."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from yoi_runtime import (
    EngineStatusError,
    Event,
    Runtime,
    ScriptedEngine,
    ScriptedReply,
)
from yoi_runtime.client import RuntimeClient

#: The process config offering the same engines as :func:`scripted_engines`.
CONFIG = Path(__file__).with_name("runtime.toml")

#: Seconds a runtime process may take to say where it listens.
STARTUP_TIMEOUT = 15.0

_LISTENING = re.compile(rb"yoi-runtime listening on (http://[^\s]+)")

#: Either implementation of the Runtime interface.
AnyRuntime = Runtime | RuntimeClient


def scripted_engines() -> dict[str, ScriptedEngine]:
    """The embedded twin of ``runtime.toml``'s engines."""
    return {
        "echo": ScriptedEngine(),
        "hang": ScriptedEngine([ScriptedReply(deltas=("partial ",), hang=True)]),
        "slow": ScriptedEngine([ScriptedReply(deltas=("a ", "b ", "c "), delay=0.05)]),
        "fail": ScriptedEngine(
            [
                ScriptedReply(
                    deltas=("x",),
                    error=EngineStatusError(
                        "the model server answered HTTP 503", status_code=503
                    ),
                )
            ]
        ),
    }


@attrs.frozen
class RuntimeProcess:
    """A running ``yoi-runtime`` process.

    Attributes:
        url: Where it listens (``http://127.0.0.1:PORT``).
        token: The bearer token it was started with.
        process: The process; ``returncode`` is set once it exited.
    """

    url: str
    token: str
    process: trio.Process


async def _wait_listening(
    stream: trio.abc.ReceiveStream, tail: deque[bytes]
) -> str | None:
    buffer = b""
    async for chunk in stream:
        tail.append(bytes(chunk))
        buffer = (buffer + chunk)[-4096:]
        match = _LISTENING.search(buffer)
        if match is not None:
            return match.group(1).decode()
    return None


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async for _ in stream:
        pass


@asynccontextmanager
async def open_runtime_process(
    directory: Path, *, config: Path = CONFIG, args: tuple[str, ...] = ()
) -> AsyncIterator[RuntimeProcess]:
    """Start ``python -m yoi_runtime`` on a free loopback port with a token.

    On exit the process gets SIGTERM (unless it already exited) and is waited
    for; the caller checks ``process.returncode``.

    Args:
        directory: Where the token file is written.
        config: The ``--config`` file.
        args: More command-line arguments.
    """
    token = secrets.token_urlsafe(24)
    token_file = directory / "runtime-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    command = [
        sys.executable, "-m", "yoi_runtime",
        "--bind", "127.0.0.1:0",
        "--config", str(config),
        "--token-file", str(token_file),
        *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("YOI_RUNTIME_TOKEN", None)
    tail: deque[bytes] = deque(maxlen=64)
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env=env,
            )
        )
        assert process.stdout is not None
        url = None
        with trio.move_on_after(STARTUP_TIMEOUT):
            url = await _wait_listening(process.stdout, tail)
        if url is None:
            nursery.cancel_scope.cancel()
            output = b"".join(tail).decode(errors="replace")
            raise AssertionError(f"yoi-runtime did not start:\n{output}")
        nursery.start_soon(_drain, process.stdout)
        try:
            yield RuntimeProcess(url, token, process)
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                with trio.move_on_after(15) as waited:
                    await process.wait()
                if waited.cancelled_caught:
                    process.kill()
                    await process.wait()
                nursery.cancel_scope.cancel()


async def events_until(events: Any, final: str) -> list[Event]:
    """Receive a subscription's events up to and including type ``final``."""
    seen: list[Event] = []
    async for item in events:
        assert isinstance(item, Event), item
        seen.append(item)
        if item.type == final:
            return seen
    raise AssertionError(f"stream ended before {final}: {types(seen)}")


def types(events: list[Event]) -> list[str]:
    return [event.type.value for event in events]
