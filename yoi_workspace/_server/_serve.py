"""Running the workspace backend: config, Hypercorn, signals, shutdown.

``yoi-workspace --bind HOST:PORT --config FILE`` prints ``yoi-workspace
listening on http://HOST:PORT`` (the real port, also for port 0) once it
accepts connections. SIGINT or SIGTERM drains it: health answers 503, the
embedded Runtime's turns end ``cancelled`` (reason ``shutdown``) and its
Workers stop, every browser WebSocket gets what was ready and closes with
1001, the handles close, and it exits 0, all within ``shutdown_timeout``
seconds. Remote Runtimes keep running: they are not the backend's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from yoi_runtime import Engine, InvalidInputError, __version__
from yoi_runtime.serving import (
    AppMetrics,
    CommandParser,
    ConnectionLimits,
    GuardSettings,
    LogSettings,
    StreamControl,
    StreamSettings,
    add_log_arguments,
    check_engine_secrets,
    drain_logged,
    environment_help,
    is_loopback,
    parse_bind,
    run_server,
    serve_observed,
)

from .._auth import MIN_TOKEN_LENGTH, Authenticator
from .._config import ConfigError, WorkspaceConfig, load_config
from .._handle import RuntimeHandle
from .._secrets import SecretRef
from .._workspace import open_workspace
from ._app import WorkspaceState, create_app
from ._metrics import RegistryMetrics

__all__ = ["WORKSPACE_CSP", "WorkspaceSettings", "main", "serve_workspace"]

#: The Content-Security-Policy of every workspace response: its pages load
#: scripts, styles and images from itself only, talk (HTTP and WebSocket)
#: to itself only, and are never framed.
WORKSPACE_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_log = logging.getLogger("yoi_workspace.process")
_access_log = logging.getLogger("yoi_workspace.http")


@attrs.frozen
class WorkspaceSettings:
    """Everything the process needs.

    Attributes:
        host: Address to listen on.
        port: TCP port; 0 picks a free one.
        config: The config file's contents (or the defaults).
        engines: The embedded Runtime's engines (None when it is disabled).
        auth: Who requests come from (its secrets read at start).
        log: Log level and format (flags over the config's).
        metrics: Serve ``GET /metrics`` (flag and config).
    """

    host: str
    port: int
    config: WorkspaceConfig
    engines: Mapping[str, Engine] | None = None
    auth: Authenticator = attrs.field(factory=Authenticator.none)
    log: LogSettings = LogSettings()
    metrics: bool = True


async def serve_workspace(
    settings: WorkspaceSettings,
    *,
    shutdown_trigger: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the browser API until ``shutdown_trigger`` is set, then drain.

    Args:
        settings: What to serve and how.
        shutdown_trigger: Set it to drain and stop.
        task_status: Receives the bound URLs (``["http://127.0.0.1:8400"]``)
            once the socket listens.
    """
    config = settings.config
    async with open_workspace(config, engines=settings.engines) as workspace:
        streams = StreamControl(
            StreamSettings(config.heartbeat_interval),
            shutdown_reason="workspace shutting down",
        )
        state = WorkspaceState(
            workspace.registry,
            streams,
            caller_header=config.caller_header,
            roles_header=config.roles_header,
            max_body_bytes=config.max_body_bytes,
            identity=await trio.to_thread.run_sync(config.identity),
            auth=settings.auth,
        )

        metrics = None
        if settings.metrics:
            metrics = state.metrics = AppMetrics.create(streams)
            registry_metrics = RegistryMetrics(workspace.registry)
            metrics.registry.register(registry_metrics)
            metrics.refresh.append(registry_metrics.refresh)

        async def drain() -> None:
            running = 0
            if workspace.runtime is not None:
                running = (await workspace.runtime.summary()).workers["running"]

            async def steps() -> None:
                state.draining = True
                streams.begin_drain()
                if workspace.runtime is not None:
                    await workspace.runtime.drain("shutdown")
                await streams.close_streams()

            await drain_logged(
                _log, running, streams._open, steps, turns="running turns (embedded)"
            )

        def listening(binds: list[str]) -> None:
            _log_start(settings, workspace.registry.handles(), binds)

        await serve_observed(
            create_app(state),
            settings.host,
            settings.port,
            access_log=_access_log,
            metrics=metrics,
            runtime=workspace.runtime,
            on_listening=listening,
            shutdown_trigger=shutdown_trigger,
            shutdown_timeout=config.shutdown_timeout,
            drain=drain,
            guard=GuardSettings.for_bind(
                settings.host,
                allowed_hosts=config.allowed_hosts,
                allowed_origins=config.allowed_origins,
                same_origin=True,
                cors_origins=config.cors_origins,
                content_security_policy=WORKSPACE_CSP,
            ),
            limits=ConnectionLimits(
                keep_alive_timeout=config.keep_alive_timeout,
                max_connections=config.max_connections,
            ),
            task_status=task_status,
        )
        _log.info("stopped")


def _log_start(
    settings: WorkspaceSettings, handles: Sequence[RuntimeHandle], binds: list[str]
) -> None:
    """The start-up line: never a URL, a token or a path of a secret."""
    config = settings.config
    runtimes = ", ".join(f"{h.runtime_id} ({h.kind})" for h in handles)
    engines = ", ".join(
        f"{name} ({engine.kind})" for name, engine in (settings.engines or {}).items()
    )
    store = config.embedded.store if config.embedded.enabled else "-"
    _log.info(
        "yoi-workspace %s serving on %s; auth %s; runtimes: %s; embedded store %s; "
        "engines: %s; metrics %s",
        __version__,
        binds[0],
        config.auth.mode,
        runtimes or "none",
        store,
        engines or "none",
        "on" if settings.metrics else "off",
        extra={
            "version": __version__,
            "bind": binds[0],
            "auth": config.auth.mode,
            "runtimes": {h.runtime_id: str(h.kind) for h in handles},
            "store": store,
            "engines": {
                name: engine.kind for name, engine in (settings.engines or {}).items()
            },
            "metrics": settings.metrics,
        },
    )


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        "yoi-workspace",
        description="Serve the workspace backend's browser API: every Worker "
        "of the configured Runtimes (embedded, remote, local-pod).",
        epilog=environment_help(
            [
                ("YOI_MODEL_URL", "base URL of the default embedded engine"),
                ("YOI_MODEL", "model of the default embedded engine"),
                (
                    "YOI_HOME",
                    "the yoi home of a [[compat]] that names none (also "
                    "YOI_DATA_DIR, YOI_RUNTIME_DIR, XDG_RUNTIME_DIR, HOME, as "
                    "yoi reads them)",
                ),
                (
                    "(token_env)",
                    "each [[remote]] and [[auth.tokens]] token, by "
                    "the name the config gives",
                ),
                ("(proxy_secret_env)", "the [auth] proxy secret"),
                ("(api_key_env)", "each embedded engine's API key"),
            ]
        ),
    )
    parser.add_argument("--bind", type=parse_bind, required=True, metavar="HOST:PORT")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--model-url", help="base URL of the default embedded engine")
    parser.add_argument("--model", help="model of the default embedded engine")
    add_log_arguments(parser)
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not serve GET /metrics (config: metrics = false)",
    )
    return parser


