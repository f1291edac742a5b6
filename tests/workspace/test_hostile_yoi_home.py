"""No content of a yoi home makes any route of the workspace fail.

Each case takes a healthy yoi home (two Pods in yoi's format), breaks it in
one way (bad JSON, deep nesting, a directory or a FIFO where a file should
be, a symlink loop, unreadable permissions, a huge sparse file, hostile
ids, names and types) and serves it beside an embedded Runtime. Every GET
route (the legacy lists, the project's own routes, every listed Worker's
detail and transcript, diagnostics) must answer below 500, the embedded
Runtime's Worker must still be listed, and the damage must show as a
diagnostic of the compat source. The last case breaks everything at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from conformance.support import scripted_engines
from workspace.handle_support import WORKSPACE_ROOT, write_pod
from workspace.workspace_support import serve_registry

from yoi_runtime import open_runtime
from yoi_workspace import EmbeddedRuntimeHandle, LocalPodSource, RuntimeRegistry
from yoi_workspace._identity import WorkspaceIdentity

DEEP = b"[" * 200_000 + b"]" * 200_000
GIB = 1 << 30


def metadata(home: Path, name: str = "victim") -> Path:
    return home / "pods" / name / "metadata.json"


def segment_log(home: Path) -> Path:
    return next((home / "sessions").glob("*/*.jsonl"))


def replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no room on disk."""
    with path.open("wb") as file:
        file.truncate(size)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def set_metadata(home: Path, **fields: object) -> None:
    path = metadata(home)
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def unreadable(path: Path) -> None:
    path.chmod(0)


def bad_name(home: Path) -> None:
    os.mkdir(os.fsencode(home / "pods") + b"/\xff\xfe-not-utf8")
    write(
        home / "pods" / "ctl\x07\nname" / "metadata.json", b'{"pod_name": "a/b\\u0007"}'
    )


CASES: dict[str, Callable[[Path], None]] = {
    "metadata not json": lambda h: write(metadata(h), b'{"pod_name": "victim", '),
    "metadata deeply nested": lambda h: write(metadata(h), DEEP),
    "metadata not utf-8": lambda h: write(metadata(h), b'{"pod_name": "\xff"}'),
    "metadata is a directory": lambda h: replace_with_dir(metadata(h)),
    "metadata is a fifo": lambda h: fifo(metadata(h)),
    "metadata is a symlink loop": lambda h: loop(metadata(h)),
    "metadata unreadable": lambda h: unreadable(metadata(h)),
    "metadata huge": lambda h: sparse(metadata(h), GIB),
    "metadata NaN": lambda h: write(metadata(h), b'{"pod_name": NaN}'),
    "metadata wrong types": lambda h: set_metadata(h, active=5, spawned_children=None),
    "session id escapes": lambda h: set_metadata(
        h, active={"session_id": "../../../etc", "segment_id": "../passwd"}
    ),
    "pods dir is a file": lambda h: (
        os.rename(h / "pods", h / "pods-gone"),
        write(h / "pods", b"x"),
    ),
    "pods.json not json": lambda h: write(
        h / "run" / "pods.json", b'{"allocations": ['
    ),
    "pods.json deeply nested": lambda h: write(h / "run" / "pods.json", DEEP),
    "pods.json is a directory": lambda h: replace_with_dir(h / "run" / "pods.json"),
    "pods.json huge": lambda h: sparse(h / "run" / "pods.json", GIB),
    "pods.json wild values": lambda h: write(
        h / "run" / "pods.json",
        b'{"allocations": [{"pod_name": "victim", "pid": 100000000000000000000},'
        b' {"pod_name": 5, "pid": "1"}, 7, null]}',
    ),
    "log lines broken": lambda h: write(
        segment_log(h), b'{"kind":"user_input"\n' + DEEP + b"\n\xff\n{}\n[]\n"
    ),
    "log is a directory": lambda h: replace_with_dir(segment_log(h)),
    "log huge": lambda h: sparse(segment_log(h), GIB),
    "log is a fifo": lambda h: fifo(segment_log(h)),
    "names hostile": bad_name,
}


