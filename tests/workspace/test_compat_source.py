"""The local-pod compat source on upstream yoi's real formats.

The oracle is the sample yoi home in ``shared/fixtures/yoi-local-pods/``
(seven Pods: healthy, spawned child with a compacted segment, missing
session log, torn metadata, crashed, other workspace, just started) and its
``expected.json``. Each test copies the tree to a temporary directory first;
the copy is never the checked-in one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from yoi_runtime import (
    InvalidInputError,
    OperationUnsupportedError,
    TurnStatus,
    WorkerNotFoundError,
)
from yoi_workspace import LocalPodSource, pod_worker_id
from yoi_workspace._yoi_home import YoiHome, resolve_yoi_home

FIXTURE = Path(__file__).parents[3] / "shared" / "fixtures" / "yoi-local-pods"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
ROOT = EXPECTED["workspace_root"]
PODS = {pod["pod_name"]: pod for pod in EXPECTED["pods"]}

#: Strings of the sample tree that must never reach a caller.
SECRETS = ("/tmp/yoi-fixture", "999999999", "sock", "019ee4", "yoi-home")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private copy of the sample yoi home."""
    copy = tmp_path / "yoi-home"
    shutil.copytree(FIXTURE / "yoi-home", copy)
    return copy


def set_pid(home: Path, pod_name: str, pid: int) -> None:
    """The fixture README's recipe: rewrite a Pod's allocation pid."""
    table_path = home / "run" / "pods.json"
    table = json.loads(table_path.read_text())
    for allocation in table["allocations"]:
        if allocation["pod_name"] == pod_name:
            allocation["pid"] = pid
    table_path.write_text(json.dumps(table, indent=2))
    (home / "run" / pod_name / "pid").write_text(str(pid))


def entry_of(expected: dict[str, Any]) -> tuple[str, str]:
    """The (kind, text) a fixture transcript item becomes."""
    kind = expected["kind"]
    if kind == "message":
        role = expected["role"]
        return ("system" if role == "system" else role, expected["text"])
    if kind == "tool_call":
        return ("tool_call", f"{expected['name']} [{expected['call_id']}]")
    if kind == "tool_result":
        return ("tool_result", expected["summary"])
    if kind == "system_item":
        attachment = expected["system_kind"] == "file_attachment"
        return ("attachment" if attachment else "system", expected["text"])
    assert kind == "reasoning", kind
    return ("reasoning", expected["text"])


def test_worker_ids_are_the_original_servers() -> None:
    for name, pod in PODS.items():
        assert pod_worker_id(name) == pod["worker_id"]
    assert pod_worker_id("foo.bar") == "local-pod-foo-bar-2595d08ad22c733f"
    assert pod_worker_id("foo-bar") == "local-pod-foo-bar-7d89c4f517e3bd4b"


def test_the_yoi_home_is_found_as_yoi_finds_it() -> None:
    home = resolve_yoi_home({"YOI_HOME": "/y", "HOME": "/h"})
    assert (home.data_dir, home.runtime_dir) == (Path("/y"), Path("/y/run"))
    home = resolve_yoi_home(
        {"YOI_HOME": "/y", "YOI_DATA_DIR": "/d", "YOI_RUNTIME_DIR": "/r"}
    )
    assert (home.data_dir, home.runtime_dir) == (Path("/d"), Path("/r"))
    home = resolve_yoi_home({"HOME": "/h", "XDG_RUNTIME_DIR": "/run/user/1"})
    assert (home.data_dir, home.runtime_dir) == (
        Path("/h/.yoi"),
        Path("/run/user/1/yoi"),
    )
    home = resolve_yoi_home({"HOME": "/h", "YOI_HOME": ""})  # empty is unset
    assert (home.data_dir, home.runtime_dir) == (Path("/h/.yoi"), Path("/h/.yoi/run"))
    assert resolve_yoi_home({}) == YoiHome(None, None)


