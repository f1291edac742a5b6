"""Benchmarks for yoi-runtime: turn round trips and idle Workers.

Run from the repository root::

    .venv/bin/python bench/bench_runtime.py            # full run, ~1-2 minutes
    .venv/bin/python bench/bench_runtime.py --quick    # smoke run, ~15 seconds
    .venv/bin/python bench/bench_runtime.py --json results.json
    .venv/bin/python bench/bench_runtime.py --profile  # cProfile the yoi round trip

What it measures (``bench/README.md`` has the details):

1. ``trio``: a bare Trio request/reply over two unbuffered memory channels.
2. ``yoi``: one Worker's turn round trip with the scripted engine, from
   ``Runtime.send_input`` until the subscriber has read ``turn.completed``.
3. ``autogen``: ``SingleThreadedAgentRuntime.send_message`` to a trivial
   ``RoutedAgent`` that replies (asyncio, same process, run afterwards).
4. Idle Workers: wall time and RSS to create 10,000 and 100,000 Workers (and,
   for reference, bare parked Trio tasks), each in a fresh subprocess, with
   the default GC and with the GC disabled around the creation loop.

Latencies are per round trip (``time.perf_counter_ns``); a rate is the number
of measured round trips divided by the wall time of the measured loop.
"""

import argparse
import asyncio
import cProfile
import datetime
import gc
import io
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any

import trio
import trio.testing

import yoi_runtime

#: Round-trip iterations: (warm-up, measured) for a full and a --quick run.
FULL_ITERATIONS = (1_000, 20_000)
QUICK_ITERATIONS = (200, 3_000)

#: Idle populations: (kind, count, gc mode) measured in a full and a --quick run.
FULL_IDLE = [
    (kind, count, mode)
    for count in (10_000, 100_000)
    for kind in ("worker", "task")
    for mode in ("default", "disabled")
]
QUICK_IDLE = [
    (kind, 10_000, mode)
    for kind in ("worker", "task")
    for mode in ("default", "disabled")
]

#: Seconds a child measuring idle Workers may take before it is abandoned.
CHILD_TIMEOUT = 120.0


# -- statistics -----------------------------------------------------------------


def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _summarize(name: str, samples_ns: list[int], wall_ns: int) -> dict[str, Any]:
    """Rate (per second of wall time) and latency percentiles in microseconds."""
    ordered = sorted(samples_ns)
    return {
        "name": name,
        "iterations": len(samples_ns),
        "wall_s": wall_ns / 1e9,
        "per_s": len(samples_ns) / (wall_ns / 1e9),
        "mean_us": sum(samples_ns) / len(samples_ns) / 1e3,
        "p50_us": _percentile(ordered, 0.50) / 1e3,
        "p99_us": _percentile(ordered, 0.99) / 1e3,
        "max_us": ordered[-1] / 1e3,
    }


