"""Benchmark: the durable SQLite store against the memory store.

Run from the repository root::

    .venv/bin/python bench/bench_store.py             # about 40 seconds
    .venv/bin/python bench/bench_store.py --quick     # about 10 seconds
    .venv/bin/python bench/bench_store.py --json results.json

What it measures (``bench/README.md`` has the figures):

1. Turn round trip: one Worker, the scripted engine, from
   ``Runtime.send_input`` until the subscriber has read ``turn.completed``;
   the memory and the sqlite store in interleaved rounds, each round a fresh
   Runtime (and a fresh file).
2. Sustained input across 100 Workers: 100 client tasks, each sending input
   to its own Worker and waiting for ``turn.completed`` before the next, for
   a fixed time; the rate is accepted inputs per second.

The target (issue 4): the sqlite store keeps at least half of the memory
store's rate. Each store's ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

import yoi_runtime
from yoi_runtime import Event, EventType, Runtime, ScriptedEngine, open_runtime

STORES = ("memory", "sqlite")


@asynccontextmanager
async def _open(store: str, directory: Path) -> AsyncIterator[Runtime]:
    spec = "memory" if store == "memory" else f"sqlite:{directory}/runtime.db"
    async with open_runtime({"echo": ScriptedEngine()}, store=spec) as runtime:
        yield runtime


async def _wait_completed(events: Any, turn_id: str) -> None:
    while True:
        for item in await events.receive_batch():
            if (
                isinstance(item, Event)
                and item.type is EventType.TURN_COMPLETED
                and item.data["turn_id"] == turn_id
            ):
                return


async def roundtrip(store: str, directory: Path, warmup: int, turns: int) -> float:
    """Sequential turns per second on one Worker."""
    async with _open(store, directory) as runtime:
        worker_id = (await runtime.create_worker()).worker_id
        async with runtime.subscribe(worker_id) as events:
            for _ in range(warmup):
                turn = await runtime.send_input(worker_id, "ping")
                await _wait_completed(events, turn.turn_id)
            started = time.perf_counter()
            for _ in range(turns):
                turn = await runtime.send_input(worker_id, "ping")
                await _wait_completed(events, turn.turn_id)
            return turns / (time.perf_counter() - started)


async def sustained(store: str, directory: Path, workers: int, seconds: float) -> float:
    """Accepted inputs per second, ``workers`` Workers each kept busy."""
    async with _open(store, directory) as runtime:
        ids = [(await runtime.create_worker()).worker_id for _ in range(workers)]
        accepted = 0
        measuring = False

        async def client(worker_id: str) -> None:
            nonlocal accepted
            async with runtime.subscribe(worker_id) as events:
                while True:
                    turn = await runtime.send_input(worker_id, "ping")
                    if measuring:
                        accepted += 1
                    await _wait_completed(events, turn.turn_id)

        async with trio.open_nursery() as nursery:
            for worker_id in ids:
                nursery.start_soon(client, worker_id)
            await trio.sleep(min(1.0, seconds / 4))  # warm-up
            measuring = True
            started = time.perf_counter()
            await trio.sleep(seconds)
            measuring = False
            rate = accepted / (time.perf_counter() - started)
            nursery.cancel_scope.cancel()
        return rate


def _median_ratios(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {
        store: statistics.median(r[store] / r["memory"] for r in rounds)
        for store in STORES
    }


def run(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    rounds_count = 2 if quick else 5
    turns = 500 if quick else 2_000
    seconds = 1.0 if quick else 3.0
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "yoi_runtime": yoi_runtime.__version__,
        },
        "roundtrip": [],
        "sustained": [],
    }
    with tempfile.TemporaryDirectory(prefix="yoi-bench-") as tmp:
        for number in range(rounds_count):
            for kind in ("roundtrip", "sustained"):
                row = {}
                for store in STORES:
                    directory = Path(tmp) / f"{kind}-{number}-{store}"
                    directory.mkdir()
                    if kind == "roundtrip":
                        row[store] = trio.run(roundtrip, store, directory, 200, turns)
                    else:
                        row[store] = trio.run(sustained, store, directory, 100, seconds)
                results[kind].append(row)
                progress(f"round {number + 1} {kind}: " + ", ".join(
                    f"{s} {v:,.0f}/s" for s, v in row.items()
                ))  # fmt: skip
    for kind in ("roundtrip", "sustained"):
        rows = results[kind]
        results[f"{kind}_median"] = {
            store: statistics.median(r[store] for r in rows) for store in STORES
        }
        results[f"{kind}_ratio"] = _median_ratios(rows)
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Python {results['machine']['python']}, {results['machine']['cpus']} CPUs",
        "",
        "| benchmark | memory | sqlite |",
        "|---|---|---|",
    ]
    for kind, label in (
        ("roundtrip", "turn round trip, 1 Worker (turns/s)"),
        ("sustained", "accepted inputs/s, 100 Workers"),
    ):
        median, ratio = results[f"{kind}_median"], results[f"{kind}_ratio"]
        lines.append(
            f"| {label} | {median['memory']:,.0f} | "
            f"{median['sqlite']:,.0f} ({ratio['sqlite']:.2f}x) |"
        )
    lines.append("")
    for kind in ("roundtrip", "sustained"):
        ratio = results[f"{kind}_ratio"]["sqlite"]
        verdict = "PASS" if ratio >= 0.5 else "MISS"
        lines.append(f"target {kind}: sqlite >= 0.5x memory: {ratio:.2f}x {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.quick, lambda line: print(line, file=sys.stderr, flush=True))
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
