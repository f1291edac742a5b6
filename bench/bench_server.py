"""Benchmarks for the ``yoi-runtime`` process: HTTP commands, WebSocket delivery.

Run from the repository root::

    .venv/bin/python bench/bench_server.py            # full run, about 3 minutes
    .venv/bin/python bench/bench_server.py --quick    # smoke run, under 30 seconds
    .venv/bin/python bench/bench_server.py --json results.json
    .venv/bin/python bench/bench_server.py --profile out.pstats  # cProfile the server

Three servers run as subprocesses on 127.0.0.1 at a free port, for the whole
run; this process is the load generator (httpx and trio-websocket under Trio)
and nothing else, so on a 2-core machine each side has about one core:

1. ``yoi``: the real ``python -m yoi_runtime --bind 127.0.0.1:0`` with the
   conformance engines plus ``flood``, a scripted engine that streams
   :data:`FLOOD_DELTAS` text deltas per turn with no delay.
2. ``bare-http``: a Quart-Trio app with one JSON endpoint
   (``GET /v1/workers/{id}``, a constant body shaped like a Worker summary),
   served by the same Hypercorn with the same settings.
3. ``bare-ws``: a trio-websocket server that, per request frame ``"N"``,
   pushes N pre-serialized events (real ones, captured from ``flood``) one per
   frame.

What is measured (``bench/README.md`` has the details), in interleaved
rounds (yoi and bare alternate which goes first), each with a warm-up:

* ``GET /v1/workers/{id}`` on yoi and on bare-http, at 1 and 32 connections
  (one keep-alive ``httpx.AsyncClient`` per connection).
* Input to ``turn.completed`` on yoi with the ``echo`` engine: ``POST
  .../input``, then read the Worker's event WebSocket (opened before) until the
  ``turn.completed`` of that turn; one Worker, client and socket per
  connection.
* WebSocket delivery of ``flood`` turns to 1, 10 and 100 subscribers of one
  Worker's stream, against bare-ws pushing the same events to as many clients.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio
import trio_websocket

import yoi_runtime

#: Text deltas per ``flood`` turn. A turn is this plus 5 events (accepted,
#: status, started, completed, status), well under the 10,000 a Worker's log
#: retains, and every burst is read by every subscriber before the next one,
#: so no subscriber can fall behind retention.
FLOOD_DELTAS = 4_000

#: Seconds a server may take to print where it listens.
STARTUP_TIMEOUT = 30.0

#: Cap on any one measurement, in seconds (a hang fails the run).
MEASURE_TIMEOUT = 120.0


@attrs.frozen
class Plan:
    """How much one run measures.

    Attributes:
        rounds: Interleaved rounds of every benchmark.
        warmup: Unmeasured requests per connection before each HTTP
            measurement (turns: a fifth of it).
        get_requests: Connections -> measured ``GET`` requests per round.
        turn_requests: Connections -> measured turns per round.
        ws_bursts: Subscribers -> ``flood`` turns (bursts) per round.
    """

    rounds: int
    warmup: int
    get_requests: Mapping[int, int]
    turn_requests: Mapping[int, int]
    ws_bursts: Mapping[int, int]


FULL = Plan(
    rounds=5,
    warmup=50,
    get_requests={1: 2_000, 32: 4_000},
    turn_requests={1: 800, 32: 1_500},
    ws_bursts={1: 12, 10: 3, 100: 1},
)
QUICK = Plan(
    rounds=2,
    warmup=20,
    get_requests={1: 500, 32: 1_000},
    turn_requests={1: 200, 32: 400},
    ws_bursts={1: 3, 10: 1, 100: 1},
)

#: The engines of ``tests/conformance/runtime.toml`` plus ``flood``.
CONFIG = """\
default_engine = "echo"
enable_test_engines = true

[engines.echo]
kind = "scripted"

