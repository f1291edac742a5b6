"""Benchmarks for the ``yoi-runtime`` process: HTTP commands, WebSocket delivery.

Run from the repository root::

    .venv/bin/python bench/bench_server.py            # full run, about 3 minutes
    .venv/bin/python bench/bench_server.py --quick    # smoke run, under 30 seconds
    .venv/bin/python bench/bench_server.py --json results.json
    .venv/bin/python bench/bench_server.py --profile out.pstats  # cProfile the server

The servers run as subprocesses on 127.0.0.1 at a free port, for the whole
run; this process is the load generator (httpx and trio-websocket under Trio)
and nothing else, so on a 2-core machine each side has about one core (the
idle servers use none):

1. ``yoi``: the real ``python -m yoi_runtime --bind 127.0.0.1:0`` with the
   ``echo`` engine of the conformance config plus the :data:`FLOODS`, scripted
   engines that stream many text deltas per turn with no delay.
2. ``bare-http`` (``servers.py http``): a Quart-Trio app with one JSON
   endpoint, ``GET /v1/workers/{id}``, served by the same Hypercorn with the
   same settings.
3. ``bare-ws`` (``servers.py ws``): a trio-websocket server that, per text
   frame ``"N"`` from a client, pushes N pre-serialized events (real ones,
   captured from a ``flood`` turn) one per frame.
4. ``yoi-timed`` and ``bare-timed`` (``servers.py yoi-timed`` / ``http
   --timed``): the same two HTTP servers with their ASGI app wrapped to
   record each request's server-side time, used only for that measurement.

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
* The server-side time of ``GET /v1/workers/{id}`` at one connection, read
  from yoi-timed and bare-timed.
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
import sys
import tempfile
import time
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
from yoi_runtime.testing import open_server_process

#: Scripted engines of the yoi server: name -> text deltas per turn. A turn is
#: that plus 5 events (accepted, status, started, completed, status), well
#: under the 10,000 a Worker's log retains, and every subscriber reads a whole
#: turn (a burst) before the next one starts, so none can fall behind
#: retention (a gap would be counted and reported).
FLOODS = {"flood": 4_000, "flood-small": 400}

#: Seconds a server may take to print where it listens.
STARTUP_TIMEOUT = 30.0

#: Cap on any one measurement, in seconds (a hang fails the run).
MEASURE_TIMEOUT = 120.0

#: Other load (outside the server and this process) above which a
#: measurement is flagged, in percent of one core (only measurements of at
#: least a second in all: /proc counts in 10 ms ticks).
BUSY_OTHER_PCT = 15.0


@attrs.frozen
class Plan:
    """How much one run measures.

    Attributes:
        rounds: Interleaved rounds of every benchmark.
        warmup: Unmeasured requests before each HTTP measurement, shared by
            its connections (at least one each; turns: a fifth of it).
        get_requests: Connections -> measured ``GET`` requests per round.
        turn_requests: Connections -> measured turns per round.
        ws: Subscribers -> (flood engine, bursts per round).
        app_requests: Measured ``GET`` requests per round against the timed
            servers (one connection).
    """

    rounds: int
    warmup: int
    get_requests: Mapping[int, int]
    turn_requests: Mapping[int, int]
    ws: Mapping[int, tuple[str, int]]
    app_requests: int


FULL = Plan(
    rounds=5,
    warmup=100,
    get_requests={1: 800, 32: 1_600},
    turn_requests={1: 400, 32: 800},
    ws={1: ("flood", 5), 10: ("flood", 1), 100: ("flood-small", 1)},
    app_requests=400,
)
QUICK = Plan(
    rounds=2,
    warmup=40,
    get_requests={1: 150, 32: 320},
    turn_requests={1: 80, 32: 160},
    ws={1: ("flood", 1), 10: ("flood-small", 1), 100: ("flood-small", 1)},
    app_requests=100,
)

#: The yoi server's config: ``echo`` as in ``tests/conformance/runtime.toml``;
#: each Worker's event log may hold a whole flood turn (64 MiB, over the
#: default 1 MiB), so every subscriber gets every event of it.
CONFIG = """\
default_engine = "echo"
enable_test_engines = true