def _rss_bytes() -> int:
    """The process's resident set size, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# -- 1. bare Trio request/reply ------------------------------------------------


async def _trio_roundtrip(warmup: int, iterations: int) -> dict[str, Any]:
    request_send, request_receive = trio.open_memory_channel[int](0)
    reply_send, reply_receive = trio.open_memory_channel[int](0)

    async def serve_echo() -> None:
        async with reply_send:
            async for request in request_receive:
                await reply_send.send(request)

    samples: list[int] = []
    clock = time.perf_counter_ns
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo)
        async with request_send:
            for i in range(warmup):
                await request_send.send(i)
                await reply_receive.receive()
            started = clock()
            for i in range(iterations):
                t0 = clock()
                await request_send.send(i)
                await reply_receive.receive()
                samples.append(clock() - t0)
            wall = clock() - started
    return _summarize("trio request/reply (memory channels)", samples, wall)


# -- 2. yoi-runtime turn round trip -------------------------------------------


async def _yoi_roundtrip(warmup: int, iterations: int) -> dict[str, Any]:
    completed = yoi_runtime.EventType.TURN_COMPLETED
    clock = time.perf_counter_ns
    samples: list[int] = []
    async with yoi_runtime.open_runtime(
        {"scripted": yoi_runtime.ScriptedEngine()}
    ) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        subscription = runtime.subscribe(worker_id)

        async def one_turn() -> None:
            turn = await runtime.send_input(worker_id, "ping")
            turn_id = turn.turn_id
            while True:
                for item in await subscription.receive_batch():
                    if (
                        isinstance(item, yoi_runtime.Event)
                        and item.type == completed
                        and item.data["turn_id"] == turn_id
                    ):
                        return

        for _ in range(warmup):
            await one_turn()
        started = clock()
        for _ in range(iterations):
            t0 = clock()
            await one_turn()
            samples.append(clock() - t0)
        wall = clock() - started
    return _summarize("yoi turn (scripted engine)", samples, wall)


# -- 3. autogen-core ----------------------------------------------------------


def _autogen_roundtrip(warmup: int, iterations: int) -> dict[str, Any]:
    """send_message round trips to a trivial agent (asyncio.run, same process)."""
    # Imported here: autogen-core is optional (the ``bench`` extra).
    from dataclasses import dataclass

    from autogen_core import (
        AgentId,
        MessageContext,
        RoutedAgent,
        SingleThreadedAgentRuntime,
        message_handler,
    )

    @dataclass
    class Ping:
        text: str

    @dataclass
    class Pong:
        text: str

    class EchoAgent(RoutedAgent):
        def __init__(self) -> None:
            super().__init__("echoes a Ping as a Pong")

        # autogen reads these annotations at decoration time (get_type_hints),
        # which is why this module does not use ``from __future__ import annotations``.
        @message_handler
        async def on_ping(self, message: Ping, ctx: MessageContext) -> Pong:
            return Pong("echo: " + message.text)

    async def main() -> dict[str, Any]:
        runtime = SingleThreadedAgentRuntime()
        await EchoAgent.register(runtime, "echo", EchoAgent)
        agent = AgentId("echo", "default")
        runtime.start()
        clock = time.perf_counter_ns
        samples: list[int] = []
        try:
            for _ in range(warmup):
                await runtime.send_message(Ping("ping"), agent)
            started = clock()
            for _ in range(iterations):
                t0 = clock()
                reply = await runtime.send_message(Ping("ping"), agent)
                samples.append(clock() - t0)
            wall = clock() - started
            assert isinstance(reply, Pong), reply
        finally:
            await runtime.stop_when_idle()
            await runtime.close()
        return _summarize("autogen-core send_message", samples, wall)

    return asyncio.run(main())


# -- 4. idle Workers (one fresh subprocess per measurement) -------------------


async def _measure_population(
    create: Callable[[], Awaitable[None]], count: int, gc_mode: str
) -> dict[str, Any]:
    """Time ``create()`` until every new task is parked; RSS before and after."""
    clock = time.perf_counter
    await trio.testing.wait_all_tasks_blocked()
    gc.collect()
    rss_before = _rss_bytes()
    if gc_mode == "disabled":
        gc.disable()
    started = clock()
    await create()
    loop_done = clock()
    # Until every task has run up to its first blocking point (a Worker's
    # actor: parked on its mailbox).
    await trio.testing.wait_all_tasks_blocked()
    parked = clock()
    gc.enable()
    gc.collect()
    rss_after = _rss_bytes()
    return {
        "count": count,
        "gc": gc_mode,
        "loop_s": loop_done - started,
        "create_s": parked - started,
        "rss_delta_bytes": rss_after - rss_before,
        "rss_per_item_bytes": (rss_after - rss_before) / count,
    }


async def _idle_population(kind: str, count: int, gc_mode: str) -> dict[str, Any]:
    """Create ``count`` idle Workers (or bare parked tasks) and measure them."""
    clock = time.perf_counter
    if kind == "worker":
        async with yoi_runtime.open_runtime(
            {"scripted": yoi_runtime.ScriptedEngine()}
        ) as runtime:

            async def create_workers() -> None:
                for _ in range(count):
                    await runtime.create_worker()

            result = await _measure_population(create_workers, count, gc_mode)
            summary = await runtime.summary()
            assert summary.workers["idle"] == count, summary.workers
            closing = clock()
        # Leaving open_runtime stops every Worker and waits for its actor.
    elif kind == "task":
        release = trio.Event()
        async with trio.open_nursery() as nursery:

            async def start_tasks() -> None:
                for _ in range(count):
                    nursery.start_soon(release.wait)
                await trio.lowlevel.checkpoint()

            result = await _measure_population(start_tasks, count, gc_mode)
            closing = clock()
            release.set()
    else:
        raise ValueError(f"unknown population kind {kind!r}")
    return {"kind": kind, **result, "close_s": clock() - closing}


def _run_idle_child(kind: str, count: int, gc_mode: str) -> dict[str, Any]:
    """Measure one idle population in a fresh interpreter (clean RSS)."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child-idle", f"{kind}:{count}:{gc_mode}"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"idle child {kind}:{count}:{gc_mode} failed:\n{completed.stderr}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# -- profiling ----------------------------------------------------------------