[engines.flood]
kind = "scripted"
deltas = [{deltas}]
"""

#: What bare-http answers: the shape and size of a real Worker summary.
BARE_SUMMARY: dict[str, Any] = {
    "runtime_id": "rt-2f6e4c399f784764",
    "display_name": None,
    "profile": "companion",
    "engine": {"name": "echo", "kind": "scripted", "model": "scripted"},
    "tools": [],
    "status": "idle",
    "created_at": "2026-11-22T03:52:11.204693+00:00",
    "active_turn": None,
    "last_turn": {
        "turn_id": "t-1",
        "worker_id": "w-4b8cf23ed6552740",
        "status": "completed",
        "input": "ping",
        "accepted_at": "2026-11-22T03:52:11.243425+00:00",
        "started_at": "2026-11-22T03:52:11.243602+00:00",
        "ended_at": "2026-11-22T03:52:11.244346+00:00",
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "error": None,
        "reason": None,
        "input_id": None,
    },
    "turns": 1,
    "usage": {"input_tokens": 1, "output_tokens": 1},
    "last_seq": 7,
    "error": None,
}

_LISTENING = re.compile(rb"listening on (\S+)")


# -- helpers --------------------------------------------------------------------


def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (``/proc``, 10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@attrs.frozen
class Server:
    """A server subprocess: where it listens and its pid (for CPU time)."""

    url: str
    pid: int

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port


async def _drain(stream: trio.abc.ReceiveStream, tail: deque[bytes]) -> None:
    async for chunk in stream:
        tail.append(bytes(chunk))


@contextlib.asynccontextmanager
async def open_server(command: Sequence[str]) -> AsyncIterator[Server]:
    """Run ``command`` until it prints ``listening on URL``; SIGTERM on exit.

    The same steps as :func:`yoi_runtime.testing.open_runtime_process`, for
    any of the three servers (and for the server under cProfile).
    """
    tail: deque[bytes] = deque(maxlen=64)
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                list(command),
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        assert process.stdout is not None
        assert process.stderr is not None
        nursery.start_soon(_drain, process.stderr, tail)
        url = None
        with trio.move_on_after(STARTUP_TIMEOUT):
            buffer = b""
            async for chunk in process.stdout:
                buffer = (buffer + chunk)[-4096:]
                match = _LISTENING.search(buffer)
                if match is not None:
                    url = match.group(1).decode()
                    break
        if url is None:
            process.kill()
            output = b"".join(tail).decode(errors="replace")[-2000:]
            raise RuntimeError(f"{command[2:]} did not start:\n{output}")
        nursery.start_soon(_drain, process.stdout, deque(maxlen=16))
        try:
            yield Server(url, process.pid)
        finally:
            with trio.move_on_after(20, shield=True):
                if process.returncode is None:
                    process.terminate()
                await process.wait()
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_ws(
    host: str, port: int, resource: str
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket whose TCP stream is closed here, whoever closes first.

    ``open_websocket_url`` in trio-websocket 0.12 leaks the socket when the
    server closes first; the bench always closes first, but owns the stream
    anyway. The receive buffer is 64 KiB (trio-websocket's default is 4 KiB).
    """
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, f"{host}:{port}", resource, receive_buffer_size=65536
            )
            try:
                yield ws
            finally:
                with trio.move_on_after(5, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()


class Meter:
    """Wall time, this process's CPU time and the server's CPU time."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid

    def __enter__(self) -> Meter:
        self.started = time.perf_counter_ns()
        self._client = time.process_time()
        self._server = _cpu_seconds(self._pid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = (time.perf_counter_ns() - self.started) / 1e9
        self.client_cpu_s = time.process_time() - self._client
        self.server_cpu_s = _cpu_seconds(self._pid) - self._server

    def sample(self, **values: Any) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            **values,
        }


async def _run_load(
    concurrency: int,
    warmup: int,
    requests: int,
    one: Callable[[int], Awaitable[None]],
    server_pid: int,
) -> dict[str, Any]:
    """Warm every connection up, then share ``requests`` calls of ``one(i)``
    among ``concurrency`` tasks; latencies in ns."""
    async with trio.open_nursery() as nursery:
        for index in range(concurrency):
            nursery.start_soon(_repeat, one, index, warmup)
    remaining = requests
    latencies: list[int] = []
    clock = time.perf_counter_ns

    async def load(index: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = clock()
            await one(index)
            latencies.append(clock() - t0)

    with Meter(server_pid) as meter:
        async with trio.open_nursery() as nursery:
            for index in range(concurrency):
                nursery.start_soon(load, index)
    return meter.sample(count=requests, latencies_ns=latencies)


async def _repeat(one: Callable[[int], Awaitable[None]], index: int, n: int) -> None:
    for _ in range(n):
        await one(index)


# -- 1. HTTP commands -----------------------------------------------------------


async def measure_get(
    server: Server, worker_ids: Sequence[str], concurrency: int, warmup: int, n: int
) -> dict[str, Any]:
    """``GET /v1/workers/{id}`` from ``concurrency`` keep-alive connections."""
    async with contextlib.AsyncExitStack() as stack:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0)
            )
            for _ in range(concurrency)
        ]
        paths = [
            f"/v1/workers/{worker_ids[i % len(worker_ids)]}" for i in range(concurrency)
        ]

        async def one(index: int) -> None:
            response = await clients[index].get(paths[index])
            if response.status_code != 200:
                raise RuntimeError(f"GET answered {response.status_code}")

        return await _run_load(concurrency, warmup, n, one, server.pid)


def _items(frame: str | bytes) -> list[dict[str, Any]]:
    """The items of one frame: a JSON object, or an array of them."""
    value = json.loads(frame)
    return value if isinstance(value, list) else [value]


async def measure_turns(
    server: Server, worker_ids: Sequence[str], concurrency: int, warmup: int, n: int
) -> dict[str, Any]:
    """``POST .../input``, then read the Worker's stream to ``turn.completed``.

    Each connection drives its own Worker (a Worker runs one turn at a time)
    with its own keep-alive client and its own event WebSocket, opened before
    the first input (without ``after``: from then on).
    """
    host, port = server.host_port
    async with contextlib.AsyncExitStack() as stack:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0)
            )
            for _ in range(concurrency)
        ]
        sockets = [
            await stack.enter_async_context(
                open_ws(host, port, f"/v1/workers/{worker_ids[i]}/events")
            )
            for i in range(concurrency)
        ]

        async def one(index: int) -> None:
            worker_id = worker_ids[index]
            response = await clients[index].post(
                f"/v1/workers/{worker_id}/input", json={"text": "ping"}
            )
            if response.status_code != 202:
                raise RuntimeError(f"input answered {response.text}")
            turn_id = response.json()["turn"]["turn_id"]
            while True:
                for item in _items(await sockets[index].get_message()):
                    if (
                        item["type"] == "turn.completed"
                        and item["data"]["turn_id"] == turn_id
                    ):
                        return

        return await _run_load(concurrency, max(1, warmup // 5), n, one, server.pid)


# -- 2. WebSocket delivery ------------------------------------------------------


async def _deliver(
    server: Server,
    resource: str,
    subscribers: int,
    bursts: int,
    per_burst: int,
    trigger: Callable[[], Awaitable[None]] | None,
    first_seq: int | None,
) -> dict[str, Any]:
    """Connect ``subscribers`` clients, then ``bursts`` times: start a burst of
    ``per_burst`` events and wait until every client has read all of it.

    ``trigger`` starts a burst on the server (yoi: an input); None means each
    client asks for it by sending ``"per_burst"`` (bare-ws). ``first_seq`` is
    the ``seq`` before the first burst (yoi, where an item's ``seq`` says how
    far a client got, across gaps); None counts items (bare-ws).
    """
    host, port = server.host_port
    connected = 0
    all_connected = trio.Event()
    go = [trio.Event() for _ in range(bursts)]
    finished = [0] * bursts
    burst_done = [trio.Event() for _ in range(bursts)]
    done_ns = [[0] * bursts for _ in range(subscribers)]
    received = [0] * subscribers
    totals = {"frames": 0, "gaps": 0, "missed": 0}

    async def subscriber(index: int) -> None:
        nonlocal connected
        async with open_ws(host, port, resource) as ws:
            connected += 1
            if connected == subscribers:
                all_connected.set()
            position = first_seq or 0
            for burst in range(bursts):
                await go[burst].wait()
                if trigger is None:
                    await ws.send_message(str(per_burst))
                target = (first_seq or 0) + (burst + 1) * per_burst
                while position < target:
                    items = _items(await ws.get_message())
                    totals["frames"] += 1
                    for item in items:
                        kind = item.get("type")
                        if kind == "stream.gap":
                            totals["gaps"] += 1
                            totals["missed"] += item["resume_after"] - item["after"]
                            position = item["resume_after"]
                        elif kind != "stream.heartbeat":
                            received[index] += 1
                            position = (
                                position + 1 if first_seq is None else item["seq"]
                            )
                done_ns[index][burst] = time.perf_counter_ns()
                finished[burst] += 1
                if finished[burst] == subscribers:
                    burst_done[burst].set()

    starts = [0] * bursts
    async with trio.open_nursery() as nursery:
        for index in range(subscribers):
            nursery.start_soon(subscriber, index)
        await all_connected.wait()
        with Meter(server.pid) as meter:
            for burst in range(bursts):
                starts[burst] = time.perf_counter_ns()
                go[burst].set()
                if trigger is not None:
                    await trigger()
                await burst_done[burst].wait()
    per_subscriber = [
        received[i] / (sum(done_ns[i][b] - starts[b] for b in range(bursts)) / 1e9)
        for i in range(subscribers)
    ]
    return meter.sample(
        subscribers=subscribers,
        bursts=bursts,
        expected=subscribers * bursts * per_burst,
        delivered=sum(received),
        per_subscriber_per_s=per_subscriber,
        **totals,
    )


async def measure_yoi_ws(
    server: Server, worker_id: str, subscribers: int, bursts: int, per_burst: int
) -> dict[str, Any]:
    """``flood`` turns to ``subscribers`` clients of the Worker's stream."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        summary = (await client.get(f"/v1/workers/{worker_id}")).json()["worker"]
        last_seq = summary["last_seq"]

        async def trigger() -> None:
            response = await client.post(
                f"/v1/workers/{worker_id}/input", json={"text": "go"}
            )
            if response.status_code != 202:
                raise RuntimeError(f"input answered {response.text}")

        return await _deliver(
            server,
            f"/v1/workers/{worker_id}/events?after={last_seq}",
            subscribers,
            bursts,
            per_burst,
            trigger,
            last_seq,
        )


async def measure_bare_ws(
    server: Server, subscribers: int, bursts: int, per_burst: int
) -> dict[str, Any]:
    """The same number of events, pre-serialized, one per frame (bare-ws)."""
    return await _deliver(server, "/", subscribers, bursts, per_burst, None, None)


async def capture_flood(server: Server, worker_id: str) -> list[str]:
    """Run one ``flood`` turn with one subscriber; return its items as the
    single-item frames the server would send (``json.dumps`` of each)."""
    host, port = server.host_port
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        summary = (await client.get(f"/v1/workers/{worker_id}")).json()["worker"]
        after = summary["last_seq"]
        frames: list[str] = []
        resource = f"/v1/workers/{worker_id}/events?after={after}"
        async with open_ws(host, port, resource) as ws:
            response = await client.post(
                f"/v1/workers/{worker_id}/input", json={"text": "capture"}
            )
            turn_id = response.json()["turn"]["turn_id"]
            while True:
                for item in _items(await ws.get_message()):
                    frames.append(json.dumps(item))
                    if item.get("data", {}).get("status") == "idle":
                        return frames
                    if item["type"] == "turn.completed":
                        assert item["data"]["turn_id"] == turn_id


# -- the bare servers (each runs in its own subprocess) ------------------------


def _bare_http_app() -> Any:
    from quart import Response
    from quart_trio import QuartTrio

    app = QuartTrio("bare")

    @app.get("/v1/workers/<worker_id>")
    async def get_worker(worker_id: str) -> Response:
        body = {"worker": {"worker_id": worker_id, **BARE_SUMMARY}}
        return Response(json.dumps(body), status=200, content_type="application/json")

    return app


async def serve_bare_http() -> None:
    """Serve :func:`_bare_http_app` with Hypercorn as ``serve_runtime`` does."""
    import hypercorn
    import hypercorn.trio

    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn.trio.serve, _bare_http_app(), config)
        )
        print(f"bare-http listening on {binds[0]}", flush=True)


