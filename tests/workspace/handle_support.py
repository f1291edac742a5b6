"""Shared by the workspace handle tests: the three handle kinds, seeded alike,
local pods written to disk, a free loopback port, and a check that secrets
stay hidden.

:func:`open_handle_case` gives a :class:`HandleCase` for ``embedded`` (an
:class:`~yoi_workspace._handle.EmbeddedRuntimeHandle` over an in-process
Runtime), ``remote`` (a :class:`~yoi_workspace._remote.RemoteRuntimeHandle`
on a real ``yoi-runtime`` process) or ``compat`` (a
:class:`~yoi_workspace._compat.LocalPodSource` over pods this module writes).
``HandleCase.seed`` makes the same Worker on each: a display name and echo
turns (the compat side writes the session log the echo engine would have).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import traceback
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from conformance.support import (
    CONFIG,
    events_until,
    open_runtime_process,
    scripted_engines,
)

from yoi_runtime import Event, open_runtime
from yoi_workspace._compat import LocalPodSource
from yoi_workspace._handle import EmbeddedRuntimeHandle, RuntimeHandle
from yoi_workspace._remote import RemoteRuntimeConfig, open_remote_handle
from yoi_workspace._secrets import SecretRef
from yoi_workspace._views import RuntimeKind, WorkerView

#: The id the remote side's process is configured with.
REMOTE_ID = "rt-remote"
#: The id of the compat source.
COMPAT_ID = "rt-pods"
#: When the first seeded pod started; later ones start a second apart each.
EPOCH = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)

KINDS = {
    "embedded": RuntimeKind.EMBEDDED,
    "remote": RuntimeKind.REMOTE,
    "compat": RuntimeKind.COMPAT_LOCAL_POD,
}


def runtime_config(
    directory: Path, runtime_id: str = REMOTE_ID, **settings: Any
) -> Path:
    """Write the conformance ``runtime.toml`` with a ``runtime_id`` (and more
    top-level settings) to ``directory``; return its path."""
    lines = [f"runtime_id = {json.dumps(runtime_id)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = directory / "runtime-config.toml"
    path.write_text("\n".join([*lines, CONFIG.read_text()]))
    return path


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def session_of(*turns: str, at: datetime.datetime = EPOCH) -> list[dict[str, Any]]:
    """The session log lines of echo turns: each input, then ``echo: <input>``."""
    lines = []
    for text in turns:
        lines.append({"role": "user", "text": text, "at": at.isoformat()})
        lines.append(
            {"role": "assistant", "text": f"echo: {text}", "at": at.isoformat()}
        )
    return lines


def write_pod(
    pods_dir: Path,
    pod_name: str,
    *,
    pid: int | None = None,
    status: str = "idle",
    profile: str = "companion",
    display_name: str | None = None,
    started_at: str = EPOCH.isoformat(),
    socket_path: str | None = None,
    session_path: str | None = None,
    session: Sequence[dict[str, Any] | str] | None = (),
    **extra: Any,
) -> Path:
    """Write ``pods_dir/<pod_name>/metadata.json`` and its session log.

    Args:
        pid: The pod's process; None means this test process (alive).
        session: Session log lines (dicts become JSON, strings are written
            as they are); None writes no log.
        extra: More metadata keys, or ones replacing the defaults.

    Returns:
        The pod's directory.
    """
    directory = pods_dir / pod_name
    directory.mkdir(parents=True, exist_ok=True)
    if session_path is None:
        session_path = str(directory / "session.jsonl")
    metadata = {
        "pod_name": pod_name,
        "pid": os.getpid() if pid is None else pid,
        "socket_path": socket_path or str(directory / "pod.sock"),
        "session_path": session_path,
        "profile": profile,
        "display_name": display_name,
        "started_at": started_at,
        "status": status,
        **extra,
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))
    if session is not None:
        lines = [
            line if isinstance(line, str) else json.dumps(line) for line in session
        ]
        (directory / session_path).write_text("".join(f"{line}\n" for line in lines))
    return directory


@attrs.define(eq=False)
class HandleCase:
    """One handle under test and how to give it Workers.

    Attributes:
        name: ``embedded``, ``remote`` or ``compat``.
        handle: The handle.
        pods_dir: Where the compat side's pods live (None otherwise).
    """

    name: str
    handle: RuntimeHandle
    pods_dir: Path | None = None
    _pods: int = 0

    @property
    def kind(self) -> RuntimeKind:
        return KINDS[self.name]

    @property
    def read_only(self) -> bool:
        return self.pods_dir is not None

    async def seed(self, display_name: str | None, *turns: str) -> WorkerView:
        """Make an idle Worker that ran echo ``turns``; return its projection."""
        if self.pods_dir is not None:
            self._pods += 1
            name = f"pod{self._pods}-{display_name or 'anon'}"
            started = EPOCH + datetime.timedelta(seconds=self._pods)
            write_pod(
                self.pods_dir,
                name,
                display_name=display_name,
                started_at=started.isoformat(),
                session=session_of(*turns, at=started),
            )
            return (await self.handle.list_workers()).workers[-1]
        worker = await self.handle.create_worker(display_name=display_name)
        async with self.handle.subscribe(worker.worker_id) as events:
            for text in turns:
                await self.handle.send_input(worker.worker_id, text)
                await events_until(events, "turn.completed")
                idle = (await events.receive_batch(1))[0]
                assert isinstance(idle, Event)
                assert idle.type == "worker.status"
        return await self.handle.get_worker(worker.worker_id)

    async def mark_stopped(self, worker: WorkerView) -> None:
        """Stop a seeded Worker (the compat side rewrites its metadata)."""
        if self.pods_dir is None:
            await self.handle.stop(worker.worker_id)
            return
        for metadata in self.pods_dir.glob("*/metadata.json"):
            data = json.loads(metadata.read_text())
            if data["display_name"] == worker.display_name:
                data["status"] = "stopped"
                metadata.write_text(json.dumps(data))


@asynccontextmanager
async def open_handle_case(name: str, directory: Path) -> AsyncIterator[HandleCase]:
    """Open a handle of kind ``name`` (see the module docstring)."""
    if name == "embedded":
        async with open_runtime(scripted_engines(), default_engine="echo") as runtime:
            yield HandleCase(name, EmbeddedRuntimeHandle(runtime))
        return
    if name == "compat":
        pods_dir = directory / "pods"
        pods_dir.mkdir()
        yield HandleCase(name, LocalPodSource(COMPAT_ID, pods_dir), pods_dir)
        return
    assert name == "remote", name
    config = runtime_config(directory)
    async with open_runtime_process(directory, config=config) as server:
        token = SecretRef(file=str(directory / "runtime-token"))
        remote = RemoteRuntimeConfig(REMOTE_ID, server.url, token=token)
        async with open_remote_handle(remote) as handle:
            yield HandleCase(name, handle)
    assert server.process.returncode == 0, "SIGTERM should end the process cleanly"


def shown(*values: object) -> str:
    """Everything a caller or a log could see of ``values``: ``str`` and
    ``repr``, and a formatted traceback (with causes) for exceptions."""
    parts = []
    for value in values:
        parts += [str(value), repr(value)]
        if isinstance(value, BaseException):
            parts.append("".join(traceback.format_exception(value)))
    return "\n".join(parts)


def assert_hidden(secrets: Iterable[str], *values: object) -> None:
    """Assert that no secret (URL, token, path) shows in ``values``."""
    text = shown(*values)
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked"
