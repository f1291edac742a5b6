"""Running the runtime process: settings, Hypercorn, signals, shutdown.

``yoi-runtime --bind HOST:PORT`` prints ``yoi-runtime listening on
http://HOST:PORT`` (the real port, also for port 0) once it accepts
connections. SIGINT or SIGTERM drains it: commands are refused, running turns
end ``cancelled`` with reason ``shutdown``, WebSockets get what was already
streamed and close with 1001, and it exits 0, all within
``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from .._config import ConfigError, load_config, make_engines
from .._engines._base import Engine
from .._errors import InvalidInputError
from .._ids import check_id
from .._runtime import open_runtime
from .._store._records import parse_store_spec
from .._types import Capabilities
from .._version import __version__
from .._worker import Limits
from ..serving._guard_settings import GuardSettings
from ..serving._hypercorn import ConnectionLimits, is_loopback, parse_bind
from ..serving._logs import LogSettings, add_log_arguments
from ..serving._metrics import AppMetrics
from ..serving._run import drain_logged, run_server, serve_observed
from ..serving._secrets import SecretRef
from ..serving._startup import CommandParser, check_engine_secrets, environment_help
from ..serving._streams import StreamSettings
from ._app import ServerState, create_app

__all__ = ["MIN_TOKEN_LENGTH", "ProcessSettings", "main", "serve_runtime"]

#: The shortest token accepted on a non-loopback bind, in characters.
MIN_TOKEN_LENGTH = 32

_log = logging.getLogger("yoi_runtime.process")
_access_log = logging.getLogger("yoi_runtime.http")


@attrs.frozen
class ProcessSettings:
    """Everything the process needs, resolved from flags, file and env.

    Attributes:
        host: Address to listen on.
        port: TCP port; 0 picks a free one.
        runtime_id: The Runtime's id; None means the store's (or a new one).
        store: ``"memory"`` or ``"sqlite:PATH"``.
        token: The bearer token, or None (then only loopback is allowed).
        engines: Engines by name.
        default_engine: The engine for Workers created without one.
        max_body_bytes: Largest request body, in bytes.
        streams: WebSocket timing.
        shutdown_timeout: Seconds allowed for a graceful shutdown.
        guard: Allowed hosts and origins (None: those of ``host``, no
            origin); see ``docs/security.md``.
        limits: Keep-alive timeout, connection cap, WebSocket message size.
        runtime_limits: The Runtime's bounds (the config file's ``[limits]``).
        log: Log level and format.
        metrics: Serve ``GET /metrics``.
    """

    host: str
    port: int
    runtime_id: str | None
    token: str | None = attrs.field(repr=False)
    engines: Mapping[str, Engine]
    default_engine: str | None = None
    max_body_bytes: int = 1024 * 1024
    streams: StreamSettings = StreamSettings()
    shutdown_timeout: float = 10.0
    store: str = "memory"
    guard: GuardSettings | None = None
    limits: ConnectionLimits = ConnectionLimits()
    runtime_limits: Limits = Limits()
    log: LogSettings = LogSettings()
    metrics: bool = True


async def serve_runtime(
    settings: ProcessSettings,
    *,
    shutdown_trigger: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve one Runtime over HTTP and WebSocket until ``shutdown_trigger``.

    Args:
        settings: What to serve and how.
        shutdown_trigger: Set it to drain and stop.
        task_status: Receives the bound URLs (``["http://127.0.0.1:8321"]``)
            once the socket listens.
    """
    async with open_runtime(
        settings.engines,
        default_engine=settings.default_engine,
        runtime_id=settings.runtime_id,
        placement="process",
        store=settings.store,
        limits=settings.runtime_limits,
    ) as runtime:
        state = ServerState(
            runtime,
            settings.token,
            settings.streams,
            max_body_bytes=settings.max_body_bytes,
        )
        metrics = None
        if settings.metrics:
            metrics = state.metrics = AppMetrics.create(state.stream_control)

        async def drain() -> None:
            running = (await runtime.summary()).workers.get("running", 0)

            async def steps() -> None:
                state.begin_drain()
                await runtime.drain("shutdown")
                await state.close_streams()

            await drain_logged(_log, running, state.stream_control._open, steps)

        def listening(binds: list[str]) -> None:
            _log_start(settings, runtime.runtime_id, runtime.capabilities(), binds)

        await serve_observed(
            create_app(state),
            settings.host,
            settings.port,
            access_log=_access_log,
            metrics=metrics,
            runtime=runtime,
            on_listening=listening,
            shutdown_trigger=shutdown_trigger,
            shutdown_timeout=settings.shutdown_timeout,
            drain=drain,
            guard=settings.guard,
            limits=settings.limits,
            task_status=task_status,
        )
        _log.info("stopped", extra={"runtime_id": runtime.runtime_id})