async def serve_bare_ws(events_path: str) -> None:
    """Per text frame ``"N"`` received, send the next N captured events, one
    pre-serialized JSON object per frame, cycling through the file."""
    frames = (await trio.Path(events_path).read_text(encoding="utf-8")).splitlines()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        index = 0
        try:
            while True:
                count = int(await ws.get_message())
                for _ in range(count):
                    await ws.send_message(frames[index])
                    index = (index + 1) % len(frames)
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        )
        print(f"bare-ws listening on ws://127.0.0.1:{server.port}", flush=True)


# -- the run --------------------------------------------------------------------


def _server_command(config_path: str, profile: str | None = None) -> list[str]:
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", profile]
    return [*prefix, "-m", "yoi_runtime", "--bind", "127.0.0.1:0",
            "--config", config_path]  # fmt: skip


def _self_command(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


async def _create_workers(server: Server, engine: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        ids = []
        for _ in range(count):
            response = await client.post("/v1/workers", json={"engine": engine})
            response.raise_for_status()
            ids.append(response.json()["worker"]["worker_id"])
        return ids


@attrs.define
class Setup:
    """The running servers and the Workers the benchmarks use."""

    yoi: Server
    bare_http: Server
    bare_ws: Server
    echo_ids: list[str]
    flood_id: str
    per_burst: int


@contextlib.asynccontextmanager
async def open_setup(
    workdir: Path, plan: Plan, profile: str | None = None
) -> AsyncIterator[Setup]:
    """Start the three servers, create the Workers, capture the flood events."""
    config = workdir / "runtime.toml"
    words = ", ".join(
        f'"{w} "' for w in ("lorem", "ipsum", "dolor", "sit") * (FLOOD_DELTAS // 4)
    )
    config.write_text(CONFIG.format(deltas=words), encoding="utf-8")
    assert len(words.split(",")) == FLOOD_DELTAS
    async with contextlib.AsyncExitStack() as stack:
        yoi = await stack.enter_async_context(
            open_server(_server_command(str(config), profile))
        )
        bare_http = await stack.enter_async_context(
            open_server(_self_command("--serve-bare-http"))
        )
        connections = max(*plan.get_requests, *plan.turn_requests)
        echo_ids = await _create_workers(yoi, "echo", connections)
        (flood_id,) = await _create_workers(yoi, "flood", 1)
        frames = await capture_flood(yoi, flood_id)
        if len(frames) != FLOOD_DELTAS + 5:
            raise RuntimeError(f"a flood turn had {len(frames)} events")
        events = workdir / "events.jsonl"
        events.write_text("\n".join(frames) + "\n", encoding="utf-8")
        bare_ws = await stack.enter_async_context(
            open_server(_self_command("--serve-bare-ws", str(events)))
        )
        yield Setup(yoi, bare_http, bare_ws, echo_ids, flood_id, len(frames))


def _benchmarks(
    setup: Setup, plan: Plan, scale: float = 1.0
) -> list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]]:
    """Every measurement of one round, as (key, run), yoi and bare adjacent."""

    def n(count: int) -> int:
        return max(1, int(count * scale))

    warmup = n(plan.warmup)
    runs: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = []
    for conns, count in plan.get_requests.items():
        runs.append(
            (
                f"get/yoi/{conns}",
                partial(
                    measure_get, setup.yoi, setup.echo_ids, conns, warmup, n(count)
                ),
            )
        )
        runs.append(
            (
                f"get/bare/{conns}",
                partial(
                    measure_get, setup.bare_http, ["w-bare"], conns, warmup, n(count)
                ),
            )
        )
    for conns, count in plan.turn_requests.items():
        runs.append(
            (
                f"turn/yoi/{conns}",
                partial(
                    measure_turns, setup.yoi, setup.echo_ids, conns, warmup, n(count)
                ),
            )
        )
    for subs, bursts in plan.ws_bursts.items():
        runs.append(
            (
                f"ws/yoi/{subs}",
                partial(
                    measure_yoi_ws,
                    setup.yoi,
                    setup.flood_id,
                    subs,
                    bursts,
                    setup.per_burst,
                ),
            )
        )
        runs.append(
            (
                f"ws/bare/{subs}",
                partial(measure_bare_ws, setup.bare_ws, subs, bursts, setup.per_burst),
            )
        )
    return runs


def _interleave(
    runs: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]], index: int
) -> list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]]:
    """Swap each yoi/bare pair on odd rounds so neither always goes first."""
    if index % 2 == 0:
        return runs
    out = list(runs)
    for i in range(len(out) - 1):
        a, b = out[i][0].split("/"), out[i + 1][0].split("/")
        if a[0] == b[0] and a[2] == b[2] and a[1] == "yoi" and b[1] == "bare":
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


