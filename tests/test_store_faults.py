"""Store faults never take a Runtime down: text SQLite cannot store, a full
disk, a damaged or empty file, and a second process reaching the same file
through a link.

Black-box against a real ``yoi-runtime`` process wherever the fault can be
made from outside it: a 4 MiB tmpfs (mounted when the tests run as root) or
a file size limit (``RLIMIT_FSIZE``) for the full disk, bytes overwritten or
a table dropped for the damaged file. Embedded Runtimes check what the
library itself promises (it has no HTTP layer in front of it).
"""

from __future__ import annotations

import datetime
import errno
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conformance.support import CONFIG, events_until, scripted_engines

from yoi_runtime import (
    InvalidInputError,
    Runtime,
    ScriptedEngine,
    ScriptedReply,
    StoreError,
    TurnCompletedData,
    TurnStatus,
    TurnSummary,
    Usage,
    open_runtime,
)
from yoi_runtime._errors import StorageFullError, StoreDamagedError
from yoi_runtime._store._records import Batch
from yoi_runtime._store._sqlite import SQLiteStore
from yoi_runtime.testing import (
    RUNTIME_LISTENING,
    ServerProcess,
    open_runtime_process,
    open_server_process,
)

#: Seconds any one process test may take.
CAP = 60


@asynccontextmanager
async def open_durable(path: Path) -> AsyncIterator[Runtime]:
    async with open_runtime(
        scripted_engines(), default_engine="echo", store=f"sqlite:{path}"
    ) as runtime:
        yield runtime


@asynccontextmanager
async def open_process(store: Path) -> AsyncIterator[ServerProcess]:
    async with open_runtime_process(
        "--config", str(CONFIG), "--store", f"sqlite:{store}"
    ) as served:
        yield served


