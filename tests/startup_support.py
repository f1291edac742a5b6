"""Shared by the start-up error tests of both commands: run a command as
a subprocess, ports that are busy or closed, and a server's output until a
warning."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import trio


def run(
    module: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``python -m MODULE ARGS`` (without the caller's ``YOI_*``
    variables); its exit status, stdout and stderr."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YOI_")}
    child = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**environment, **(env or {})},
        timeout=30,
    )
    return child.returncode, child.stdout, child.stderr


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, so nobody else takes it)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


async def lines_until_warning(
    command: list[str], warning: str, health: str
) -> list[str]:
    """Run a server until its output holds ``warning``; check it still
    serves (``health`` answers 200), stop it, and return every output
    line."""
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    seen = b""
    try:
        async for chunk in process.stdout:
            seen += chunk
            if warning.encode() in seen:
                break
        url = re.search(rb"listening on (http://\S+)", seen)
        assert url is not None, seen
        async with httpx.AsyncClient() as http:
            answer = await http.get(url.group(1).decode() + health)
            assert answer.status_code == 200
    finally:
        process.terminate()
        await process.wait()
        await process.stdout.aclose()
    assert process.returncode == 0
    return seen.decode().splitlines()
