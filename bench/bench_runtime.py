"""Benchmarks for yoi-runtime: turn round trips and idle Workers.

Run from the repository root::

    .venv/bin/python bench/bench_runtime.py            # full run, about a minute
    .venv/bin/python bench/bench_runtime.py --quick    # smoke run, about 10 seconds
    .venv/bin/python bench/bench_runtime.py --json results.json
    .venv/bin/python bench/bench_runtime.py --profile  # cProfile the yoi round trip
    .venv/bin/python bench/bench_runtime.py --profile-idle 10000  # Worker creation

What it measures (``bench/README.md`` has the details):

1. ``trio``: a bare Trio request/reply over two unbuffered memory channels.
2. ``yoi``: one Worker's turn round trip with the scripted engine, from
   ``Runtime.send_input`` until the subscriber has read ``turn.completed``.
3. ``autogen``: ``SingleThreadedAgentRuntime.send_message`` to a trivial
   ``RoutedAgent`` that replies (asyncio, same process, never concurrently
   with Trio).
4. Idle populations: wall time and RSS to create 10,000 and 100,000 Workers
   (and, for reference, bare parked Trio tasks), each in a fresh subprocess,
   with the default GC and with the GC disabled around the creation loop.

The three round trips run in interleaved rounds (trio, yoi, autogen, trio,
yoi, ...), each round a fresh event loop with its own warm-up, so a change in
background load hits all three alike; ratios are the median of the per-round
ratios. Latencies are per round trip (``time.perf_counter_ns``), pooled over
the rounds; a rate is measured round trips divided by the measured loop's
wall time.
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
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any

import attrs
import trio
import trio.testing

import yoi_runtime


@attrs.frozen
class Plan:
    """How much one run measures.

    Attributes:
        rounds: Interleaved rounds of the three round-trip benchmarks.
        warmup: Unmeasured round trips at the start of every round.
        iterations: Measured round trips per benchmark, over all rounds.
        idle: ``(kind, count, gc mode, repeats)`` idle populations, each
            repeat measured in a fresh subprocess.
    """

    rounds: int
    warmup: int
    iterations: int
    idle: Sequence[tuple[str, int, str, int]]


FULL = Plan(
    rounds=5,
    warmup=1_000,
    iterations=20_000,
    idle=[
        (kind, count, mode, 3 if count == 10_000 else 1)
        for count in (10_000, 100_000)
        for kind in ("worker", "task")
        for mode in ("default", "disabled")
    ],
)
QUICK = Plan(
    rounds=3,
    warmup=200,
    iterations=3_000,
    idle=[
        (kind, 10_000, mode, 1)
        for kind in ("worker", "task")
        for mode in ("default", "disabled")
    ],
)

#: Seconds one idle-population subprocess may take before it is abandoned.
CHILD_TIMEOUT = 180.0

# Goals from issue 13 (item 6), checked against same-run figures.
#: yoi turn rate / bare Trio request-reply rate, at least.
GOAL_VS_TRIO = 0.30
#: yoi turn rate / autogen-core send_message rate, at least.
GOAL_VS_AUTOGEN = 3.0
#: yoi turn round trip p50, in microseconds, under.
GOAL_P50_US = 60.0
#: Seconds to create N idle Workers with the default garbage collector, under.
GOAL_CREATE_S = {10_000: 0.5, 100_000: 6.0}
#: Resident memory per idle Worker, in bytes, at most.
GOAL_RSS_PER_WORKER = 5 * 1024

#: A round trip benchmark: (warm-up, iterations) -> (latencies ns, wall ns).
Samples = tuple[list[int], int]


# -- helpers --------------------------------------------------------------------


def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _rss_bytes() -> int:
    """The process's resident set size in bytes, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- 1. bare Trio request/reply ------------------------------------------------


async def _trio_roundtrip(warmup: int, iterations: int) -> Samples:
    request_send, request_receive = trio.open_memory_channel[int](0)
    reply_send, reply_receive = trio.open_memory_channel[int](0)

    async def serve_echo() -> None:
        async with reply_send:
            async for request in request_receive:
                await reply_send.send(request)

    clock = time.perf_counter_ns
    samples: list[int] = []
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
    return samples, wall


# -- 2. yoi-runtime turn round trip -------------------------------------------