async def test_the_sample_home_reads_as_expected(home: Path) -> None:
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    with trio.fail_after(10):
        listed = (await source.list_workers()).items
        diagnostics = await source.diagnostics()
        transcripts = {
            w.worker_id: (await source.transcript(w.worker_id, limit=500)).items
            for w in listed
        }
    workers = [
        p for p in EXPECTED["pods"] if p["compat_recommended"]["outcome"] == "worker"
    ]
    assert [w.worker_id for w in listed] == [p["worker_id"] for p in workers]
    for worker, pod in zip(listed, workers, strict=True):
        liveness = pod["compat_recommended"]["liveness"]
        assert (worker.status, worker.stale) == (liveness, liveness == "stale")
        assert worker.display_name == pod["pod_name"]
        assert worker.runtime_id == "local-pod-runtime"
        entries = transcripts[worker.worker_id]
        expected = pod["transcript_active_segment"]
        assert [(e.kind, e.text) for e in entries] == [entry_of(x) for x in expected]
        assert [e.index for e in entries] == list(range(1, len(entries) + 1))
        for entry, item in zip(entries, expected, strict=True):
            if "ts" in item:
                assert int(entry.at.timestamp() * 1000) == item["ts"]
            assert (entry.turn_id == "seed") == (item["origin"] == "seed")
    # Each problem is a diagnostic naming the Pod, never a path or a pid.
    by_code = {(d.code, d.worker_id) for d in diagnostics}
    assert ("compat_session_missing", PODS["delta"]["worker_id"]) in by_code
    assert ("compat_pod_stale", PODS["gamma"]["worker_id"]) in by_code
    assert ("compat_pod_invalid", None) in by_code
    assert ("compat_pod_other_workspace", None) in by_code
    codes_of_clean = [
        d
        for d in diagnostics
        if d.worker_id in {PODS[n]["worker_id"] for n in ("alpha", "beta", "zeta")}
    ]
    assert codes_of_clean == []
    shown = repr((listed, diagnostics, transcripts, source))
    for secret in (*SECRETS, str(home)):
        assert secret not in shown


async def test_beta_is_compacted_and_gamma_crashed_mid_turn(home: Path) -> None:
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    with trio.fail_after(10):
        beta = await source.transcript(PODS["beta"]["worker_id"])
        gamma = await source.transcript(PODS["gamma"]["worker_id"])
        alpha = await source.get_worker(PODS["alpha"]["worker_id"])
    # The seed of a compacted segment comes first, as completed history.
    assert [e.turn_id for e in beta.items[:4]] == ["seed"] * 4
    assert beta.items[0].text.startswith("[Compacted context summary]")
    assert {e.status for e in beta.items[4:]} == {
        TurnStatus.ACCEPTED,
        TurnStatus.COMPLETED,
    }
    # The crashed turn (no run_completed) is interrupted, the one before not.
    assert [e.status for e in gamma.items] == [
        TurnStatus.ACCEPTED,
        TurnStatus.COMPLETED,
        TurnStatus.ACCEPTED,
        TurnStatus.INTERRUPTED,
        TurnStatus.INTERRUPTED,
    ]
    # Turns and usage come from the active segment's invoke and llm_usage.
    assert alpha.turns == 2
    assert (alpha.usage.input_tokens, alpha.usage.output_tokens) == (4530, 99)


async def test_without_a_workspace_root_every_pod_is_listed(home: Path) -> None:
    source = LocalPodSource("pods", home)
    with trio.fail_after(10):
        listed = (await source.list_workers()).items
    theta = PODS["theta"]
    assert theta["worker_id"] in [w.worker_id for w in listed]
    assert len(listed) == 6  # all but the torn epsilon
    assert [w.status for w in listed if w.worker_id == theta["worker_id"]] == [
        "stopped"
    ]


