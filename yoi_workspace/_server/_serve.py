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
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import attrs
import trio

from yoi_runtime import Engine
from yoi_runtime._server._hypercorn import (
    is_loopback,
    parse_bind,
    run_until_signal,
    serve_app,
)
from yoi_runtime._server._streams import StreamControl, StreamSettings

from .._config import ConfigError, WorkspaceConfig, load_config
from .._workspace import open_workspace
from ._app import WorkspaceState, create_app

__all__ = ["WorkspaceSettings", "main", "serve_workspace"]


@attrs.frozen
class WorkspaceSettings:
    """Everything the process needs.

    Attributes:
        host: Address to listen on.
        port: TCP port; 0 picks a free one.
        config: The config file's contents (or the defaults).
        engines: The embedded Runtime's engines (None when it is disabled).
    """

    host: str
    port: int
    config: WorkspaceConfig
    engines: Mapping[str, Engine] | None = None


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
        )

        async def drain() -> None:
            state.draining = True
            streams.begin_drain()
            if workspace.runtime is not None:
                await workspace.runtime.drain("shutdown")
            await streams.close_streams()

        await serve_app(
            create_app(state),
            settings.host,
            settings.port,
            shutdown_trigger=shutdown_trigger,
            shutdown_timeout=config.shutdown_timeout,
            drain=drain,
            task_status=task_status,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yoi-workspace",
        description="Serve the workspace backend's browser API: every Worker "
        "of the configured Runtimes (embedded, remote, local-pod).",
    )
    parser.add_argument("--bind", type=parse_bind, required=True, metavar="HOST:PORT")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--model-url", help="base URL of the default embedded engine")
    parser.add_argument("--model", help="model of the default embedded engine")
    return parser


def settings_from_args(argv: Sequence[str] | None) -> WorkspaceSettings:
    """Resolve flags and the config file.

    Raises:
        SystemExit: Bad flags (argparse's usage error).
        ConfigError: A bad config file, or engines it cannot build.
    """
    args = _parser().parse_args(argv)
    host, port = args.bind
    config = load_config(args.config)
    engines = None
    if config.embedded.enabled:
        engines = config.make_engines(model_url=args.model_url, model=args.model)
    return WorkspaceSettings(host, port, config, engines)


async def _run(settings: WorkspaceSettings) -> None:
    def announce(binds: list[str]) -> None:
        if not is_loopback(settings.host):
            print(
                f"yoi-workspace: trusting the {settings.config.caller_header} "
                "header: serve it only behind the authenticating proxy",
                file=sys.stderr,
            )
        print(f"yoi-workspace listening on {binds[0]}", flush=True)

    await run_until_signal(partial(serve_workspace, settings), announce)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``yoi-workspace`` command. Returns the exit status."""
    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        print(f"yoi-workspace: {exc}", file=sys.stderr)
        return 2
    trio.run(_run, settings)
    return 0