async def run_rounds(
    setup: Setup, plan: Plan, progress: Callable[[str], None]
) -> dict[str, list[dict[str, Any]]]:
    """One unrecorded warm-up pass at a tenth of the size, then the rounds."""
    progress("warm-up pass")
    for _, run in _benchmarks(setup, plan, scale=0.1):
        with trio.fail_after(MEASURE_TIMEOUT):
            await run()
    samples: dict[str, list[dict[str, Any]]] = {}
    for index in range(plan.rounds):
        progress(f"round {index + 1}/{plan.rounds}, load average {_loadavg()}")
        for key, run in _interleave(_benchmarks(setup, plan), index):
            with trio.fail_after(MEASURE_TIMEOUT):
                samples.setdefault(key, []).append(await run())
    return samples


# -- summaries, targets and report ---------------------------------------------


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pool each benchmark's rounds; per-round yoi / bare ratios."""
    out: dict[str, Any] = {}
    for key, runs in samples.items():
        kind = key.split("/")[0]
        wall = sum(r["wall_s"] for r in runs)
        entry: dict[str, Any] = {
            "rounds": len(runs),
            "wall_s": wall,
            "server_cpu_pct": 100 * sum(r["server_cpu_s"] for r in runs) / wall,
            "client_cpu_pct": 100 * sum(r["client_cpu_s"] for r in runs) / wall,
        }
        if kind in ("get", "turn"):
            ordered = sorted(x for r in runs for x in r["latencies_ns"])
            count = sum(r["count"] for r in runs)
            entry |= {
                "requests": count,
                "per_s": count / wall,
                "round_per_s": [r["count"] / r["wall_s"] for r in runs],
                "p50_ms": _percentile(ordered, 0.50) / 1e6,
                "p99_ms": _percentile(ordered, 0.99) / 1e6,
                "server_cpu_us_per_request": 1e6
                * sum(r["server_cpu_s"] for r in runs)
                / count,
            }
        else:
            delivered = sum(r["delivered"] for r in runs)
            each = [x for r in runs for x in r["per_subscriber_per_s"]]
            entry |= {
                "subscribers": runs[0]["subscribers"],
                "delivered": delivered,
                "expected": sum(r["expected"] for r in runs),
                "total_per_s": delivered / wall,
                "round_total_per_s": [r["delivered"] / r["wall_s"] for r in runs],
                "per_subscriber_median_per_s": statistics.median(each),
                "per_subscriber_min_per_s": min(each),
                "items_per_frame": delivered / sum(r["frames"] for r in runs),
                "gaps": sum(r["gaps"] for r in runs),
                "missed": sum(r["missed"] for r in runs),
            }
        out[key] = entry
    for key, entry in out.items():
        kind, who, size = key.split("/")
        rate = "round_per_s" if kind in ("get", "turn") else "round_total_per_s"
        bare = out.get(f"{'get' if kind == 'turn' else kind}/bare/{size}")
        if who == "yoi" and bare is not None:
            ratios = [y / b for y, b in zip(entry[rate], bare[rate], strict=True)]
            entry["vs_bare_rounds"] = ratios
            entry["vs_bare"] = statistics.median(ratios)
    return out