async def _yoi_roundtrip(warmup: int, iterations: int) -> Samples:
    completed = yoi_runtime.EventType.TURN_COMPLETED
    clock = time.perf_counter_ns
    samples: list[int] = []
    async with yoi_runtime.open_runtime(
        {"scripted": yoi_runtime.ScriptedEngine()}
    ) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        subscription = runtime.subscribe(worker_id)

        async def one_turn() -> None:
            turn_id = (await runtime.send_input(worker_id, "ping")).turn_id
            while True:
                for item in await subscription.receive_batch():
                    if (
                        isinstance(item, yoi_runtime.Event)
                        and item.type == completed
                        and isinstance(item.data, yoi_runtime.TurnCompletedData)
                        and item.data.turn_id == turn_id
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
    return samples, wall


# -- 3. autogen-core ----------------------------------------------------------


def _autogen_roundtrip(warmup: int, iterations: int) -> Samples:
    """send_message round trips to a trivial agent, in its own asyncio.run."""
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
            super().__init__("answers a Ping with a Pong")

        # autogen reads these annotations when decorating (get_type_hints on
        # local classes), which is why this module does not use
        # ``from __future__ import annotations``.
        @message_handler
        async def on_ping(self, message: Ping, ctx: MessageContext) -> Pong:
            return Pong("echo: " + message.text)

    async def main() -> Samples:
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
        finally:
            await runtime.stop_when_idle()
            await runtime.close()
        if not isinstance(reply, Pong):
            raise RuntimeError(f"autogen agent answered {reply!r}")
        return samples, wall

    return asyncio.run(main())


def _autogen_unavailable() -> str | None:
    try:
        import autogen_core  # noqa: F401
    except ImportError as exc:
        return f"autogen-core is not importable ({exc}); pip install -e '.[bench]'"
    return None


def _roundtrips(
    plan: Plan, progress: Callable[[str], None]
) -> tuple[dict[str, Any], str | None]:
    """Run the round-trip benchmarks in interleaved rounds; summarize each."""
    benches: dict[str, tuple[str, Callable[[int, int], Samples]]] = {
        "trio": (
            "trio request/reply (memory channels)",
            lambda w, n: trio.run(_trio_roundtrip, w, n),
        ),
        "yoi": (
            "yoi turn (scripted engine)",
            lambda w, n: trio.run(_yoi_roundtrip, w, n),
        ),
        "autogen": ("autogen-core send_message", _autogen_roundtrip),
    }
    skipped = _autogen_unavailable()
    if skipped is not None:
        del benches["autogen"]
    per_round = plan.iterations // plan.rounds
    samples: dict[str, list[int]] = {key: [] for key in benches}
    walls: dict[str, list[int]] = {key: [] for key in benches}
    cpu: dict[str, float] = dict.fromkeys(benches, 0.0)
    for index in range(plan.rounds):
        progress(f"round trips, round {index + 1}/{plan.rounds}")
        for key, (_, run) in benches.items():
            started = time.process_time()
            latencies, wall = run(plan.warmup, per_round)
            cpu[key] += time.process_time() - started
            samples[key] += latencies
            walls[key].append(wall)
    results: dict[str, Any] = {}
    for key, (name, _) in benches.items():
        ordered = sorted(samples[key])
        rates = [per_round / (wall / 1e9) for wall in walls[key]]
        results[key] = {
            "name": name,
            "iterations": len(ordered),
            "rounds": plan.rounds,
            "warmup_per_round": plan.warmup,
            "per_s": len(ordered) / (sum(walls[key]) / 1e9),
            "round_per_s": rates,
            "mean_us": sum(ordered) / len(ordered) / 1e3,
            "p50_us": _percentile(ordered, 0.50) / 1e3,
            "p99_us": _percentile(ordered, 0.99) / 1e3,
            "max_us": ordered[-1] / 1e3,
            # This process's CPU time per round trip, warm-ups and loop setup
            # included: less sensitive to other jobs than wall time.
            "cpu_us": cpu[key] / (plan.rounds * (plan.warmup + per_round)) * 1e6,
        }
    for key in results:
        if key != "yoi":
            ratios = [
                yoi / other
                for yoi, other in zip(
                    results["yoi"]["round_per_s"],
                    results[key]["round_per_s"],
                    strict=True,
                )
            ]
            results["yoi"][f"vs_{key}_rounds"] = ratios
            results["yoi"][f"vs_{key}"] = statistics.median(ratios)
    return results, skipped


# -- 4. idle populations (one fresh subprocess per measurement) ----------------


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
    # Until every new task has run up to its first blocking point (a Worker's
    # actor: parked on its mailbox).
    await trio.testing.wait_all_tasks_blocked()
    parked = clock()
    gc.enable()
    gc.collect()
    collected = clock()
    rss_after = _rss_bytes()
    return {
        "count": count,
        "gc": gc_mode,
        "loop_s": loop_done - started,
        "create_s": parked - started,
        "gc_collect_s": collected - parked,
        "rss_delta_bytes": rss_after - rss_before,
        "rss_per_item_bytes": (rss_after - rss_before) / count,
    }


async def _idle_population(kind: str, count: int, gc_mode: str) -> dict[str, Any]:
    """Create ``count`` idle Workers (or bare parked tasks) and measure them."""
    clock = time.perf_counter
    if kind == "worker":
        # Above the default cap of 1,000 Workers per Runtime.
        limits = yoi_runtime.Limits(max_workers=count)
        async with yoi_runtime.open_runtime(
            {"scripted": yoi_runtime.ScriptedEngine()}, limits=limits
        ) as runtime:

            async def create_workers() -> None:
                for _ in range(count):
                    await runtime.create_worker()

            result = await _measure_population(create_workers, count, gc_mode)
            summary = await runtime.summary()
            if summary.workers["idle"] != count:
                raise RuntimeError(f"expected {count} idle Workers: {summary.workers}")
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
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child-idle",
            f"{kind}:{count}:{gc_mode}",
        ],
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


