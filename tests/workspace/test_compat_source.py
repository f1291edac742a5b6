"""The local-pod compatibility source: valid, stale and invalid pods, session
logs, stable ids, what it refuses and what it never shows."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from workspace.handle_support import (
    EPOCH,
    assert_hidden,
    session_of,
    shown,
    write_pod,
)

from yoi_runtime import (
    InvalidInputError,
    OperationUnsupportedError,
    TurnStatus,
    WorkerNotFoundError,
)
from yoi_runtime._wire import converter
from yoi_workspace import LocalPodSource, pod_worker_id
from yoi_workspace._views import RuntimeKind

RUNTIME_ID = "rt-pods"


async def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = await trio.lowlevel.open_process([sys.executable, "-c", "pass"])
    await process.wait()
    return process.pid


def test_worker_ids_are_stable_and_opaque() -> None:
    digest = hashlib.sha256(b"alpha").hexdigest()
    assert pod_worker_id("alpha") == "pod-" + digest[:16]
    assert pod_worker_id("alpha") != pod_worker_id("alpha2")
    assert re.fullmatch(r"pod-[0-9a-f]{16}", pod_worker_id("ünïcode pod"))


async def test_valid_pods_are_listed_oldest_first(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "zeta", display_name="Zed", started_at="2024-05-01T09:00:00+00:00")
    write_pod(
        pods,
        "alpha",
        profile="coder",
        status="running",
        started_at="2024-05-01T11:00:00",  # no offset: taken as UTC
        extra_key="ignored",
    )
    write_pod(pods, "mid", status="ready", started_at="2024-05-01T10:00:00+02:00")
    (pods / "README.txt").write_text("not a pod")
    source = LocalPodSource(RUNTIME_ID, pods)
    with trio.fail_after(10):
        page = await source.list_workers()
        view = await source.describe()
        diagnostics = await source.diagnostics()
        again = await LocalPodSource("rt-other", pods).list_workers()
    assert [w.worker_id for w in page.workers] == [
        pod_worker_id(name) for name in ("mid", "zeta", "alpha")
    ]
    assert [w.worker_id for w in again.workers] == [w.worker_id for w in page.workers]
    mid, zeta, alpha = page.workers
    assert (zeta.display_name, zeta.profile, zeta.status) == (
        "Zed",
        "companion",
        "idle",
    )
    assert (alpha.display_name, alpha.profile, alpha.status) == (
        None,
        "coder",
        "running",
    )
    # An older model's own status word is shown as it is.
    assert mid.status == "ready"
    assert alpha.created_at == datetime.datetime(2024, 5, 1, 11, tzinfo=datetime.UTC)
    for worker in page.workers:
        assert (worker.kind, worker.runtime_id) == (
            RuntimeKind.COMPAT_LOCAL_POD,
            RUNTIME_ID,
        )
        assert (worker.stale, worker.engine, worker.turns, worker.last_seq) == (
            False,
            None,
            0,
            0,
        )
        assert (worker.active_turn, worker.last_turn, worker.tools) == (None, None, ())
    assert view.workers == {
        "idle": 1,
        "running": 1,
        "stopped": 0,
        "failed": 0,
        "ready": 1,
    }
    assert (view.status, view.authority, view.error) == ("read-only", False, None)
    assert diagnostics == ()


async def test_dead_process_makes_a_live_pod_stale(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    with trio.fail_after(10):
        pid = await dead_pid()
        write_pod(pods, "ghost", pid=pid, status="running", display_name="Ghost")
        write_pod(pods, "done", pid=pid, status="stopped")
        write_pod(pods, "broken", pid=pid, status="failed")
        write_pod(pods, "alive", status="running")
        source = LocalPodSource(RUNTIME_ID, pods)
        ghost = await source.get_worker(pod_worker_id("ghost"))
        stopped = await source.list_workers(status="stopped")
        diagnostics = await source.diagnostics()
        view = await source.describe()
    assert (ghost.status, ghost.stale, ghost.display_name) == ("stopped", True, "Ghost")
    # A pod that says it ended is expected to have no process: not stale.
    assert [(w.worker_id, w.stale) for w in stopped.workers] == [
        (pod_worker_id("done"), False),
        (pod_worker_id("ghost"), True),
    ]
    assert [(d.code, d.level, d.worker_id) for d in diagnostics] == [
        ("compat_pod_stale", "warning", ghost.worker_id)
    ]
    assert "'ghost'" in diagnostics[0].message
    assert view.workers == {"idle": 0, "running": 1, "stopped": 2, "failed": 1}


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("{not json", "metadata.json is not valid JSON"),
        ("[1, 2]", "metadata.json is not a JSON object"),
        (None, "metadata.json is missing"),
        ({"pid": None}, "pid must be an integer"),
        ({"pid": "4242"}, "pid must be an integer"),
        ({"pid": True}, "pid must be an integer"),
        ({"pid": 0}, "pid must be positive"),
        ({"pid": -1}, "pid must be positive"),
        ({"display_name": 5}, "display_name must be a string or null"),
        ({"started_at": "yesterday"}, "started_at must be an ISO 8601 time"),
        ({"pod_name": "another"}, "pod_name does not match the directory"),
        ({"status": ""}, "status is empty"),
        ("drop:socket_path", "socket_path is missing"),
        ("drop:pid", "pid is missing"),
    ],
)
async def test_invalid_metadata_is_a_diagnostic_not_a_worker(
    tmp_path: Path, metadata: str | dict[str, object] | None, problem: str
) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "good", display_name="Good")
    bad = write_pod(pods, "bad", session=session_of("hello"))
    path = bad / "metadata.json"
    if metadata is None:
        path.unlink()
    elif isinstance(metadata, dict):
        path.write_text(json.dumps({**json.loads(path.read_text()), **metadata}))
    elif metadata.startswith("drop:"):
        data = json.loads(path.read_text())
        del data[metadata.removeprefix("drop:")]
        path.write_text(json.dumps(data))
    else:
        path.write_text(metadata)
    source = LocalPodSource(RUNTIME_ID, pods)
    with trio.fail_after(10):
        page = await source.list_workers()
        diagnostics = await source.diagnostics()
        view = await source.describe()
        with pytest.raises(WorkerNotFoundError):
            await source.get_worker(pod_worker_id("bad"))
        with pytest.raises(WorkerNotFoundError):
            await source.transcript(pod_worker_id("bad"))
    assert [w.display_name for w in page.workers] == ["Good"]
    assert [(d.code, d.level, d.worker_id) for d in diagnostics] == [
        ("compat_pod_invalid", "error", None)
    ]
    assert diagnostics[0].message.startswith("pod 'bad': ")
    assert problem in diagnostics[0].message
    assert sum(view.workers.values()) == 1
    assert_hidden([str(tmp_path), "4242"], *diagnostics)


async def test_transcript_from_the_session_log(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    at = "2024-05-01T10:00:05+00:00"
    write_pod(
        pods,
        "chatty",
        session=[
            {"role": "assistant", "text": "Welcome.", "at": at},
            {"role": "system", "text": "not shown", "at": at},
            {"role": "user", "text": "hello", "at": at},
            "{torn line",
            {"role": "user", "text": 7, "at": at},
            {"role": "assistant", "text": "hi!", "at": "2024-05-01T10:00:06"},
            "",
            {"role": "user", "text": "bye", "at": at},
        ],
    )
    source = LocalPodSource(RUNTIME_ID, pods)
    worker_id = pod_worker_id("chatty")
    with trio.fail_after(10):
        assert await source.diagnostics() == ()
        page = await source.transcript(worker_id)
        first = await source.transcript(worker_id, limit=2)
        rest = await source.transcript(worker_id, cursor=first.next_cursor)
        noted = await source.diagnostics()
    entries = page.entries
    assert [(e.index, e.kind, e.turn_id, e.text, e.status) for e in entries] == [
        (1, "assistant", "t-0", "Welcome.", TurnStatus.COMPLETED),
        (2, "user", "t-1", "hello", TurnStatus.ACCEPTED),
        (3, "assistant", "t-1", "hi!", TurnStatus.COMPLETED),
        (4, "user", "t-2", "bye", TurnStatus.ACCEPTED),
    ]
    assert entries[2].at == datetime.datetime(2024, 5, 1, 10, 0, 6, tzinfo=datetime.UTC)
    assert (page.next_cursor, page.truncated) == (None, False)
    assert (first.entries, first.next_cursor) == (entries[:2], "2")
    assert (rest.entries, rest.next_cursor) == (entries[2:], None)
    assert [(d.code, d.worker_id) for d in noted] == [
        ("compat_session_invalid", worker_id)
    ]
    assert noted[0].message == (
        "pod 'chatty': 2 malformed line(s) in its session log were skipped "
        "(first: line 4)"
    )


async def test_missing_session_log_gives_an_empty_transcript(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "quiet", session=None)
    write_pod(pods, "dir-log", session=None, session_path=str(tmp_path))
    source = LocalPodSource(RUNTIME_ID, pods)
    with trio.fail_after(10):
        for name in ("quiet", "dir-log"):
            page = await source.transcript(pod_worker_id(name))
            assert (page.entries, page.next_cursor) == ((), None)
        diagnostics = await source.diagnostics()
    assert sorted((d.code, d.worker_id) for d in diagnostics) == sorted(
        ("compat_session_missing", pod_worker_id(name)) for name in ("quiet", "dir-log")
    )
    assert_hidden([str(tmp_path)], *diagnostics)


async def test_missing_pods_dir_lists_nothing(tmp_path: Path) -> None:
    source = LocalPodSource(RUNTIME_ID, tmp_path / "nowhere")
    with trio.fail_after(10):
        page = await source.list_workers()
        view = await source.describe()
        diagnostics = await source.diagnostics()
    assert (page.workers, page.next_cursor) == ((), None)
    assert view.status == "read-only"
    assert view.error == "the pods directory does not exist"
    assert [d.code for d in diagnostics] == ["compat_pods_dir_unreadable"]
    assert_hidden([str(tmp_path)], view, *diagnostics, source)


async def test_read_only(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "alpha", session=session_of("hello"))
    source = LocalPodSource(RUNTIME_ID, pods)
    worker_id = pod_worker_id("alpha")
    with trio.fail_after(10):
        attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("create Workers", lambda: source.create_worker(display_name="Bo")),
            ("take input", lambda: source.send_input(worker_id, "hi")),
            ("cancel turns", lambda: source.cancel(worker_id)),
            ("stop Workers", lambda: source.stop(worker_id)),
        ]
        for operation, attempt in attempts:
            with pytest.raises(OperationUnsupportedError) as caught:
                await attempt()
            assert caught.value.message == (
                f"runtime {RUNTIME_ID} is a read-only compatibility source "
                f"(compat-local-pod): it cannot {operation}"
            )
        stream = source.subscribe(worker_id)
        with pytest.raises(OperationUnsupportedError, match="stream events"):
            async with stream:
                pass
        view = await source.describe()
        await source.aclose()
        await source.aclose()
    assert view.capabilities is not None
    assert view.capabilities.placement == "compat-local-pod"
    assert view.capabilities.engines == ()
    assert view.capabilities.tools == ()
    assert (await source.get_worker(worker_id)).status == "idle"  # still reads


async def test_paths_and_pids_are_never_shown(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    with trio.fail_after(10):
        gone = await dead_pid()
        live = os.getpid()
        write_pod(
            pods,
            "alpha",
            display_name="Ada",
            socket_path="/run/yoi/SOCKET-MARKER.sock",
            session_path="SESSION-MARKER.jsonl",
            session=session_of("hello", at=EPOCH),
        )
        write_pod(
            pods, "ghost", pid=gone, session=None, session_path="/nope/GONE.jsonl"
        )
        write_pod(pods, "bad", pid=gone, socket_path="/run/yoi/BAD-MARKER.sock")
        (pods / "bad" / "metadata.json").write_text(
            json.dumps({"pod_name": "bad", "pid": "BAD-PID", "socket_path": "/x.sock"})
        )
        source = LocalPodSource(RUNTIME_ID, pods)
        outputs: list[object] = [
            source,
            source.subscribe(),
            await source.describe(),
            await source.list_workers(),
            await source.diagnostics(),
        ]
        for name in ("alpha", "ghost"):
            worker_id = pod_worker_id(name)
            outputs.append(await source.get_worker(worker_id))
            outputs.append(await source.transcript(worker_id))
        outputs.append(await source.diagnostics())
        for attempt in (
            lambda: source.stop(pod_worker_id("alpha")),
            lambda: source.get_worker(pod_worker_id("bad")),
            lambda: source.list_workers(cursor="/etc/passwd"),
        ):
            with pytest.raises(
                (OperationUnsupportedError, WorkerNotFoundError, InvalidInputError)
            ) as caught:
                await attempt()
            outputs.append(caught.value)
    serialized = [
        json.dumps(converter.unstructure(value))
        for value in outputs
        if not isinstance(value, BaseException | LocalPodSource)
        and not hasattr(value, "__aenter__")
    ]
    text = shown(*outputs) + "\n".join(serialized)
    # The check sees real output.
    assert "Ada" in text
    assert "hello" in text
    for secret in (
        str(tmp_path),
        "SOCKET-MARKER",
        "SESSION-MARKER",
        "BAD-MARKER",
        "BAD-PID",
        "GONE.jsonl",
    ):
        assert secret not in text, secret
    for pid in (live, gone):
        assert re.search(rf"(?<![0-9a-f]){pid}(?![0-9a-f])", text) is None, pid


async def test_bad_arguments_are_invalid_input(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "alpha", session=session_of("hello"))
    source = LocalPodSource(RUNTIME_ID, pods)
    worker_id = pod_worker_id("alpha")
    with trio.fail_after(10):
        for bad, path in [
            ({"status": "sleeping"}, "status"),
            ({"limit": True}, "limit"),
            ({"limit": 501}, "limit"),
            ({"cursor": "-1"}, "cursor"),
        ]:
            with pytest.raises(InvalidInputError) as caught:
                await source.list_workers(**bad)  # type: ignore[arg-type]
            assert caught.value.path == path
        with pytest.raises(InvalidInputError) as transcript:
            await source.transcript(worker_id, limit=0)
        assert transcript.value.path == "limit"