[limits]
worker_event_bytes = 67108864

[engines.echo]
kind = "scripted"
"""

#: Deltas of the flood engines, cycled.
WORDS = ("lorem ", "ipsum ", "dolor ", "sit ", "amet, ")

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


@contextlib.asynccontextmanager
async def open_server(command: Sequence[str]) -> AsyncIterator[Server]:
    """Run ``command`` until it prints ``listening on URL``; SIGTERM on exit."""
    async with open_server_process(
        command, _LISTENING, startup_timeout=STARTUP_TIMEOUT
    ) as served:
        yield Server(served.url, served.process.pid)


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


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (steal included), from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time and CPU time: the server's, this process's, everything else's."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._own = os.getpid()

    def _read(self) -> tuple[float, float, float]:
        return (
            _cpu_seconds(self._pid),
            _cpu_seconds(self._own),
            _machine_busy_seconds(),
        )

    def __enter__(self) -> Meter:
        self._before = self._read()
        self.started = time.perf_counter_ns()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = (time.perf_counter_ns() - self.started) / 1e9
        server, client, busy = (
            b - a for a, b in zip(self._before, self._read(), strict=True)
        )
        self.server_cpu_s, self.client_cpu_s = server, client
        self.other_cpu_s = max(0.0, busy - server - client)

    def sample(self, **values: Any) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "other_cpu_s": self.other_cpu_s,
            **values,
        }


def _client(server: Server, connections: int | None = None) -> httpx.AsyncClient:
    """A keep-alive client (``verify=False``: plain HTTP, and it saves loading
    the CA bundle, ~50 ms per client here)."""
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )
    return httpx.AsyncClient(
        base_url=server.url, limits=limits, timeout=30.0, verify=False
    )


async def _run_load(
    concurrency: int,
    warmup: int,
    requests: int,
    one: Callable[[int], Awaitable[None]],
    server_pid: int,
) -> dict[str, Any]:
    """Warm up (``warmup`` calls shared by all connections, at least one
    each), then share ``requests`` calls of ``one(i)`` among ``concurrency``
    tasks; latencies in ns."""
    each = max(1, warmup // concurrency)
    async with trio.open_nursery() as nursery:
        for index in range(concurrency):
            nursery.start_soon(_repeat, one, index, each)
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
        clients = [
            await stack.enter_async_context(_client(server, 1))
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
        clients = [
            await stack.enter_async_context(_client(server, 1))
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


async def measure_app_time(
    server: Server, worker_id: str, warmup: int, n: int
) -> dict[str, Any]:
    """``n`` sequential ``GET /v1/workers/{id}`` on a timed server; returns
    the server-side durations it recorded for them (``servers.timed``)."""
    async with _client(server, 1) as client:
        path = f"/v1/workers/{worker_id}"
        for _ in range(warmup):
            await client.get(path)
        (await client.get("/__timings")).raise_for_status()  # forget warm-up
        with Meter(server.pid) as meter:
            for _ in range(n):
                (await client.get(path)).raise_for_status()
        durations: list[int] = (await client.get("/__timings")).json()
    if len(durations) != n:
        raise RuntimeError(f"{len(durations)} timings for {n} requests")
    return meter.sample(count=n, server_ns=durations)


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
            start = 0 if first_seq is None else first_seq
            position = start
            for burst in range(bursts):
                await go[burst].wait()
                if trigger is None:
                    await ws.send_message(str(per_burst))
                target = start + (burst + 1) * per_burst
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
            await burst_done[-1].wait()  # no closing while others still read

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
    async with _client(server) as client:
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
    async with _client(server) as client:
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


# -- the run --------------------------------------------------------------------


def _yoi_command(config_path: str, profile: str | None = None) -> list[str]:
    """``python -m yoi_runtime`` as ``open_runtime_process`` runs it."""
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", profile]
    return [*prefix, "-m", "yoi_runtime", "--bind", "127.0.0.1:0",
            "--config", config_path]  # fmt: skip


def _servers_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("servers.py")), *args]


async def _create_workers(server: Server, engine: str, count: int) -> list[str]:
    async with _client(server) as client:
        ids = []
        for _ in range(count):
            response = await client.post("/v1/workers", json={"engine": engine})
            response.raise_for_status()
            ids.append(response.json()["worker"]["worker_id"])
        return ids


@attrs.define
class Setup:
    """The running servers and the Workers the benchmarks use.

    Attributes:
        echo_ids: Workers with the ``echo`` engine, one per connection.
        flood_ids: A Worker per flood engine.
        per_burst: Events of one turn of each flood engine (measured).
        timed_id: An ``echo`` Worker on ``yoi_timed``.
    """

    yoi: Server
    bare_http: Server
    bare_ws: Server
    yoi_timed: Server
    bare_timed: Server
    echo_ids: list[str]
    flood_ids: dict[str, str]
    per_burst: dict[str, int]
    timed_id: str


def _config_text() -> str:
    parts = [CONFIG]
    for name, count in FLOODS.items():
        deltas = ", ".join(f'"{WORDS[i % len(WORDS)]}"' for i in range(count))
        parts.append(f'\n[engines.{name}]\nkind = "scripted"\ndeltas = [{deltas}]\n')
    return "".join(parts)


@contextlib.asynccontextmanager
async def open_setup(
    workdir: Path, plan: Plan, profile: str | None = None
) -> AsyncIterator[Setup]:
    """Start the servers, create the Workers, capture the flood events."""
    config = workdir / "runtime.toml"
    config.write_text(_config_text(), encoding="utf-8")
    async with contextlib.AsyncExitStack() as stack:

        async def start(command: list[str]) -> Server:
            return await stack.enter_async_context(open_server(command))

        yoi = await start(_yoi_command(str(config), profile))
        connections = max(*plan.get_requests, *plan.turn_requests)
        echo_ids = await _create_workers(yoi, "echo", connections)
        flood_ids, per_burst = {}, {}
        captured: dict[str, list[str]] = {}
        for name, deltas in FLOODS.items():
            (flood_ids[name],) = await _create_workers(yoi, name, 1)
            captured[name] = await capture_flood(yoi, flood_ids[name])
            per_burst[name] = len(captured[name])
            if per_burst[name] != deltas + 5:
                raise RuntimeError(f"a {name} turn had {per_burst[name]} events")
        events = workdir / "events.jsonl"
        biggest = max(captured.values(), key=len)
        events.write_text("\n".join(biggest) + "\n", encoding="utf-8")
        yoi_args = _yoi_command(str(config))[3:]  # after "python -m yoi_runtime"
        yoi_timed = await start(_servers_command("yoi-timed", *yoi_args))
        (timed_id,) = await _create_workers(yoi_timed, "echo", 1)
        yield Setup(
            yoi=yoi,
            bare_http=await start(_servers_command("http")),
            bare_ws=await start(_servers_command("ws", str(events))),
            yoi_timed=yoi_timed,
            bare_timed=await start(_servers_command("http", "--timed")),
            echo_ids=echo_ids,
            flood_ids=flood_ids,
            per_burst=per_burst,
            timed_id=timed_id,
        )


Run = Callable[[], Awaitable[dict[str, Any]]]


def _benchmarks(
    setup: Setup, plan: Plan, warmup_pass: bool = False
) -> list[tuple[str, Run]]:
    """Every measurement of one round as (key, run), each yoi next to its bare.

    The warm-up pass is a tenth of the HTTP requests and one burst to one
    subscriber per flood engine.
    """
    scale = 0.1 if warmup_pass else 1.0
    warmup = max(1, int(plan.warmup * scale))
    runs: list[tuple[str, Run]] = []
    for conns, count in plan.get_requests.items():
        n = max(conns, int(count * scale))
        runs += [
            (f"get/yoi/{conns}",
             partial(measure_get, setup.yoi, setup.echo_ids, conns, warmup, n)),
            (f"get/bare/{conns}",
             partial(measure_get, setup.bare_http, ["w-bare"], conns, warmup, n)),
        ]  # fmt: skip
    for conns, count in plan.turn_requests.items():
        n = max(conns, int(count * scale))
        runs.append(
            (f"turn/yoi/{conns}",
             partial(measure_turns, setup.yoi, setup.echo_ids, conns, warmup, n))
        )  # fmt: skip
    n = max(1, int(plan.app_requests * scale))
    runs += [
        ("app/yoi/1",
         partial(measure_app_time, setup.yoi_timed, setup.timed_id, warmup, n)),
        ("app/bare/1",
         partial(measure_app_time, setup.bare_timed, "w-bare", warmup, n)),
    ]  # fmt: skip
    ws = [(1, (name, 1)) for name in FLOODS] if warmup_pass else plan.ws.items()
    for subs, (engine, bursts) in ws:
        worker, events = setup.flood_ids[engine], setup.per_burst[engine]
        runs += [
            (f"ws/yoi/{subs}",
             partial(measure_yoi_ws, setup.yoi, worker, subs, bursts, events)),
            (f"ws/bare/{subs}",
             partial(measure_bare_ws, setup.bare_ws, subs, bursts, events)),
        ]  # fmt: skip
    return runs


def _interleave(runs: list[tuple[str, Run]], index: int) -> list[tuple[str, Run]]:
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
    """One unrecorded warm-up pass, then the interleaved rounds."""
    progress("warm-up pass")
    for _, run in _benchmarks(setup, plan, warmup_pass=True):
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


def _pct(runs: Sequence[dict[str, Any]], field: str) -> float:
    return 100 * float(sum(r[field] for r in runs) / sum(r["wall_s"] for r in runs))


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pool each benchmark's rounds; per-round yoi / bare ratios."""
    out: dict[str, Any] = {}
    for key, runs in samples.items():
        wall = sum(r["wall_s"] for r in runs)
        entry: dict[str, Any] = {
            "rounds": len(runs),
            "wall_s": wall,
            "server_cpu_pct": _pct(runs, "server_cpu_s"),
            "client_cpu_pct": _pct(runs, "client_cpu_s"),
            "other_cpu_pct": _pct(runs, "other_cpu_s"),
            "other_cpu_pct_max": max(_pct([r], "other_cpu_s") for r in runs),
        }
        if key.startswith("app/"):
            ordered = sorted(x for r in runs for x in r["server_ns"])
            entry |= {
                "requests": len(ordered),
                "p50_ms": _percentile(ordered, 0.50) / 1e6,
                "p90_ms": _percentile(ordered, 0.90) / 1e6,
                "p99_ms": _percentile(ordered, 0.99) / 1e6,
                "round_p50_ms": [
                    _percentile(sorted(r["server_ns"]), 0.50) / 1e6 for r in runs
                ],
                "server_cpu_us_per_request": 1e6
                * sum(r["server_cpu_s"] for r in runs)
                / len(ordered),
            }
        elif key.startswith("ws/"):
            delivered = sum(r["delivered"] for r in runs)
            each = [x for r in runs for x in r["per_subscriber_per_s"]]
            entry |= {
                "subscribers": runs[0]["subscribers"],
                "events_per_burst": runs[0]["expected"]
                // runs[0]["subscribers"]
                // runs[0]["bursts"],
                "bursts_per_round": runs[0]["bursts"],
                "delivered": delivered,
                "expected": sum(r["expected"] for r in runs),
                "total_per_s": delivered / wall,
                "round_total_per_s": [r["delivered"] / r["wall_s"] for r in runs],
                "per_subscriber_median_per_s": statistics.median(each),
                "per_subscriber_min_per_s": min(each),
                "items_per_frame": delivered / sum(r["frames"] for r in runs),
                "gaps": sum(r["gaps"] for r in runs),
                "missed": sum(r["missed"] for r in runs),
                "server_cpu_us_per_event": 1e6
                * sum(r["server_cpu_s"] for r in runs)
                / delivered,
                "client_cpu_us_per_event": 1e6
                * sum(r["client_cpu_s"] for r in runs)
                / delivered,
            }
        else:
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
                "client_cpu_us_per_request": 1e6
                * sum(r["client_cpu_s"] for r in runs)
                / count,
            }
        out[key] = entry
    for key, entry in out.items():
        kind, who, size = key.split("/")
        rate = "round_total_per_s" if kind == "ws" else "round_per_s"
        bare = out.get(f"{'get' if kind == 'turn' else kind}/bare/{size}")
        if who == "yoi" and bare is not None and kind != "app":
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
        entry = summary[f"get/yoi/{conns}"]
        checks.append(
            _check(
                f"GET worker rate / bare endpoint, {conns} conn.",
                f"{entry['vs_bare']:.2f}x",
                ">= 0.8x",
                entry["vs_bare"] >= 0.8,
            )
        )
    yoi_ms, bare_ms = summary["app/yoi/1"]["p50_ms"], summary["app/bare/1"]["p50_ms"]
    checks.append(
        _check(
            "GET worker server-side p50, 1 conn. (*)",
            f"{yoi_ms:.2f} ms (bare {bare_ms:.2f})",
            "< 1 ms",
            yoi_ms < 1,
        )
    )
    ws1, ws100 = summary["ws/yoi/1"], summary["ws/yoi/100"]
    checks += [
        _check(
            "WS events/s to 1 subscriber / bare-ws",
            f"{ws1['vs_bare']:.2f}x",
            ">= 2x",
            ws1["vs_bare"] >= 2,
        ),
        _check(
            "WS deliveries/s in total, 100 subscribers",
            f"{ws100['total_per_s']:,.0f}",
            ">= 50,000",
            ws100["total_per_s"] >= 50_000,
        ),
    ]
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


