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
import signal
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import attrs
import hypercorn
import hypercorn.trio
import trio

from yoi_runtime import Engine
from yoi_runtime._server._serve import _parse_bind, is_loopback
from yoi_runtime._server._streams import StreamSettings

from .._config import ConfigError, WorkspaceConfig, load_config
from .._workspace import open_workspace
from ._app import WorkspaceState, create_app
from ._streams import StreamControl

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
        streams = StreamControl(StreamSettings(config.heartbeat_interval))
        state = WorkspaceState(
            workspace.registry,
            streams,
            caller_header=config.caller_header,
            roles_header=config.roles_header,
            max_body_bytes=config.max_body_bytes,
        )
        hyper = hypercorn.Config()
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        hyper.bind = [f"{host}:{settings.port}"]
        # Streams are closed before Hypercorn is told to stop; what is left
        # are idle keep-alive connections and in-flight requests.
        hyper.graceful_timeout = min(0.5, config.shutdown_timeout)
        hyper.errorlog = None
        stop_serving = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(
                    hypercorn.trio.serve,
                    create_app(state),
                    hyper,
                    shutdown_trigger=stop_serving.wait,
                )
            )
            task_status.started(binds)
            await shutdown_trigger.wait()
            # Graceful shutdown: a trigger plus a deadline on the nursery.
            deadline = trio.current_time() + config.shutdown_timeout
            nursery.cancel_scope.deadline = deadline
            state.draining = True
            streams.begin_drain()
            if workspace.runtime is not None:
                await workspace.runtime.drain("shutdown")
            await streams.close_streams()
            stop_serving.set()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yoi-workspace",
        description="Serve the workspace backend's browser API: every Worker "
        "of the configured Runtimes (embedded, remote, local-pod).",
    )
    parser.add_argument("--bind", type=_parse_bind, required=True, metavar="HOST:PORT")
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
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def watch_signals() -> None:
            async for _ in signals:
                shutdown.set()
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals)
            binds = await nursery.start(
                partial(serve_workspace, settings, shutdown_trigger=shutdown)
            )
            if not is_loopback(settings.host):
                print(
                    f"yoi-workspace: trusting the {settings.config.caller_header} "
                    "header: serve it only behind the authenticating proxy",
                    file=sys.stderr,
                )
            print(f"yoi-workspace listening on {binds[0]}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``yoi-workspace`` command. Returns the exit status."""
    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        print(f"yoi-workspace: {exc}", file=sys.stderr)
        return 2
    trio.run(_run, settings)
    return 0