def _idle(plan: Plan, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Measure every idle population of the plan; medians over the repeats."""
    results = []
    for kind, count, mode, repeats in plan.idle:
        runs = []
        for index in range(repeats):
            progress(f"idle {kind} x {count:,} (gc {mode}) {index + 1}/{repeats}")
            runs.append(_run_idle_child(kind, count, mode))
        entry: dict[str, Any] = {"kind": kind, "count": count, "gc": mode}
        for field in runs[0]:
            if field not in entry:
                entry[field] = statistics.median(run[field] for run in runs)
        entry["create_s_runs"] = [run["create_s"] for run in runs]
        results.append(entry)
    return results


# -- profiling ----------------------------------------------------------------


def _profile_yoi(turns: int, top: int, dump: str | None) -> None:
    """Run the yoi round trip under cProfile and print the hotspots."""
    trio.run(_yoi_roundtrip, 200, 200)  # warm caches outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    trio.run(_yoi_roundtrip, 0, turns)
    profiler.disable()
    if dump is not None:
        profiler.dump_stats(dump)
    inside = r"yoi_runtime[/\\]"
    for title, sort, restriction in (
        ("all functions, by own time", "tottime", ()),
        ("functions in yoi_runtime, by own time", "tottime", (inside,)),
        ("functions in yoi_runtime, by cumulative time", "cumulative", (inside,)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats(sort)
        stats.print_stats(*restriction, top)
        body = out.getvalue()
        print(f"== {title} ({turns:,} turns under cProfile) ==")
        # Drop pstats' preamble (totals and restriction notes).
        print(body[body.index("   ncalls") :].rstrip())
        print()


async def _profile_idle_run(count: int, top: int, dump: str | None) -> None:
    """Create ``count`` Workers: GC pauses by generation and objects per
    Worker (default GC), then the creation loop under cProfile (GC off)."""
    limits = yoi_runtime.Limits(max_workers=2 * count)
    async with yoi_runtime.open_runtime(
        {"scripted": yoi_runtime.ScriptedEngine()}, limits=limits
    ) as runtime:

        async def create() -> float:
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            started = time.perf_counter()
            for _ in range(count):
                await runtime.create_worker()
            await trio.testing.wait_all_tasks_blocked()
            return time.perf_counter() - started

        pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        began: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                began.append(time.perf_counter())
            else:
                pauses[info["generation"]].append(time.perf_counter() - began.pop())

        tracked_before = len(gc.get_objects())
        gc.callbacks.append(on_gc)
        try:
            wall = await create()
        finally:
            gc.callbacks.remove(on_gc)
        gc.collect()
        tracked = (len(gc.get_objects()) - tracked_before) / count
        print(f"== {count:,} Workers, default GC: {wall:.3f} s ==")
        for generation, times in pauses.items():
            print(
                f"generation {generation}: {len(times)} collections, "
                f"{sum(times):.3f} s ({sum(times) / wall:.0%} of the creation)"
            )
        print(f"GC-tracked objects per Worker: {tracked:.1f}")
        print()
        profiler = cProfile.Profile()
        gc.disable()
        try:
            profiler.enable()
            wall = await create()
            profiler.disable()
        finally:
            gc.enable()
    if dump is not None:
        profiler.dump_stats(dump)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    body = out.getvalue()
    print(
        f"== {count:,} more Workers under cProfile, GC disabled: {wall:.3f} s, "
        f"{getattr(stats, 'total_calls', 0) / count:.0f} calls per Worker, "
        "by cumulative time =="
    )
    print(body[body.index("   ncalls") :].rstrip())


# -- targets and report -------------------------------------------------------


def _check(name: str, measured: str, goal: str, passed: bool | None) -> dict[str, Any]:
    verdict = "SKIP" if passed is None else ("PASS" if passed else "MISS")
    return {"target": name, "measured": measured, "goal": goal, "verdict": verdict}


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals next to what was measured (idle goals: default GC;
    the populations with the GC disabled are reported for reference only)."""
    yoi = results["roundtrip"]["yoi"]
    vs_autogen = yoi.get("vs_autogen")
    idle = {(r["kind"], r["count"], r["gc"]): r for r in results["idle"]}
    checks = [
        _check(
            "yoi turn rate / bare Trio rate",
            f"{yoi['vs_trio']:.3f}x",
            f">= {GOAL_VS_TRIO:.2f}x",
            yoi["vs_trio"] >= GOAL_VS_TRIO,
        ),
        _check(
            "yoi turn rate / autogen-core rate",
            "n/a" if vs_autogen is None else f"{vs_autogen:.2f}x",
            f">= {GOAL_VS_AUTOGEN:g}x",
            None if vs_autogen is None else vs_autogen >= GOAL_VS_AUTOGEN,
        ),
        _check(
            "yoi turn p50 latency",
            f"{yoi['p50_us']:.1f} us",
            f"< {GOAL_P50_US:g} us",
            yoi["p50_us"] < GOAL_P50_US,
        ),
    ]
    for count, goal_s in GOAL_CREATE_S.items():
        entry = idle.get(("worker", count, "default"))
        checks += [
            _check(
                f"{count:,} Workers: create time (gc default)",
                "not run" if entry is None else f"{entry['create_s']:.3f} s",
                f"< {goal_s:g} s",
                None if entry is None else entry["create_s"] < goal_s,
            ),
            _check(
                f"{count:,} Workers: RSS per Worker (gc default)",
                "not run"
                if entry is None
                else f"{entry['rss_per_item_bytes'] / 1024:.2f} KiB",
                f"<= {GOAL_RSS_PER_WORKER / 1024:g} KiB",
                None
                if entry is None
                else entry["rss_per_item_bytes"] <= GOAL_RSS_PER_WORKER,
            ),
        ]
    return checks


def _verdict(results: dict[str, Any], target: str) -> str:
    """``"goal: verdict"`` of the named target, to print beside its figure."""
    for check in results["targets"]:
        if check["target"] == target:
            return f"goal {check['goal']}: {check['verdict']}"
    return "no goal"


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


def _idle_verdict(row: dict[str, Any]) -> str:
    """PASS/MISS of an idle population's time and RSS goals ("-": none)."""
    goal_s = GOAL_CREATE_S.get(row["count"])
    if row["kind"] != "worker" or row["gc"] != "default" or goal_s is None:
        return "-"
    fast = "PASS" if row["create_s"] < goal_s else "MISS"
    small = "PASS" if row["rss_per_item_bytes"] <= GOAL_RSS_PER_WORKER else "MISS"
    return f"{fast}, {small}"


def _report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"yoi-runtime {meta['yoi_runtime']} | {meta['implementation']} "
        f"{meta['python']} | trio {meta['trio']} | autogen-core "
        f"{meta['autogen_core']} | {meta['cpus']} CPUs | {meta['date']}",
        f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
    ]
    if float(meta["loadavg_start"].split()[0]) > 0.25:
        lines.append(
            "WARNING: the machine was busy when this run started; expect noisy numbers."
        )
    roundtrip = results["roundtrip"]
    rows = []
    for key in ("trio", "yoi", "autogen"):
        r = roundtrip.get(key)
        if r is None:
            continue
        rows.append(
            [
                r["name"],
                f"{r['iterations']:,}",
                f"{r['per_s']:,.0f}",
                f"{min(r['round_per_s']):,.0f}-{max(r['round_per_s']):,.0f}",
                f"{r['p50_us']:.1f}",
                f"{r['p99_us']:.1f}",
                f"{r['cpu_us']:.1f}",
            ]
        )
    yoi = roundtrip["yoi"]
    lines += [
        "",
        f"Round trips ({yoi['rounds']} interleaved rounds, "
        f"{yoi['warmup_per_round']:,} warm-up each)",
        _table(
            ["benchmark", "n", "per s", "rounds per s", "p50 us", "p99 us", "CPU us"],
            rows,
        ),
        f"yoi / trio rate: {yoi['vs_trio']:.3f}x (median of per-round ratios; "
        f"{_verdict(results, 'yoi turn rate / bare Trio rate')})",
    ]
    if "vs_autogen" in yoi:
        lines.append(
            f"yoi / autogen-core rate: {yoi['vs_autogen']:.2f}x (median of "
            "per-round ratios; "
            f"{_verdict(results, 'yoi turn rate / autogen-core rate')})"
        )
    else:
        lines.append(f"autogen-core: skipped, {results['autogen_skipped']}")
    lines.append(
        f"yoi turn p50: {yoi['p50_us']:.1f} us "
        f"({_verdict(results, 'yoi turn p50 latency')})"
    )
    rows = [
        [
            f"{'Workers' if r['kind'] == 'worker' else 'bare tasks'} x {r['count']:,}",
            r["gc"],
            str(len(r["create_s_runs"])),
            f"{r['create_s']:.3f}",
            f"{r['count'] / r['create_s']:,.0f}",
            f"{r['gc_collect_s']:.3f}",
            f"{r['rss_per_item_bytes']:,.0f}",
            f"{r['rss_per_item_bytes'] / 1024:.2f}",
            f"{r['close_s']:.3f}",
            _idle_verdict(r),
        ]
        for r in results["idle"]
    ]
    lines += [
        "",
        "Idle populations (fresh subprocess each; medians over runs)",
        _table(
            [
                "population",
                "gc",
                "runs",
                "create s",
                "per s",
                "then gc.collect s",
                "RSS B/each",
                "KiB/each",
                "close s",
                "goals (time, RSS)",
            ],
            rows,
        ),
        "",
        "Targets (issue 13; idle ones with the default GC; 2-core machine)",
        _table(
            ["target", "measured", "goal", "verdict"],
            [
                [c["target"], c["measured"], c["goal"], c["verdict"]]
                for c in results["targets"]
            ],
        ),
    ]
    return "\n".join(lines)