def settings_from_args(argv: Sequence[str] | None) -> WorkspaceSettings:
    """Resolve flags and the config file.

    Raises:
        SystemExit: Bad flags (argparse's usage error).
        ConfigError: A bad config file, engines it cannot build, ``none``
            authentication on a non-loopback bind, or a secret of ``[auth]``
            that cannot be read (or is shorter than
            :data:`~yoi_workspace._auth.MIN_TOKEN_LENGTH` on such a bind).
    """
    args = _parser().parse_args(argv)
    host, port = args.bind
    config = load_config(args.config)
    check_engine_secrets(config.embedded.engines, "config.embedded.engines")
    for index, remote in enumerate(config.remote):
        if remote.token_env is not None and not os.environ.get(remote.token_env):
            raise ConfigError(
                f"config.remote[{index}].token_env: environment variable "
                f"{remote.token_env} is not set (set it, or use token_file)"
            )
    auth = make_authenticator(config, host)
    engines = None
    if config.embedded.enabled:
        engines = config.make_engines(model_url=args.model_url, model=args.model)
    log = LogSettings(
        args.log_level or config.log_level, args.log_format or config.log_format
    )
    metrics = config.metrics and not args.no_metrics
    return WorkspaceSettings(host, port, config, engines, auth, log, metrics)


def make_authenticator(config: WorkspaceConfig, host: str) -> Authenticator:
    """The ``[auth]`` table's :class:`Authenticator` for a bind on ``host``.

    Raises:
        ConfigError: See :func:`settings_from_args`; the message names the
            key, never a secret's value.
    """
    table = config.auth
    public = not is_loopback(host)
    if table.mode == "none" and public:
        raise ConfigError(
            f"refusing to serve on {host} without authentication: set "
            '[auth] mode = "token" or "proxy", or bind a loopback address'
        )
    if table.mode == "token" and not table.tokens:
        raise ConfigError("config.auth.tokens: token mode needs at least one token")
    if table.mode == "proxy" and not (
        table.trusted_proxies
        or table.proxy_secret_env is not None
        or table.proxy_secret_file is not None
    ):
        raise ConfigError(
            "config.auth: proxy mode needs proxy_secret_env, proxy_secret_file "
            "or trusted_proxies"
        )
    refs: dict[str, SecretRef] = {}
    try:
        for index, entry in enumerate(table.tokens):
            refs[f"tokens[{index}]"] = _ref(
                config, entry.token_env, entry.token_file, f"tokens[{index}]"
            )
        if table.proxy_secret_env is not None or table.proxy_secret_file is not None:
            refs["proxy"] = _ref(
                config, table.proxy_secret_env, table.proxy_secret_file, "proxy"
            )
        return Authenticator.from_config(
            table,
            refs,
            caller_header=config.caller_header,
            roles_header=config.roles_header,
            min_token_length=MIN_TOKEN_LENGTH if public else 1,
        )
    except InvalidInputError as exc:
        raise ConfigError(f"config.{exc.path}: {exc.message}") from None


def _ref(
    config: WorkspaceConfig, env: str | None, file: str | None, key: str
) -> SecretRef:
    try:
        path = None if file is None else str(config.base_dir / Path(file).expanduser())
        return SecretRef(env=env, file=path)
    except InvalidInputError as exc:
        raise InvalidInputError(exc.message, path=f"auth.{key}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """The ``yoi-workspace`` command. Returns the exit status."""
    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        print(f"yoi-workspace: {exc}", file=sys.stderr)
        return 2
    return run_server(
        "yoi-workspace",
        partial(serve_workspace, settings),
        host=settings.host,
        port=settings.port,
        log=settings.log,
        engines=settings.engines,
    )
