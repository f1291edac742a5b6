"""What both commands check and say at start, in one line each.

- :class:`CommandParser`: argparse, but a usage error is one line
  (``yoi-runtime: argument --bind: expected HOST:PORT ... (see --help)``),
  exit status 2; ``--version``; ``--help`` ends with the environment
  variables the command reads (:func:`environment_help`).
- :func:`check_engine_secrets`: an ``api_key_env`` naming an unset variable
  is a config error naming the key, at start rather than at the first turn.
- :func:`probe_engines`: each ``openai-chat`` engine is asked
  ``GET {base_url}/models`` once; one that does not answer is a warning
  naming the engine (never its URL), not a failure.
- :func:`listen_failure`: a socket that cannot be bound (port in use,
  address not on this machine, ...) as one line saying what to fix.
- :func:`startup_error`: the one error inside the nested exception groups
  a failed start raises through the server's nurseries.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import textwrap
from collections.abc import Mapping, Sequence
from typing import NoReturn

import httpx
import trio

from .._config import ConfigError, EngineConfig, OpenAIChatConfig
from .._engines._base import Engine
from .._engines._openai_chat import OpenAIChatEngine
from .._version import __version__

__all__ = [
    "PROBE_TIMEOUT",
    "CommandParser",
    "check_engine_secrets",
    "environment_help",
    "listen_failure",
    "probe_engine",
    "probe_engines",
    "startup_error",
]

#: Seconds the start-up probe of each engine may take.
PROBE_TIMEOUT = 3.0

_log = logging.getLogger("yoi_runtime.engines")


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, with
    ``--version``."""

    def __init__(self, prog: str, **kwargs: object) -> None:
        super().__init__(
            prog=prog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,  # type: ignore[arg-type]
        )
        self.add_argument(
            "--version", action="version", version=f"{prog} {__version__}"
        )

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: MESSAGE (see --help)`` on stderr; exit 2."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def environment_help(variables: Sequence[tuple[str, str]]) -> str:
    """The ``--help`` epilog listing ``(NAME, what)`` pairs."""
    width = max(len(name) for name, _ in variables)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(
            what,
            79,
            initial_indent=f"  {name.ljust(width)}  ",
            subsequent_indent=indent,
        )
        for name, what in variables
    ]
    return "environment variables:\n" + "\n".join(lines)


def check_engine_secrets(engines: Mapping[str, EngineConfig], key: str) -> None:
    """Refuse an ``openai-chat`` engine whose ``api_key_env`` is unset.

    Args:
        engines: ``[engines.NAME]`` tables by name.
        key: Their config path (``"config.engines"``).

    Raises:
        ConfigError: The first such engine; the message names the key and
            the variable (never a value).
    """
    for name, spec in engines.items():
        variable = spec.api_key_env if isinstance(spec, OpenAIChatConfig) else None
        if variable is not None and not os.environ.get(variable, "").strip():
            raise ConfigError(
                f"{key}.{name}.api_key_env: environment variable {variable} "
                "is not set (set it, or use api_key_file)"
            )


async def probe_engine(engine: OpenAIChatEngine) -> str | None:
    """Ask an engine's server for ``GET {base_url}/models`` once.

    The caller bounds it (``trio.move_on_after``).

    Returns:
        None when it answered 2xx, else what went wrong in words (never the
        URL): ``"cannot connect"``, ``"answered HTTP 404"``, ...
    """
    headers = {}
    key = None
    if engine.api_key_env is not None:
        key = os.environ.get(engine.api_key_env, "").strip()
    elif engine.api_key_file is not None:
        try:
            key = (await trio.Path(engine.api_key_file).read_text()).strip()
        except (OSError, UnicodeDecodeError):
            return "cannot read its key file"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = engine.base_url.rstrip("/") + "/models"
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(url, headers=headers)
    except httpx.ConnectError:
        return "cannot connect"
    except httpx.TimeoutException:
        return "no answer"
    except httpx.HTTPError as exc:
        return f"the request failed ({type(exc).__name__})"
    if not response.is_success:
        return f"answered HTTP {response.status_code}"
    return None


async def probe_engines(engines: Mapping[str, Engine]) -> None:
    """Probe every ``openai-chat`` engine at once; log a warning (logger
    ``yoi_runtime.engines``) for each that does not answer within
    :data:`PROBE_TIMEOUT` seconds.

    The warning is ``engine 'NAME' (openai-chat) did not answer at start
    (WHAT); its turns will fail until it does``.
    """

    async def probe(name: str, engine: OpenAIChatEngine) -> None:
        problem = f"no answer within {PROBE_TIMEOUT:g} s"
        with trio.move_on_after(PROBE_TIMEOUT):
            problem = await probe_engine(engine) or ""
        if problem:
            _log.warning(
                "engine %r (openai-chat) did not answer at start (%s); its turns "
                "will fail until it does",
                name,
                problem,
                extra={"engine": name, "problem": problem},
            )

    async with trio.open_nursery() as nursery:
        for name, engine in engines.items():
            if isinstance(engine, OpenAIChatEngine):
                nursery.start_soon(probe, name, engine)


def startup_error(error: BaseException) -> BaseException:
    """The one error inside groups of one (a failed start raises through
    several nurseries); a group of several is returned as it is."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def listen_failure(
    error: BaseException, host: str, port: int
) -> tuple[str, int] | None:
    """A bind that failed, as one line and an exit status.

    Returns:
        ``(message, status)``: status 1 when the port is in use (the same
        command works once it is free), 2 when ``--bind`` itself is wrong;
        None when ``error`` is not a failure to listen.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(error, socket.gaierror):
        return f"cannot listen on {where}: unknown host {host} (fix --bind)", 2
    if not isinstance(error, OSError):
        return None
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the address is already in use (stop the "
            "other process or choose another port with --bind)",
            1,
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: {host} is not an address of this machine "
            "(fix --bind)",
            2,
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need "
            "privileges; choose another port with --bind)",
            2,
        )
    reason = error.strerror or type(error).__name__
    return f"cannot listen on {where}: {reason} (fix --bind)", 2