async def run_once(store: Path) -> subprocess.CompletedProcess[bytes]:
    """Start ``yoi-runtime`` on ``store`` expecting it to refuse at once."""
    return await trio.run_process(
        [
            sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0",
            "--config", str(CONFIG), "--store", f"sqlite:{store}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a process that refused to start."""
    assert b"listening" not in result.stdout
    assert b"Traceback" not in result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- text SQLite cannot store (part 5a) -----------------------------------------


async def test_lone_surrogates_are_invalid_input_and_others_keep_running(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with open_durable(tmp_path / "runtime.db") as runtime:
            await runtime.create_worker(worker_id="w")
            await runtime.create_worker(worker_id="other", engine="slow")
            async with runtime.subscribe("other") as events:
                await runtime.send_input("other", "go")
                refused: list[str | None] = []
                for call in (
                    lambda: runtime.send_input("w", "a \ud800 b"),
                    lambda: runtime.create_worker(display_name="\udc00"),
                    lambda: runtime.create_worker(system_prompt="x\ud83d"),
                    lambda: runtime.create_worker(scopes=["\ud800"]),
                    lambda: runtime.stop("w", reason="\udfff"),
                    lambda: runtime.cancel("w", reason="\udfff"),
                ):
                    with pytest.raises(InvalidInputError) as caught:
                        await call()
                    refused.append(caught.value.path)
                done = await events_until(events, "turn.completed")
            assert refused == [
                "text", "display_name", "system_prompt", "scopes", "reason", "reason",
            ]  # fmt: skip
            assert isinstance(done[-1].data, TurnCompletedData)
            assert done[-1].data.turn_id == "t-1"
            summary = await runtime.summary()
            assert (summary.status, summary.workers["idle"]) == ("serving", 2)
            assert await runtime.diagnostics() == ()


async def test_model_output_with_split_or_lone_surrogates_is_stored(
    tmp_path: Path,
) -> None:
    # A split surrogate pair and a lone surrogate in a model's deltas: the
    # turn completes, other Workers run, and the transcript keeps the pair
    # joined and U+FFFD for the lone one.
    db = tmp_path / "runtime.db"
    odd = ScriptedEngine([ScriptedReply(deltas=("smile \ud83d", "\ude00 and \udc00"))])
    with trio.fail_after(10):
        async with open_runtime(
            {"odd": odd, "echo": ScriptedEngine()}, store=f"sqlite:{db}"
        ) as runtime:
            await runtime.create_worker(worker_id="odd", engine="odd")
            await runtime.create_worker(worker_id="fine", engine="echo")
            for worker_id in ("odd", "fine", "odd"):
                async with runtime.subscribe(worker_id) as events:
                    await runtime.send_input(worker_id, "hi")
                    await events_until(events, "turn.completed")
            assert (await runtime.summary()).status == "serving"
            codes = {d.code for d in await runtime.diagnostics()}
            assert codes <= {"store_value_repaired"}
        async with open_runtime(
            {"odd": odd, "echo": ScriptedEngine()}, store=f"sqlite:{db}"
        ) as runtime:
            page = await runtime.transcript("odd")
            fine = await runtime.transcript("fine")
    assert [e.text for e in page.items if e.kind == "assistant"] == [
        "smile \U0001f600 and \ufffd"
    ] * 2
    assert [e.text for e in fine.items] == ["hi", "echo: hi"]


def _turn(worker_id: str, number: int, text: str, input_id: Any) -> TurnSummary:
    return TurnSummary(
        turn_id=f"t-{number}",
        worker_id=worker_id,
        status=TurnStatus.ACCEPTED,
        input=text,
        accepted_at=datetime.datetime.now(datetime.UTC),
        started_at=None,
        ended_at=None,
        usage=Usage(),
        error=None,
        reason=None,
        input_id=input_id,
    )


def test_the_store_repairs_or_leaves_out_one_bad_row(tmp_path: Path) -> None:
    # One batch: a good row, a row with a lone surrogate (stored with
    # U+FFFD) and a row with a value no SQLite type fits (left out). The
    # batch commits; each problem is reported against its Worker.
    store = SQLiteStore.open(tmp_path / "runtime.db")
    try:
        problems = store.write(
            Batch(
                turns=[
                    _turn("good", 1, "fine", None),
                    _turn("odd", 1, "bad \ud800", None),
                    _turn("broken", 1, "fine", object()),
                ]
            )
        )
    finally:
        store.close()
    assert [(p.table, p.worker_id, p.repaired) for p in problems] == [
        ("turns", "odd", True),
        ("turns", "broken", False),
    ]
    with sqlite3.connect(tmp_path / "runtime.db") as db:
        rows = db.execute("SELECT worker_id, input FROM turns ORDER BY 1").fetchall()
    assert rows == [("good", "fine"), ("odd", "bad \ufffd")]


async def test_a_lone_surrogate_over_http_is_422_and_the_process_serves_on(
    tmp_path: Path,
) -> None:
    with trio.fail_after(CAP):
        async with open_process(tmp_path / "runtime.db") as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                for worker_id in ("w", "other"):
                    created = await http.post(
                        "/v1/workers", json={"worker_id": worker_id}
                    )
                    assert created.status_code == 201
                bad = await http.post(
                    "/v1/workers/w/input",
                    content=b'{"text": "\\ud800"}',
                    headers={"Content-Type": "application/json"},
                )
                good = await http.post("/v1/workers/other/input", json={"text": "hi"})
                summary = (await http.get("/v1/runtime")).json()
                health = await http.get("/v1/health")
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
    assert bad.json()["error"]["details"]["path"] == "text"
    assert good.status_code == 202
    assert summary["status"] == "serving"
    assert health.json() == {"status": "serving"}


# -- a full disk (part 5b) ------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (skipped unless this runs as root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until its disk has no space left."""
    chunk = b"\0" * 4096
    with path.open("wb", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError as exc:
                error = exc
                break
    assert error.errno == errno.ENOSPC


async def wait_status(http: httpx.AsyncClient, status: str) -> None:
    """Poll ``/v1/runtime`` until it reports ``status``: the process's store
    writer retries on its own timer, at most 2 s apart, so up to 10 s."""
    for _ in range(200):
        if (await http.get("/v1/runtime")).json()["status"] == status:
            return
        await trio.sleep(0.05)
    raise AssertionError(f"the runtime never became {status}")


async def test_disk_full_is_507_degraded_and_recovers_without_losing_data(
    small_disk: Path,
) -> None:
    db = small_disk / "runtime.db"
    big = "x" * 20_000
    workers = [f"w{n}" for n in range(30)]
    acknowledged: list[str] = []
    with trio.fail_after(CAP):
        async with open_process(db) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                for worker_id in workers:
                    created = await http.post(
                        "/v1/workers", json={"worker_id": worker_id}
                    )
                    assert created.status_code == 201
                filler = small_disk / "filler"
                fill(filler)
                # Room for a few inputs, so some are acknowledged first.
                os.truncate(filler, max(0, filler.stat().st_size - (512 << 10)))
                refused = None
                for worker_id in workers:
                    answer = await http.post(
                        f"/v1/workers/{worker_id}/input",
                        json={"text": f"{worker_id} {big}", "input_id": "k"},
                    )
                    if answer.status_code != 202:
                        refused = (worker_id, answer)
                        break
                    acknowledged.append(worker_id)
                assert refused is not None, "the disk never filled up"
                worker_id, answer = refused
                assert answer.status_code == 507
                error = answer.json()["error"]
                assert error["code"] == "storage_full"
                assert "disk is full" in error["message"]
                summary = (await http.get("/v1/runtime")).json()
                assert summary["status"] == "degraded"
                again = await http.post("/v1/workers", json={})
                assert again.status_code == 507
                listed = await http.get("/v1/workers")
                assert listed.status_code == 200
                found = (await http.get("/v1/diagnostics")).json()["diagnostics"]
                full = [d for d in found if d["code"] == "storage_full"]
                assert len(full) == 1
                assert "disk is full" in full[0]["message"]
                assert "cannot rollback" not in full[0]["message"]

                filler.unlink()
                await wait_status(http, "serving")
                # The refused input was kept in memory and is committed now:
                # retrying it with its key finds the original turn.
                retried = await http.post(
                    f"/v1/workers/{worker_id}/input",
                    json={"text": f"{worker_id} {big}", "input_id": "k"},
                )
                assert retried.status_code == 202
                assert retried.json()["turn"]["turn_id"] == "t-1"
                found = (await http.get("/v1/diagnostics")).json()["diagnostics"]
                assert "store_recovered" in [d["code"] for d in found]
        assert served.process.returncode == 0
        async with open_process(db) as again_served:
            async with httpx.AsyncClient(base_url=again_served.url) as http:
                inputs = {}
                for name in [*acknowledged, worker_id]:
                    page = await http.get(f"/v1/workers/{name}/transcript")
                    inputs[name] = [
                        e["text"] for e in page.json()["entries"] if e["kind"] == "user"
                    ]
    assert acknowledged
    assert inputs == {name: [f"{name} {big}"] for name in [*acknowledged, worker_id]}


async def test_a_file_size_limit_is_storage_full(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the store's writes fail with EFBIG, which SQLite
    # reports as an I/O error: the process names the real cause.
    db = tmp_path / "runtime.db"
    limit = 512 * 1024
    launcher = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['yoi-runtime', *sys.argv[1:]]; "
        "runpy.run_module('yoi_runtime', run_name='__main__')"
    )
    big = "y" * 50_000
    with trio.fail_after(CAP):
        async with _open_limited(launcher, db) as served:
            async with httpx.AsyncClient(base_url=served.url) as http:
                answer = None
                for n in range(40):
                    created = await http.post("/v1/workers", json={})
                    if created.status_code != 201:
                        answer = created
                        break
                    worker_id = created.json()["worker"]["worker_id"]
                    answer = await http.post(
                        f"/v1/workers/{worker_id}/input", json={"text": f"{n} {big}"}
                    )
                    if answer.status_code != 202:
                        break
                summary = (await http.get("/v1/runtime")).json()
                health = await http.get("/v1/health")
    assert answer is not None
    assert answer.status_code == 507
    assert answer.json()["error"]["code"] == "storage_full"
    assert "file size limit" in answer.json()["error"]["message"]
    assert summary["status"] == "degraded"
    # Health tells a load balancer to send no commands, and why.
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert "file size limit" in health.json()["reason"]


@asynccontextmanager
async def _open_limited(launcher: str, db: Path) -> AsyncIterator[ServerProcess]:
    command = [
        sys.executable, "-c", launcher, "--bind", "127.0.0.1:0",
        "--config", str(CONFIG), "--store", f"sqlite:{db}",
    ]  # fmt: skip
    async with open_server_process(command, RUNTIME_LISTENING) as served:
        yield served


def largest_file(db: Path) -> int:
    """The size of the store's largest file (itself or its WAL), in bytes."""
    return max(os.stat(f"{db}{suffix}").st_size for suffix in ("", "-wal"))


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Lower this process's soft ``RLIMIT_FSIZE`` to ``size`` bytes for a
    while (no root needed: the hard limit stays)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_an_embedded_runtime_is_degraded_then_recovers_by_itself(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    big = "z" * 20_000
    acknowledged: list[str] = []
    with trio.fail_after(CAP):
        async with open_durable(db) as runtime:
            ids = [f"w{n}" for n in range(20)]
            for worker_id in ids:
                await runtime.create_worker(worker_id=worker_id)
            with file_size_limit(largest_file(db) + 65_536):
                for worker_id in ids:
                    try:
                        await runtime.send_input(worker_id, big, input_id="k")
                    except StorageFullError as exc:
                        refused, error = worker_id, exc
                        break
                    acknowledged.append(worker_id)
                else:
                    raise AssertionError("the file size limit was never reached")
                summary = await runtime.summary()
                reason = runtime.status_reason
                with pytest.raises(StorageFullError):
                    await runtime.create_worker()
                listed = await runtime.list_workers()
            for _ in range(200):
                if runtime.status == "serving":
                    break
                await trio.sleep(0.05)
            retried = await runtime.send_input(refused, big, input_id="k")
            codes = [d.code for d in await runtime.diagnostics()]
        async with open_durable(db) as runtime:
            kept = {
                worker_id: [
                    e.text
                    for e in (await runtime.transcript(worker_id)).items
                    if e.kind == "user"
                ]
                for worker_id in [*acknowledged, refused]
            }
    assert error.code == "storage_full"
    assert "file size limit" in error.message
    assert (summary.status, reason) == ("degraded", error.message)
    assert len(listed.items) == 20
    assert retried.turn_id == "t-1"
    assert codes == ["storage_full", "store_recovered"]
    assert kept == {worker_id: [big] for worker_id in [*acknowledged, refused]}


# -- damaged and empty files (part 5c) ------------------------------------------


async def _make_store(db: Path) -> None:
    async with open_durable(db) as runtime:
        for n in range(3):
            await runtime.create_worker(worker_id=f"w{n}")
            await runtime.send_input(f"w{n}", "hello")


def _damage_page(db: Path, table: str) -> None:
    with sqlite3.connect(db) as check:
        (page_size,) = check.execute("PRAGMA page_size").fetchone()
        (root,) = check.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    with db.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)


def _drop_table(db: Path, table: str) -> None:
    with sqlite3.connect(db) as check:
        check.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda db: _damage_page(db, "workers"), "is damaged (database disk image"),
        (lambda db: _drop_table(db, "turns"), "is damaged (no such table: turns)"),
        (lambda db: db.write_bytes(b""), "is an empty file (0 bytes)"),
    ],
    ids=["damaged-page", "dropped-table", "zero-length"],
)
async def test_a_damaged_or_empty_file_is_one_line_and_no_traceback(
    tmp_path: Path, damage: Any, said: str
) -> None:
    db = tmp_path / "runtime.db"
    with trio.fail_after(CAP):
        await _make_store(db)
        damage(db)
        with pytest.raises(StoreDamagedError, match=r"restore it from a backup"):
            async with open_durable(db):
                pass  # pragma: no cover
        result = await run_once(db)
    line = one_line(result)
    assert line.startswith(f"yoi-runtime: store {db} {said}")
    assert line.endswith("start a new store")
    assert result.returncode != 0


async def test_a_damaged_file_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    db.write_bytes(b"")
    with trio.fail_after(CAP):
        result = await run_once(db)
    assert result.returncode == 2


# -- one process per file, whatever its name (part 5d) --------------------------


async def test_a_symlink_or_hard_link_does_not_bypass_the_lock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    symlink = tmp_path / "symlink.db"
    hardlink = tmp_path / "hardlink.db"
    with trio.fail_after(CAP):
        async with open_process(db) as first:
            symlink.symlink_to(db)
            os.link(db, hardlink)
            by_symlink = await run_once(symlink)
            by_hardlink = await run_once(hardlink)
            for other in (symlink, hardlink):
                with pytest.raises(StoreError, match="in use by another"):
                    async with open_durable(other):
                        pass  # pragma: no cover
            async with httpx.AsyncClient(base_url=first.url) as http:
                created = await http.post("/v1/workers", json={"worker_id": "w"})
                health = await http.get("/v1/health")
    assert one_line(by_symlink) == (
        f"yoi-runtime: store {symlink} is in use by another yoi-runtime process "
        f"(pid {first.process.pid})"
    )
    assert one_line(by_hardlink) == (
        f"yoi-runtime: store {hardlink} is in use by another yoi-runtime process "
        "(which opened the same file under another name)"
    )
    assert by_symlink.returncode == by_hardlink.returncode == 1
    assert created.status_code == 201
    assert health.json() == {"status": "serving"}


async def test_a_link_works_once_the_file_is_free(tmp_path: Path) -> None:
    db = tmp_path / "runtime.db"
    link = tmp_path / "link.db"
    async with open_durable(db) as runtime:
        await runtime.create_worker(worker_id="w")
    link.symlink_to(db)
    async with open_durable(link) as runtime:
        page = await runtime.list_workers()
    assert [w.worker_id for w in page.items] == ["w"]
    assert not (tmp_path / "link.db.lock").exists()


async def test_a_second_runtime_in_one_process_is_refused_through_a_hard_link(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runtime.db"
    hardlink = tmp_path / "hardlink.db"
    async with open_durable(db) as runtime:
        os.link(db, hardlink)
        with pytest.raises(StoreError, match="under another name"):
            async with open_durable(hardlink):
                pass  # pragma: no cover
        # The first Runtime's own locks are untouched: it keeps committing.
        await runtime.create_worker(worker_id="w")
        async with runtime.subscribe("w") as events:
            await runtime.send_input("w", "hi")
            await events_until(events, "turn.completed")
    async with open_durable(hardlink) as runtime:
        page = await runtime.transcript("w")
    assert [e.text for e in page.items] == ["hi", "echo: hi"]
