"""Running a server command: signals, start-up probes, failures, drain lines.

``yoi-runtime`` and ``yoi-workspace`` run the same way once their flags are
resolved: :func:`run_server` raises the open-file limit, configures
logging, serves until SIGINT or SIGTERM (:func:`~._hypercorn.
run_until_signal`), prints ``PROG listening on URL`` once the socket
listens, probes the engines in the background, and turns a failed start
(a bind that fails, a store that cannot be opened) into one line and an
exit status. :func:`serve_observed` serves an app as both processes do
(the access log, request ids and metrics around the guard; the embedded
Runtime's metrics followed), and :func:`drain_logged` writes the two
shutdown lines around a drain (``docs/operations.md``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping

import trio
from quart_trio import QuartTrio

from .._engines._base import Engine
from .._errors import StoreDamagedError, StoreError
from .._runtime import Runtime
from .._util import single_error
from ._guard_settings import ASGIApp, GuardSettings
from ._hypercorn import (
    ConnectionLimits,
    ServeFunction,
    raise_open_file_limit,
    run_until_signal,
    serve_app,
)
from ._logs import LogSettings, configure_logging
from ._metrics import AppMetrics
from ._observe import ObservedApp
from ._startup import listen_failure, probe_engines, startup_error

__all__ = ["drain_logged", "run_server", "serve_observed"]


def run_server(
    prog: str,
    serve: ServeFunction,
    *,
    host: str,
    port: int,
    log: LogSettings,
    engines: Mapping[str, Engine] | None = None,
    notice: str | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM (then drain); return the exit status.

    Args:
        prog: The command's name, for its lines (``"yoi-runtime"``).
        serve: What to run (a :class:`~._hypercorn.ServeFunction`), e.g.
            ``partial(serve_runtime, settings)``.
        host: The bind address given, for a bind failure's line.
        port: The port given (0 for any), likewise.
        log: Log level and format (from flags and config).
        engines: Engines to probe once listening (a warning line each for
            one that does not answer); None probes none.
        notice: A line printed to standard error, after ``PROG: ``, just
            before the listening line (``no token configured; ...``).

    Returns:
        0 after a clean shutdown; 1 or 2 after a start that failed (the
        one line saying what to fix is on standard error): 1 when running
        the same command later may work (the port is in use, the store
        cannot be written), 2 when the command must change (``--bind``, a
        damaged store).

    Raises:
        Exception: Anything else that ended the server (a bug), as it is.
    """
    raise_open_file_limit()
    configure_logging(log)
    try:
        trio.run(_run, prog, serve, engines, notice)
    except Exception as exc:
        error = startup_error(exc)
        failure = listen_failure(error, host, port)
        if failure is None and isinstance(error, StoreError):
            failure = error.message, 2 if isinstance(error, StoreDamagedError) else 1
        if failure is None:
            raise
        print(f"{prog}: {failure[0]}", file=sys.stderr)
        return failure[1]
    return 0


async def _run(
    prog: str,
    serve: ServeFunction,
    engines: Mapping[str, Engine] | None,
    notice: str | None,
) -> None:
    def announce(binds: list[str]) -> None:
        if notice is not None:
            print(f"{prog}: {notice}", file=sys.stderr)
        print(f"{prog} listening on {binds[0]}", flush=True)
        if engines is not None:
            probes.start_soon(probe_engines, engines)

    # A StoreError opening a Runtime, or a bind that fails, comes out bare.
    with single_error():
        async with trio.open_nursery() as probes:
            with single_error():
                await run_until_signal(serve, announce)
            probes.cancel_scope.cancel()


async def drain_logged(
    log: logging.Logger,
    running: int,
    streams: int,
    drain: Callable[[], Awaitable[None]],
    *,
    turns: str = "running turns",
) -> None:
    """Run ``drain`` between the two shutdown log lines.

    Args:
        log: The process's logger (``yoi_runtime.process``, ...).
        running: Turns running when the drain starts (they end
            ``cancelled``).
        streams: Event streams open when the drain starts (they close).
        drain: Refuses new work, ends the turns and closes the streams.
        turns: How the first line names the turns (``"running turns
            (embedded)"``).
    """
    started = trio.current_time()
    log.info(
        "shutting down: draining %d %s and %d event streams",
        running,
        turns,
        streams,
        extra={"running_turns": running, "streams": streams},
    )
    await drain()
    seconds = trio.current_time() - started
    log.info(
        "drained in %.2fs: %d turns cancelled, %d event streams closed",
        seconds,
        running,
        streams,
        extra={"drain_seconds": round(seconds, 3)},
    )


async def serve_observed(
    app: QuartTrio,
    host: str,
    port: int,
    *,
    access_log: logging.Logger,
    metrics: AppMetrics | None,
    runtime: Runtime | None,
    on_listening: Callable[[list[str]], None],
    shutdown_trigger: trio.Event,
    shutdown_timeout: float,
    drain: Callable[[], Awaitable[None]],
    guard: GuardSettings | None = None,
    limits: ConnectionLimits,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (:func:`~._hypercorn.serve_app`) observed, until
    ``shutdown_trigger``, then drain.

    Args:
        app: The app.
        host: Address to listen on.
        port: TCP port; 0 picks a free one.
        access_log: Where :class:`~._observe.ObservedApp` writes one line
            per request (``yoi_runtime.http``, ``yoi_workspace.http``).
        metrics: The app's metrics (its HTTP requests are counted), or None
            when ``GET /metrics`` is off.
        runtime: A Runtime this process runs, whose metrics ``metrics``
            collects (its turn counts followed from its event stream while
            serving), or None.
        on_listening: Called with the bound URLs once the socket listens,
            before ``task_status`` gets them (the start-up log line).
        shutdown_trigger: Set it to drain and stop.
        shutdown_timeout: Seconds from the trigger until everything still
            running is cancelled.
        drain: Refuses new work and closes the app's streams (see
            :func:`drain_logged`).
        guard: The browser-facing rules; None: those of ``host``.
        limits: Keep-alive, connection cap, WebSocket message size.
        task_status: Receives the bound URLs (``["http://127.0.0.1:8321"]``).
    """
    record = None if metrics is None else metrics.http.record

    def observe(guarded: ASGIApp) -> ASGIApp:
        return ObservedApp(guarded, access_log, record)

    async with trio.open_nursery() as nursery:
        if metrics is not None and runtime is not None:
            await nursery.start(metrics.add_runtime(runtime).follow)

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve_app(
                app,
                host,
                port,
                shutdown_trigger=shutdown_trigger,
                shutdown_timeout=shutdown_timeout,
                drain=drain,
                guard=guard,
                limits=limits,
                wrap=observe,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()

        binds = await nursery.start(serve)
        on_listening(binds)
        task_status.started(binds)