def _profile_yoi(iterations: int, top: int, dump: str | None) -> None:
    """Run the yoi round trip under cProfile and print the hotspots."""
    trio.run(_yoi_roundtrip, 200, 200)  # warm caches outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(_yoi_roundtrip, 0, iterations)
    profiler.disable()
    if dump is not None:
        profiler.dump_stats(dump)
    for title, restriction in (
        ("all functions, by own time", ()),
        ("functions in yoi_runtime, by own time", (r"yoi_runtime[/\\]",)),
        ("functions in yoi_runtime, by cumulative time", (r"yoi_runtime[/\\]",)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative" if "cumulative" in title else "tottime")
        stats.print_stats(*restriction, top)
        print(f"== {title} ({iterations:,} turns under cProfile) ==")
        # Drop pstats' preamble (totals and the restriction lines).
        body = out.getvalue()
        print(body[body.index("   ncalls") :].rstrip())
        print()


# -- report -------------------------------------------------------------------


def _check(
    name: str, measured: str, target: str, passed: bool | None
) -> dict[str, Any]:
    verdict = "SKIP" if passed is None else ("PASS" if passed else "MISS")
    return {"target": name, "measured": measured, "goal": target, "verdict": verdict}


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    trio_rt, yoi_rt = results["trio"], results["yoi"]
    autogen_rt = results.get("autogen")
    idle = {(r["kind"], r["count"], r["gc"]): r for r in results["idle"]}
    checks = [
        _check(
            "yoi turn rate / bare Trio rate",
            f"{yoi_rt['per_s'] / trio_rt['per_s']:.3f}x",
            ">= 0.25x",
            yoi_rt["per_s"] >= 0.25 * trio_rt["per_s"],
        ),
        _check(
            "yoi turn rate / autogen-core rate",
            "n/a"
            if autogen_rt is None
            else f"{yoi_rt['per_s'] / autogen_rt['per_s']:.2f}x",
            ">= 3x",
            None if autogen_rt is None else yoi_rt["per_s"] >= 3 * autogen_rt["per_s"],
        ),
        _check(
            "yoi turn p50 latency",
            f"{yoi_rt['p50_us']:.1f} us",
            "< 100 us",
            yoi_rt["p50_us"] < 100,
        ),
    ]
    for mode in ("default", "disabled"):
        small = idle.get(("worker", 10_000, mode))
        large = idle.get(("worker", 100_000, mode))
        label = f"(gc {mode})"
        checks.append(
            _check(
                f"10,000 Workers create time {label}",
                "n/a" if small is None else f"{small['create_s']:.3f} s",
                "< 0.5 s",
                None if small is None else small["create_s"] < 0.5,
            )
        )
        checks.append(
            _check(
                f"10,000 Workers RSS per Worker {label}",
                "n/a"
                if small is None
                else f"{small['rss_per_item_bytes'] / 1024:.2f} KiB",
                "<= 6 KiB",
                None if small is None else small["rss_per_item_bytes"] <= 6 * 1024,
            )
        )
        checks.append(
            _check(
                f"100,000 Workers create time {label}",
                "n/a (--quick)" if large is None else f"{large['create_s']:.2f} s",
                "< 6 s",
                None if large is None else large["create_s"] < 6,
            )
        )
    return checks


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(
        [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    )


def _print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(
        f"yoi-runtime {meta['yoi_runtime']} | Python {meta['python']} | "
        f"trio {meta['trio']} | autogen-core {meta['autogen_core']} | "
        f"{meta['cpus']} CPUs | load avg at start {meta['loadavg_start']}"
    )
    print()
    trio_rate = results["trio"]["per_s"]
    rows = []
    for key in ("trio", "yoi", "autogen"):
        r = results.get(key)
        if r is None:
            continue
        rows.append(
            [
                r["name"],
                f"{r['iterations']:,}",
                f"{r['per_s']:,.0f}",
                f"{r['p50_us']:.1f}",
                f"{r['p99_us']:.1f}",
                f"{r['per_s'] / trio_rate:.3f}x",
            ]
        )
    print("Round trips")
    print(_table(["benchmark", "n", "per s", "p50 us", "p99 us", "vs trio"], rows))
    if results.get("autogen") is not None:
        ratio = results["yoi"]["per_s"] / results["autogen"]["per_s"]
        print(f"yoi / autogen-core rate: {ratio:.2f}x")
    else:
        print(f"autogen-core: skipped ({results.get('autogen_skipped')})")
    print()
    rows = [
        [
            f"{'Workers' if r['kind'] == 'worker' else 'bare tasks'} x {r['count']:,}",
            r["gc"],
            f"{r['loop_s']:.3f}",
            f"{r['create_s']:.3f}",
            f"{r['count'] / r['create_s']:,.0f}",
            f"{r['rss_per_item_bytes']:,.0f}",
            f"{r['rss_per_item_bytes'] / 1024:.2f}",
            f"{r['close_s']:.3f}",
        ]
        for r in results["idle"]
    ]
    print("Idle populations (fresh subprocess each)")
    print(
        _table(
            [
                "population",
                "gc",
                "loop s",
                "create s",
                "per s",
                "RSS B/each",
                "KiB/each",
                "close s",
            ],
            rows,
        )
    )
    print()
    print("Targets (from the issue, 2-core machine)")
    print(
        _table(
            ["target", "measured", "goal", "verdict"],
            [
                [c["target"], c["measured"], c["goal"], c["verdict"]]
                for c in results["targets"]
            ],
        )
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run_all(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    warmup, iterations = QUICK_ITERATIONS if quick else FULL_ITERATIONS
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "trio": trio.__version__,
            "yoi_runtime": yoi_runtime.__version__,
            "autogen_core": _version("autogen-core"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "warmup": warmup,
            "iterations": iterations,
        }
    }
    progress("trio request/reply")
    results["trio"] = trio.run(_trio_roundtrip, warmup, iterations)
    progress("yoi turn round trip")
    results["yoi"] = trio.run(_yoi_roundtrip, warmup, iterations)
    progress("autogen-core send_message")
    try:
        results["autogen"] = _autogen_roundtrip(warmup, iterations)
    except ImportError as exc:
        results["autogen"] = None
        results["autogen_skipped"] = f"autogen-core not importable: {exc}"
    results["idle"] = []
    for kind, count, mode in QUICK_IDLE if quick else FULL_IDLE:
        progress(f"idle {kind} x {count:,} (gc {mode})")
        results["idle"].append(_run_idle_child(kind, count, mode))
    results["meta"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = _targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations, no 100,000 Workers"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only cProfile the yoi round trip and print the hotspots",
    )
    parser.add_argument(
        "--profile-turns", type=int, default=20_000, help="turns to profile"
    )
    parser.add_argument("--profile-top", type=int, default=25, help="rows to print")
    parser.add_argument("--profile-dump", metavar="PATH", help="write pstats data here")
    parser.add_argument("--child-idle", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_idle:
        kind, count, mode = args.child_idle.split(":")
        print(json.dumps(trio.run(_idle_population, kind, int(count), mode)))
        return 0
    if args.profile:
        _profile_yoi(args.profile_turns, args.profile_top, args.profile_dump)
        return 0

    started = time.perf_counter()
    results = _run_all(
        args.quick, lambda step: print(f"... {step}", file=sys.stderr, flush=True)
    )
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    print(file=sys.stderr)
    _print_report(results)
    print(f"\n(total {results['meta']['total_s']} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