def break_everything(home: Path) -> None:
    for name, mutate in CASES.items():
        if name in ("pods dir is a file",):
            continue
        try:
            mutate(home)
        except (FileNotFoundError, FileExistsError, StopIteration, OSError):
            pass  # an earlier case already removed what this one breaks


async def walk_every_route(home: Path) -> tuple[list[dict[str, object]], str]:
    """Serve ``home`` beside an embedded Runtime; call every GET route.

    Returns:
        The diagnostics and every body read, joined.
    """
    bodies: list[str] = []
    identity = WorkspaceIdentity("ws-test", "project", WORKSPACE_ROOT)
    async with open_runtime(
        scripted_engines(), default_engine="echo", runtime_id="emb"
    ) as rt:
        registry = RuntimeRegistry()
        registry.add(EmbeddedRuntimeHandle(rt))
        registry.add(LocalPodSource("pods", home, workspace_root=WORKSPACE_ROOT))
        ada = await rt.create_worker(display_name="Ada")
        async with serve_registry(registry, identity=identity) as served:
            http = served.http

            async def get(path: str) -> object:
                response = await http.get(path)
                assert response.status_code < 500, (path, response.text)
                bodies.append(response.text)
                return response.json()

            hosts = await get("/api/hosts")
            await get("/api/runtimes")
            workers = await get("/api/workers")
            assert isinstance(workers, dict)
            assert isinstance(hosts, dict)
            assert ada.worker_id in [w["worker_id"] for w in workers["items"]]
            for host in hosts["items"]:
                await get(f"/api/hosts/{host['host_id']}/workers")
            await get("/api/workspace")
            for runtime_id in ("emb", "pods"):
                await get(f"/api/runtimes/{runtime_id}")
                page = await get(f"/api/runtimes/{runtime_id}/workers")
                assert isinstance(page, dict)
                for worker in page["workers"]:
                    base = f"/api/runtimes/{runtime_id}/workers/{worker['worker_id']}"
                    await get(base)
                    await get(f"{base}/transcript")
            diagnostics = await get("/api/diagnostics")
            assert isinstance(diagnostics, dict)
    return diagnostics["diagnostics"], "\n".join(bodies)


def healthy_home(tmp_path: Path) -> Path:
    home = tmp_path / "yoi-home"
    write_pod(home, "victim", "hello")
    write_pod(home, "zz-bystander", "still here", allocated=False)
    return home


@pytest.mark.parametrize("case", [*CASES, "everything at once"])
async def test_hostile_trees_are_diagnostics_never_5xx(
    tmp_path: Path, case: str
) -> None:
    home = healthy_home(tmp_path)
    if case == "everything at once":
        break_everything(home)
    else:
        CASES[case](home)
    with trio.fail_after(60):
        diagnostics, bodies = await walk_every_route(home)
    sources = {d["source"] for d in diagnostics}
    assert sources <= {"registry", "emb", "pods"}
    assert str(tmp_path) not in bodies
    assert "etc/passwd" not in bodies
    # The damage is a diagnostic of the compat source (root reads a file
    # whatever its permissions).
    if not (case == "metadata unreadable" and os.geteuid() == 0):
        assert any(d["source"] == "pods" for d in diagnostics), case
    # Only the victim is damaged: the bystander Pod is still a Worker,
    # unless the whole Pods directory went.
    if case != "pods dir is a file":
        assert "zz-bystander" in bodies


def test_a_huge_file_is_refused_by_its_size_not_read(tmp_path: Path) -> None:
    from yoi_workspace._pod_files import FileProblem, read_capped

    path = tmp_path / "huge"
    sparse(path, 4 * GIB)
    with pytest.raises(FileProblem) as refused:
        read_capped(path, 1 << 20)
    assert refused.value.message == f"file is larger than {1 << 20} bytes"
