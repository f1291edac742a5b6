"""The conformance suite's fixtures: one Runtime interface, every implementation.

Every test here runs against each implementation of
:class:`yoi_runtime.RuntimeAPI`: the embedded :class:`yoi_runtime.Runtime` on
the memory store (id ``embedded``) and on the durable SQLite store
(``embedded-sqlite``); :class:`yoi_runtime.client.RuntimeClient` talking to a
real ``yoi-runtime`` process started for the test, on either store
(``remote``, ``remote-sqlite``); and the workspace's reconnecting wrapper of
that client (``reconnecting``). All offer the engines ``echo``, ``hang``,
``slow`` and ``fail`` (``support.scripted_engines`` and ``runtime.toml``).
The tests are typed against :class:`~yoi_runtime.RuntimeAPI` and hold no
exception for any implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conformance.support import open_runtime_process, scripted_engines

from yoi_runtime import RuntimeAPI, open_runtime
from yoi_runtime.client import open_runtime_client
from yoi_workspace import RemoteRuntimeConfig, SecretRef
from yoi_workspace._remote import ReconnectingRuntime

KINDS = ["embedded", "embedded-sqlite", "remote", "remote-sqlite", "reconnecting"]


@pytest.fixture(params=KINDS)
def runtime_kind(request: pytest.FixtureRequest) -> str:
    """Which implementation :func:`runtime` is."""
    kind: str = request.param
    return kind


@pytest.fixture
def concurrent_inputs(runtime_kind: str) -> int:
    """How many inputs a test sends at once: 1000 to a Runtime in this
    process, 100 where each is an HTTP round trip (the suite's time, not a
    difference in behaviour)."""
    return 1000 if runtime_kind.startswith("embedded") else 100


@pytest.fixture
async def runtime(runtime_kind: str, tmp_path: Path) -> AsyncIterator[RuntimeAPI]:
    """A fresh Runtime: embedded, a client of a fresh process, or the
    workspace's reconnecting wrapper of one."""
    if runtime_kind.startswith("embedded"):
        store = "memory" if runtime_kind == "embedded" else f"sqlite:{tmp_path}/db"
        async with open_runtime(
            scripted_engines(), default_engine="echo", store=store
        ) as embedded:
            yield embedded
        return
    args = (
        ("--store", f"sqlite:{tmp_path}/db") if runtime_kind.endswith("sqlite") else ()
    )
    async with open_runtime_process(tmp_path, args=args) as server:
        if runtime_kind == "reconnecting":
            async with open_runtime_client(server.url, token=server.token) as probe:
                runtime_id = probe.runtime_id
            token = SecretRef(file=str(tmp_path / "runtime-token"))
            api = ReconnectingRuntime(
                RemoteRuntimeConfig(runtime_id, server.url, token, connect_timeout=10)
            )
            try:
                # Reached once, as a client is when opened: capabilities()
                # answers from what the process reported then.
                await api.summary()
                yield api
            finally:
                await api.aclose()
        else:
            async with open_runtime_client(server.url, token=server.token) as client:
                yield client
    assert server.process.returncode == 0, "SIGTERM should end the process cleanly"
