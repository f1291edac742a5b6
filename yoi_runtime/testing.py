"""Helpers for tests, examples and demos: real servers on loopback.

:func:`open_runtime_process` runs the ``yoi-runtime`` process (it needs the
``server`` extra) on a free loopback port; :func:`open_server_process` runs
any server command until it says where it listens.

The local model server has its public home in :mod:`yoi_runtime.local_model`;
:func:`open_llama_server` and :class:`LlamaServer` are its
:func:`~yoi_runtime.local_model.open_local_model_server` and
:class:`~yoi_runtime.local_model.LocalModelServer` under the names tests know.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from ._child_process import ServerProcess, StartupError, open_server_process
from .local_model import UVICORN_RUNNING, find_smollm2_model
from .local_model import LocalModelServer as LlamaServer
from .local_model import open_local_model_server as open_llama_server

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

#: The line ``yoi-runtime`` prints once it accepts connections.
RUNTIME_LISTENING = re.compile(rb"yoi-runtime listening on (http://\S+)")


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
