"""Run a server as a child process until its output says where it listens.

Shared by :mod:`yoi_runtime.local_model` (the local model server) and
:mod:`yoi_runtime.testing` (the ``yoi-runtime`` process).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from ._util import single_error

__all__ = ["ServerProcess", "StartupError", "open_server_process"]


class StartupError(Exception):
    """A helper server (model server, runtime process) did not start."""


@attrs.frozen
class ServerProcess:
    """A child process that said where it listens.

    Attributes:
        url: The URL it printed, ``http://127.0.0.1:PORT``.
        process: The child process (send it signals, read its ``returncode``).
    """

    url: str
    process: trio.Process


async def _read_until(
    output: trio.abc.ReceiveStream, ready: re.Pattern[bytes], tail: deque[bytes]
) -> str | None:
    """Read ``output`` until ``ready`` matches; its first group, or None at EOF."""
    buffer = b""
    async for chunk in output:
        tail.append(bytes(chunk))
        buffer = (buffer + chunk)[-4096:]
        match = ready.search(buffer)
        if match is not None:
            return match.group(1).decode()
    return None


async def _drain(output: trio.abc.ReceiveStream, tail: deque[bytes]) -> None:
    async for chunk in output:
        tail.append(bytes(chunk))


@asynccontextmanager
async def open_server_process(
    command: Sequence[str],
    ready: re.Pattern[bytes],
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    new_session: bool = False,
) -> AsyncIterator[ServerProcess]:
    """Run a server ``command`` until its output says where it listens.

    Standard output and standard error are read as one stream and kept
    draining, so a chatty child never blocks on a full pipe.

    Args:
        command: The program and its arguments.
        ready: Matches the line telling where it listens; group 1 is the URL.
        env: Extra environment variables for the child.
        startup_timeout: Seconds allowed until ``ready`` matches.
        new_session: Start the child in its own session and process group
            (``setsid``), so signals sent to this program's process group
            (Ctrl-C in a terminal) do not reach it; it still ends when this
            context exits.

    Yields:
        The :class:`ServerProcess`. On exit it gets SIGTERM (if still
        running) and is waited for (SIGKILL after 15 seconds); the caller
        checks ``process.returncode``.

    Raises:
        StartupError: It exited or was silent for ``startup_timeout`` (the
            message ends with its last output).
    """
    tail: deque[bytes] = deque(maxlen=64)
    with single_error():
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    list(command),
                    check=False,
                    env={**os.environ, **(env or {})},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=new_session,
                )
            )
            assert process.stdout is not None
            url = None
            with trio.move_on_after(startup_timeout):
                url = await _read_until(process.stdout, ready, tail)
            if url is None:
                nursery.cancel_scope.cancel()
                output = b"".join(tail).decode(errors="replace")[-2000:]
                raise StartupError(f"{command[:3]} did not start:\n{output}")
            nursery.start_soon(_drain, process.stdout, tail)
            try:
                yield ServerProcess(url, process)
            finally:
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.terminate()
                    with trio.move_on_after(15) as waited:
                        await process.wait()
                    if waited.cancelled_caught:
                        process.kill()
                        await process.wait()
                nursery.cancel_scope.cancel()