def _span(values: Sequence[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


_NAMES = {
    "get/yoi": "GET /v1/workers/{id}, yoi",
    "get/bare": "GET /v1/workers/{id}, bare",
    "turn/yoi": "input -> turn.completed, yoi",
    "ws/yoi": "yoi Worker stream",
    "ws/bare": "bare trio-websocket",
}

_HTTP_HEADERS = ["benchmark", "conns", "n", "per s", "rounds per s", "/ bare GET",
                 "p50 ms", "p99 ms", "srv CPU us/req", "srv CPU %",
                 "client CPU %", "other CPU %"]  # fmt: skip
_WS_HEADERS = ["server", "subs", "events/burst", "delivered", "each per s (median)",
               "total per s", "rounds total per s", "/ bare", "items/frame",
               "gaps/missed", "srv CPU us/event", "client CPU us/event",
               "srv CPU %", "client CPU %", "other CPU %"]  # fmt: skip


def report(results: dict[str, Any]) -> str:
    meta, summary, plan = results["meta"], results["summary"], results["plan"]
    lines = [
        f"yoi-runtime {meta['yoi_runtime']} | {meta['implementation']} "
        f"{meta['python']} | trio {meta['trio']} | hypercorn {meta['hypercorn']} | "
        f"quart-trio {meta['quart_trio']} | trio-websocket {meta['trio_websocket']} "
        f"| httpx {meta['httpx']} | {meta['cpus']} CPUs | {meta['date']}",
        f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
    ]
    http, ws, app = [], [], []
    for key, e in summary.items():
        kind, who, size = key.split("/")
        ratio = f"{e['vs_bare']:.2f}x" if "vs_bare" in e else ""
        cpu = [f"{e['server_cpu_pct']:.0f}", f"{e['client_cpu_pct']:.0f}",
               f"{e['other_cpu_pct']:.0f}"]  # fmt: skip
        if kind == "app":
            app.append(
                [f"GET /v1/workers/{{id}}, {who}", f"{e['requests']:,}",
                 f"{e['p50_ms']:.3f}", _span([x * 1e3 for x in e["round_p50_ms"]]),
                 f"{e['p90_ms']:.3f}", f"{e['p99_ms']:.3f}",
                 f"{e['server_cpu_us_per_request']:,.0f}"]
            )  # fmt: skip
        elif kind == "ws":
            ws.append(
                [_NAMES[f"{kind}/{who}"], size, f"{e['events_per_burst']:,}",
                 f"{e['delivered']:,}", f"{e['per_subscriber_median_per_s']:,.0f}",
                 f"{e['total_per_s']:,.0f}", _span(e["round_total_per_s"]), ratio,
                 f"{e['items_per_frame']:.1f}", f"{e['gaps']}/{e['missed']}",
                 f"{e['server_cpu_us_per_event']:.1f}",
                 f"{e['client_cpu_us_per_event']:.1f}", *cpu]
            )  # fmt: skip
        else:
            http.append(
                [_NAMES[f"{kind}/{who}"], size, f"{e['requests']:,}",
                 f"{e['per_s']:,.0f}", _span(e["round_per_s"]), ratio,
                 f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}",
                 f"{e['server_cpu_us_per_request']:,.0f}", *cpu]
            )  # fmt: skip
    get1, bare1 = summary["get/yoi/1"], summary["get/bare/1"]
    lines += [
        "",
        f"HTTP commands ({plan['rounds']} interleaved rounds, "
        f"{plan['warmup']} warm-up requests before each)",
        _table(_HTTP_HEADERS, http),
        "/ bare GET: median of the per-round rate ratios to the bare endpoint at "
        "as many connections.",
        "CPU %: of one core, over the measured wall time (/proc); other = the "
        "machine's busy time minus server and client.",
        "",
        "Server-side time at 1 connection, measured inside the timed servers: "
        "ASGI app called -> last body chunk handed to Hypercorn",
        "(Quart + handler; without Hypercorn's HTTP parsing and socket writes, "
        "which the server CPU per request includes)",
        _table(
            [
                "request",
                "n",
                "p50 ms",
                "rounds p50 us",
                "p90 ms",
                "p99 ms",
                "srv CPU us/req",
            ],
            app,
        ),  # fmt: skip
        f"For comparison, from the client: yoi p50 - bare p50 = "
        f"{(get1['p50_ms'] - bare1['p50_ms']) * 1e3:,.0f} us at 1 connection.",
        "",
        f"WebSocket delivery ({plan['rounds']} interleaved rounds; a burst is one "
        "flood turn, read whole by every subscriber before the next)",
        _table(_WS_HEADERS, ws),
        "",
        "Targets (from the issue; 2-core machine)",
        _table(
            ["target", "measured", "goal", "verdict"],
            [
                [c["target"], c["measured"], c["goal"], c["verdict"]]
                for c in results["targets"]
            ],
        ),
        "(*) p50 of the in-process ASGI time above; with Hypercorn's share, the "
        "server CPU per request is in the HTTP table.",
    ]
    busy = [
        key
        for key, e in summary.items()
        if e["other_cpu_pct"] > BUSY_OTHER_PCT and e["wall_s"] >= 1.0
    ]
    if busy:
        lines.append(
            f"WARNING: other processes used more than {BUSY_OTHER_PCT:.0f}% of a "
            f"core during: {', '.join(busy)}; expect noise."
        )
    return "\n".join(lines)


def _meta(quick: bool) -> dict[str, Any]:
    return {
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


async def run_all(
    plan: Plan, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    meta = _meta(quick)
    with tempfile.TemporaryDirectory() as workdir:
        progress("starting servers")
        async with open_setup(Path(workdir), plan) as setup:
            samples = await run_rounds(setup, plan, progress)
    meta["loadavg_end"] = _loadavg()
    summary = summarize(samples)
    return {
        "meta": meta,
        "plan": attrs.asdict(plan),
        "summary": summary,
        "targets": targets(summary),
    }


async def profile_server(plan: Plan, dump: str, top: int) -> None:
    """One round of the yoi benchmarks against ``yoi-runtime`` under cProfile
    (the timed servers are started too, but not measured)."""
    with tempfile.TemporaryDirectory() as workdir:
        async with open_setup(Path(workdir), plan, profile=dump) as setup:
            for key, run in _benchmarks(setup, plan):
                if "/yoi/" in key and not key.startswith("app/"):
                    print(f"... {key}", file=sys.stderr, flush=True)
                    await run()
    # Leaving open_setup sent SIGTERM: the server drained and cProfile wrote.
    inside = r"yoi_runtime[/\\]"
    for title, sort, restriction in (
        ("all functions, by own time", "tottime", ()),
        ("functions in yoi_runtime, by own time", "tottime", (inside,)),
        ("functions in yoi_runtime, by cumulative time", "cumulative", (inside,)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(dump, stream=out).sort_stats(sort)
        stats.print_stats(*restriction, top)
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
        "cProfile, keep its pstats in PATH and print the hotspots",
    )
    parser.add_argument(
        "--profile-top", type=int, default=30, help="rows per profile table"
    )
    args = parser.parse_args(argv)
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