async def test_a_live_pod_goes_stale_when_its_process_dies(home: Path) -> None:
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    alpha = PODS["alpha"]["worker_id"]
    with trio.fail_after(10):
        child = await trio.lowlevel.open_process(["sleep", "600"])
        try:
            set_pid(home, "alpha", child.pid)
            assert (await source.get_worker(alpha)).status == "live"
            live = await source.list_workers(status="live")
            assert alpha in [w.worker_id for w in live.items]
        finally:
            child.kill()
            await child.wait()
        worker = await source.get_worker(alpha)
        diagnostics = await source.diagnostics()
    assert (worker.status, worker.stale) == ("stale", True)
    stale = [d for d in diagnostics if d.code == "compat_pod_stale"]
    assert {d.worker_id for d in stale} == {alpha, PODS["gamma"]["worker_id"]}
    assert all(str(child.pid) not in d.message for d in stale)


async def test_a_spawned_child_not_yet_adopted_is_starting(home: Path) -> None:
    table_path = home / "run" / "pods.json"
    table = json.loads(table_path.read_text())
    for allocation in table["allocations"]:
        if allocation["pod_name"] == "beta":
            allocation["segment_id"] = None
    table_path.write_text(json.dumps(table, indent=2))
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    with trio.fail_after(10):
        beta = await source.get_worker(PODS["beta"]["worker_id"])
    assert beta.status == "starting"


async def test_no_data_dir_lists_nothing(tmp_path: Path) -> None:
    source = LocalPodSource("pods", YoiHome(None, None))
    missing = LocalPodSource("missing", tmp_path / "nowhere")
    with trio.fail_after(10):
        assert (await source.list_workers()).items == ()
        assert (await source.describe()).error == "no yoi data directory is configured"
        assert (await missing.list_workers()).items == ()
        (diagnostic,) = await missing.diagnostics()
    assert diagnostic.code == "compat_pods_dir_unreadable"
    assert str(tmp_path) not in diagnostic.message


async def test_read_only(home: Path) -> None:
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    alpha = PODS["alpha"]["worker_id"]
    with trio.fail_after(10):
        for attempt in (
            lambda: source.create_worker(),
            lambda: source.create_worker(scopes=["workdir:/x"]),
            lambda: source.send_input(alpha, "hi"),
            lambda: source.cancel(alpha),
            lambda: source.stop(alpha),
        ):
            with pytest.raises(OperationUnsupportedError):
                await attempt()
        with pytest.raises(OperationUnsupportedError):
            async with source.subscribe(alpha):
                pass
        view = await source.describe()
    assert (view.status, view.authority) == ("read-only", False)
    assert view.workers["live"] == 3
    assert (view.workers["stale"], view.workers["stopped"]) == (1, 1)


async def test_unknown_hidden_and_bad_arguments(home: Path) -> None:
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    with trio.fail_after(10):
        for worker_id in (
            PODS["theta"]["worker_id"],
            PODS["epsilon"]["worker_id"],
            "x",
        ):
            with pytest.raises(WorkerNotFoundError):
                await source.get_worker(worker_id)
            with pytest.raises(WorkerNotFoundError):
                await source.transcript(worker_id)
        for bad, path in [
            ({"status": "sleeping"}, "status"),
            ({"limit": 0}, "limit"),
            ({"cursor": "nope"}, "cursor"),
        ]:
            with pytest.raises(InvalidInputError) as caught:
                await source.list_workers(**bad)  # type: ignore[arg-type]
            assert caught.value.path == path


async def test_a_segment_log_with_bad_lines_skips_them(home: Path) -> None:
    log = next((home / "sessions").glob("019ee442*/*.jsonl"))
    with log.open("ab") as file:
        file.write(b'{"kind":"user_input","ts":1,"segm\n\xff\xfe\n{"kind":"mystery"}\n')
    source = LocalPodSource("local-pod-runtime", home, workspace_root=ROOT)
    alpha = PODS["alpha"]["worker_id"]
    with trio.fail_after(10):
        page = await source.transcript(alpha)
        diagnostics = await source.diagnostics()
    assert len(page.items) == len(PODS["alpha"]["transcript_active_segment"])
    (note,) = [d for d in diagnostics if d.code == "compat_session_invalid"]
    assert note.worker_id == alpha
    assert "2 unusable line(s)" in note.message
    assert os.fspath(log) not in note.message
