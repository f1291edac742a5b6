"""Shared by the conformance suite and the client tests: the engines both sides
offer, a ``yoi-runtime`` process launcher, and stream helpers."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from yoi_runtime import (
    EngineStatusError,
    Event,
    RuntimeAPI,
    ScriptedEngine,
    ScriptedReply,
    testing,
)
from yoi_runtime._api import TurnHost

#: The process config offering the same engines as :func:`scripted_engines`.
CONFIG = Path(__file__).with_name("runtime.toml")

#: Seconds a runtime process may take to say where it listens.
STARTUP_TIMEOUT = 15.0


def api_operations() -> list[str]:
    """The names of :class:`~yoi_runtime.RuntimeAPI`'s ``async`` operations
    but ``ask`` (one implementation, shared), read from the Protocol."""
    return sorted(
        name
        for name, value in vars(RuntimeAPI).items()
        if inspect.iscoroutinefunction(value) and name != "ask"
    ) + sorted(  # the operations it inherits from TurnHost
        name
        for name, value in vars(TurnHost).items()
        if inspect.iscoroutinefunction(value)
    )


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
    """A running ``yoi-runtime`` process and the token it was started with."""

    url: str
    token: str
    process: trio.Process


@asynccontextmanager
async def open_runtime_process(
    directory: Path, *, config: Path = CONFIG, args: tuple[str, ...] = ()
) -> AsyncIterator[RuntimeProcess]:
    """Start ``python -m yoi_runtime`` on a free loopback port with a token
    (written to a file in ``directory``); see
    :func:`yoi_runtime.testing.open_runtime_process`."""
    token = secrets.token_urlsafe(24)
    token_file = directory / "runtime-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    async with testing.open_runtime_process(
        "--config", str(config), "--token-file", str(token_file), *args,
        startup_timeout=STARTUP_TIMEOUT,
    ) as served:  # fmt: skip
        yield RuntimeProcess(served.url, token, served.process)


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