def _run_all(
    plan: Plan, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
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
            "loadavg_start": _loadavg(),
        }
    }
    results["roundtrip"], skipped = _roundtrips(plan, progress)
    if skipped is not None:
        results["autogen_skipped"] = skipped
    results["idle"] = _idle(plan, progress)
    results["meta"]["loadavg_end"] = _loadavg()
    results["targets"] = _targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark yoi-runtime turn round trips and idle Workers."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer round trips; only 10,000 idle Workers, measured once",
    )
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only run the yoi round trip under cProfile and print the hotspots",
    )
    parser.add_argument(
        "--profile-turns", type=int, default=20_000, help="turns to profile"
    )
    parser.add_argument(
        "--profile-top", type=int, default=25, help="rows per profile table"
    )
    parser.add_argument("--profile-dump", metavar="PATH", help="write pstats here")
    parser.add_argument(
        "--profile-idle",
        type=int,
        metavar="N",
        help="only profile creating N Workers (GC pauses, objects, cProfile)",
    )
    parser.add_argument("--child-idle", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_idle:
        kind, count, mode = args.child_idle.split(":")
        print(json.dumps(trio.run(_idle_population, kind, int(count), mode)))
        return 0
    if args.profile:
        _profile_yoi(args.profile_turns, args.profile_top, args.profile_dump)
        return 0
    if args.profile_idle:
        trio.run(
            _profile_idle_run, args.profile_idle, args.profile_top, args.profile_dump
        )
        return 0

    started = time.perf_counter()
    results = _run_all(
        QUICK if args.quick else FULL,
        args.quick,
        lambda step: print(f"... {step}", file=sys.stderr, flush=True),
    )
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    print(_report(results))
    print(f"\n(total {results['meta']['total_s']} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