def _log_start(
    settings: ProcessSettings,
    runtime_id: str,
    capabilities: Capabilities,
    binds: list[str],
) -> None:
    """The start-up line: never a URL of an engine, a key or a token."""
    engines = ", ".join(f"{e.name} ({e.kind})" for e in capabilities.engines)
    auth = "token" if settings.token is not None else "none (loopback only)"
    _log.info(
        "yoi-runtime %s serving runtime %s on %s; store %s; auth %s; engines: %s; "
        "metrics %s",
        __version__,
        runtime_id,
        binds[0],
        settings.store,
        auth,
        engines,
        "on" if settings.metrics else "off",
        extra={
            "version": __version__,
            "runtime_id": runtime_id,
            "bind": binds[0],
            "store": settings.store,
            "auth": auth,
            "engines": {e.name: e.kind for e in capabilities.engines},
            "metrics": settings.metrics,
        },
    )


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        "yoi-runtime",
        description="Serve a yoi Runtime over HTTP (commands) and WebSocket "
        "(events). Browsers never talk to it directly.",
        epilog=environment_help(
            [
                ("YOI_RUNTIME_TOKEN", "the bearer token (when no --token-file)"),
                ("YOI_MODEL_URL", "base URL of the default engine (no config)"),
                ("YOI_MODEL", "model of the default engine (no config)"),
                (
                    "(api_key_env)",
                    "each engine's API key, by the name its config gives",
                ),
            ]
        ),
    )
    parser.add_argument("--bind", type=parse_bind, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--runtime-id",
        help="default: the config's, else the store's, else derived from host "
        "and bind (memory) or new (a new durable store)",
    )
    parser.add_argument(
        "--store",
        help="memory (the default) or sqlite:PATH (durable: Workers, turns, "
        "transcripts and events survive restarts)",
    )
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--token-file", type=Path, help="bearer token file")
    parser.add_argument("--model-url", help="base URL of the default engine")
    parser.add_argument("--model", help="model of the default engine")
    parser.add_argument("--default-engine", help="engine for Workers without one")
    add_log_arguments(parser)
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not serve GET /metrics (config: metrics = false)",
    )
    return parser


def _stable_runtime_id(host: str, port: int) -> str:
    """An id that stays the same for the same host and bind address."""
    seed = f"{socket.gethostname()}|{host}:{port}".encode()
    return "rt-" + hashlib.sha256(seed).hexdigest()[:16]


def _read_token(token_file: Path | None) -> str | None:
    """The bearer token: ``--token-file``'s, else ``YOI_RUNTIME_TOKEN``'s
    (when set and not empty), else None.

    Raises:
        ConfigError: The file cannot be read, is not UTF-8 or holds only
            whitespace, or the variable holds only whitespace; the message
            names the file or variable, never a value.
    """
    if token_file is not None:
        ref = SecretRef(file=str(token_file))
    elif os.environ.get("YOI_RUNTIME_TOKEN"):
        ref = SecretRef(env="YOI_RUNTIME_TOKEN")
    else:
        return None
    try:
        return ref.resolve()
    except InvalidInputError as exc:
        raise ConfigError(f"the token: {exc.message}") from None


def settings_from_args(argv: Sequence[str] | None) -> ProcessSettings:
    """Resolve flags, the config file and the environment.

    Raises:
        SystemExit: Bad flags (argparse's usage error).
        ConfigError: Bad config, unreadable token, or a non-loopback bind
            without a token or with one shorter than
            :data:`MIN_TOKEN_LENGTH`.
    """
    args = _parser().parse_args(argv)
    host, port = args.bind
    config, base_dir = load_config(args.config)
    for key, given in (
        ("--runtime-id", args.runtime_id),
        ("config.runtime_id", config.runtime_id),
    ):
        if given is not None:
            try:
                check_id(given, key)
            except InvalidInputError as exc:
                raise ConfigError(exc.message) from None
    check_engine_secrets(config.engines, "config.engines")
    store = args.store
    if store is None and config.store is not None:
        store = config.store
        if store.startswith("sqlite:"):  # relative to the config file
            store = "sqlite:" + str(base_dir / store.removeprefix("sqlite:"))
    store = store or "memory"
    try:
        durable = parse_store_spec(store) is not None
    except InvalidInputError as exc:
        raise ConfigError(exc.message) from None
    token = _read_token(args.token_file)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: give --token-file or "
            "YOI_RUNTIME_TOKEN, or bind a loopback address"
        )
    if token is not None and len(token) < MIN_TOKEN_LENGTH and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} with a token shorter than "
            f"{MIN_TOKEN_LENGTH} characters"
        )
    for name in ("keep_alive_timeout", "max_connections"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"config.{name} must be positive")
    engines = make_engines(config, base_dir, model_url=args.model_url, model=args.model)
    default = args.default_engine or config.default_engine
    if default is not None and default not in engines:
        raise ConfigError(f"default engine {default!r} is not configured")
    return ProcessSettings(
        host=host,
        port=port,
        runtime_id=args.runtime_id
        or config.runtime_id
        or (None if durable else _stable_runtime_id(host, port)),
        store=store,
        token=token,
        engines=engines,
        default_engine=default,
        max_body_bytes=config.max_body_bytes,
        streams=StreamSettings(config.heartbeat_interval),
        shutdown_timeout=config.shutdown_timeout,
        guard=GuardSettings.for_bind(
            host,
            allowed_hosts=config.allowed_hosts,
            allowed_origins=config.allowed_origins,
        ),
        limits=ConnectionLimits(
            keep_alive_timeout=config.keep_alive_timeout,
            max_connections=config.max_connections,
        ),
        runtime_limits=config.limits,
        log=LogSettings(
            args.log_level or config.log_level, args.log_format or config.log_format
        ),
        metrics=config.metrics and not args.no_metrics,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``yoi-runtime`` command. Returns the exit status."""
    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        print(f"yoi-runtime: {exc}", file=sys.stderr)
        return 2
    return run_server(
        "yoi-runtime",
        partial(serve_runtime, settings),
        host=settings.host,
        port=settings.port,
        log=settings.log,
        engines=settings.engines,
        notice=None
        if settings.token is not None
        else "no token configured; serving on loopback only",
    )