def _check(name: str, measured: str, goal: str, passed: bool) -> dict[str, Any]:
    verdict = "PASS" if passed else "MISS"
    return {"target": name, "measured": measured, "goal": goal, "verdict": verdict}


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets next to what was measured."""
    checks = []
    for conns in (1, 32):
        entry = summary.get(f"get/yoi/{conns}")
        if entry is not None:
            checks.append(
                _check(
                    f"GET worker rate / bare endpoint, {conns} conn.",
                    f"{entry['vs_bare']:.2f}x",
                    ">= 0.8x",
                    entry["vs_bare"] >= 0.8,
                )
            )
    get1 = summary["get/yoi/1"]
    cpu_ms = get1["server_cpu_us_per_request"] / 1e3
    checks.append(
        _check(
            "GET worker server-side time, 1 conn. (*)",
            f"{cpu_ms:.3f} ms",
            "< 1 ms",
            cpu_ms < 1,
        )
    )
    ws1, ws100 = summary["ws/yoi/1"], summary.get("ws/yoi/100")
    checks.append(
        _check(
            "WS events/s to 1 subscriber / bare-ws",
            f"{ws1['vs_bare']:.2f}x",
            ">= 2x",
            ws1["vs_bare"] >= 2,
        )
    )
    if ws100 is not None:
        checks.append(
            _check(
                "WS deliveries/s in total, 100 subscribers",
                f"{ws100['total_per_s']:,.0f}",
                ">= 50,000",
                ws100["total_per_s"] >= 50_000,
            )
        )
    return checks


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(
        [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    )


_NAMES = {
    "get/yoi": "GET /v1/workers/{id}, yoi",
    "get/bare": "GET /v1/workers/{id}, bare",
    "turn/yoi": "input -> turn.completed, yoi",
    "ws/yoi": "yoi Worker stream",
    "ws/bare": "bare trio-websocket",
}


def report(results: dict[str, Any]) -> str:
    meta, summary = results["meta"], results["summary"]
    plan = results["plan"]
    lines = [
        f"yoi-runtime {meta['yoi_runtime']} | {meta['implementation']} "
        f"{meta['python']} | trio {meta['trio']} | hypercorn {meta['hypercorn']} | "
        f"quart-trio {meta['quart_trio']} | trio-websocket {meta['trio_websocket']} "
        f"| httpx {meta['httpx']} | {meta['cpus']} CPUs | {meta['date']}",
        f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
    ]
    if float(meta["loadavg_start"].split()[0]) > 0.5:
        lines.append(
            "WARNING: the machine was busy when this run started; expect noisy numbers."
        )
    rows = []
    for key, entry in summary.items():
        kind, who, size = key.split("/")
        if kind == "ws":
            continue
        ratio = f"{entry['vs_bare']:.2f}x" if "vs_bare" in entry else ""
        rows.append(
            [
                _NAMES[f"{kind}/{who}"],
                size,
                f"{entry['requests']:,}",
                f"{entry['per_s']:,.0f}",
                "-".join(
                    f"{x:,.0f}"
                    for x in (min(entry["round_per_s"]), max(entry["round_per_s"]))
                ),
                ratio,
                f"{entry['p50_ms']:.3f}",
                f"{entry['p99_ms']:.3f}",
                f"{entry['server_cpu_us_per_request']:,.0f}",
                f"{entry['server_cpu_pct']:.0f}",
                f"{entry['client_cpu_pct']:.0f}",
            ]
        )
    lines += [
        "",
        f"HTTP commands ({plan['rounds']} interleaved rounds; "
        f"{plan['warmup']} warm-up requests per connection)",
        _table(
            [
                "benchmark",
                "conns",
                "n",
                "per s",
                "rounds per s",
                "/ bare GET",
                "p50 ms",
                "p99 ms",
                "srv CPU us/req",
                "srv CPU %",
                "client CPU %",
            ],
            rows,
        ),  # fmt: skip
        "(/ bare GET: median of per-round rate ratios to the bare endpoint at the "
        "same connections)",
    ]
    get1, bare1 = summary["get/yoi/1"], summary["get/bare/1"]
    lines.append(
        f"GET, 1 connection, server side: {get1['server_cpu_us_per_request']:,.0f} us "
        f"server CPU per request (mean; bare {bare1['server_cpu_us_per_request']:,.0f}"
        f" us); client p50 {get1['p50_ms']:.3f} ms is an upper bound; yoi p50 - "
        f"bare p50 = {(get1['p50_ms'] - bare1['p50_ms']) * 1e3:,.0f} us."
    )
    rows = []
    for key, entry in summary.items():
        kind, who, size = key.split("/")
        if kind != "ws":
            continue
        ratio = f"{entry['vs_bare']:.2f}x" if "vs_bare" in entry else ""
        rows.append(
            [
                _NAMES[f"{kind}/{who}"],
                size,
                f"{entry['delivered']:,}",
                f"{entry['per_subscriber_median_per_s']:,.0f}",
                f"{entry['total_per_s']:,.0f}",
                "-".join(
                    f"{x:,.0f}"
                    for x in (
                        min(entry["round_total_per_s"]),
                        max(entry["round_total_per_s"]),
                    )
                ),
                ratio,
                f"{entry['items_per_frame']:.1f}",
                f"{entry['gaps']}/{entry['missed']}",
                f"{entry['server_cpu_pct']:.0f}",
                f"{entry['client_cpu_pct']:.0f}",
            ]
        )
    lines += [
        "",
        f"WebSocket delivery ({results['per_burst']:,} events per burst = one flood "
        "turn; every subscriber reads a burst before the next starts)",
        _table(
            [
                "server",
                "subs",
                "delivered",
                "each per s (median)",
                "total per s",
                "rounds total per s",
                "/ bare",
                "items/frame",
                "gaps/missed",
                "srv CPU %",
                "client CPU %",
            ],
            rows,
        ),  # fmt: skip
        "",
        "Targets (from the issue; 2-core machine)",
        _table(
            ["target", "measured", "goal", "verdict"],
            [
                [c["target"], c["measured"], c["goal"], c["verdict"]]
                for c in results["targets"]
            ],
        ),
        "(*) server CPU seconds per request at one connection (mean, from "
        "/proc/PID/stat); see the line under the HTTP table for the bounds.",
    ]
    return "\n".join(lines)


async def run_all(
    plan: Plan, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "yoi_runtime": yoi_runtime.__version__,
        "hypercorn": _version("hypercorn"),
        "quart_trio": _version("quart-trio"),
        "trio_websocket": _version("trio-websocket"),
        "httpx": _version("httpx"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": _loadavg(),
    }
    with tempfile.TemporaryDirectory() as workdir:
        progress("starting servers")
        async with open_setup(Path(workdir), plan) as setup:
            samples = await run_rounds(setup, plan, progress)
            per_burst = setup.per_burst
    meta["loadavg_end"] = _loadavg()
    summary = summarize(samples)
    return {
        "meta": meta,
        "plan": attrs.asdict(plan),
        "per_burst": per_burst,
        "summary": summary,
        "targets": targets(summary),
    }


async def profile_server(plan: Plan, dump: str, top: int) -> None:
    """One round of the yoi benchmarks against the server under cProfile."""
    with tempfile.TemporaryDirectory() as workdir:
        async with open_setup(Path(workdir), plan, profile=dump) as setup:
            for key, run in _benchmarks(setup, plan):
                if "/yoi/" in key:
                    print(f"... {key}", file=sys.stderr, flush=True)
                    await run()
    inside = r"yoi_runtime[/\\]"
    stats = pstats.Stats(dump)
    for title, sort, restriction in (
        ("all functions, by own time", "tottime", ()),
        ("functions in yoi_runtime, by cumulative time", "cumulative", (inside,)),
    ):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(sort).print_stats(*restriction, top)
        body = out.getvalue()
        print(f"== server under cProfile: {title} ==")
        print(body[body.index("   ncalls") :].rstrip())
        print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the yoi-runtime process: HTTP and WebSocket."
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, under 30 s")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="run one round of the yoi benchmarks against the server under "
        "cProfile, write its pstats to PATH and print the hotspots",
    )
    parser.add_argument(
        "--profile-top", type=int, default=30, help="rows per profile table"
    )
    parser.add_argument(
        "--serve-bare-http", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-bare-ws", metavar="EVENTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_bare_http:
        trio.run(serve_bare_http)
        return 0
    if args.serve_bare_ws:
        trio.run(serve_bare_ws, args.serve_bare_ws)
        return 0
    plan = QUICK if args.quick else FULL
    if args.profile:
        trio.run(profile_server, plan, os.path.abspath(args.profile), args.profile_top)
        return 0

    started = time.perf_counter()
    results = trio.run(
        run_all,
        plan,
        args.quick,
        lambda step: print(f"... {step}", file=sys.stderr, flush=True),
    )
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    print(report(results))
    print(f"\n(total {results['meta']['total_s']} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
