"""The conformance suite's fixture: one Runtime interface, two implementations.

Every test here runs four times: against the embedded
:class:`yoi_runtime.Runtime` on the memory store (id ``embedded``) and on the
durable SQLite store (``embedded-sqlite``), and against
:class:`yoi_runtime.client.RuntimeClient` talking to a real ``yoi-runtime``
process started for the test, on either store (``remote``,
``remote-sqlite``). All offer the engines ``echo``,
``hang``, ``slow`` and ``fail`` (``support.scripted_engines`` and
``runtime.toml``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conformance.support import AnyRuntime, open_runtime_process, scripted_engines

from yoi_runtime import open_runtime
from yoi_runtime.client import open_runtime_client


@pytest.fixture(params=["embedded", "embedded-sqlite", "remote", "remote-sqlite"])
async def runtime(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AnyRuntime]:
    """A fresh Runtime: embedded, or a client of a fresh process."""
    if request.param.startswith("embedded"):
        store = "memory" if request.param == "embedded" else f"sqlite:{tmp_path}/db"
        async with open_runtime(
            scripted_engines(), default_engine="echo", store=store
        ) as embedded:
            yield embedded
        return
    args = (
        ("--store", f"sqlite:{tmp_path}/db") if request.param.endswith("sqlite") else ()
    )
    async with open_runtime_process(tmp_path, args=args) as server:
        async with open_runtime_client(server.url, token=server.token) as client:
            yield client
    assert server.process.returncode == 0, "SIGTERM should end the process cleanly"
