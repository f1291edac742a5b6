"""The public namespace of yoi_workspace: names exist, nothing else leaks."""

from __future__ import annotations

import subprocess
import sys
import types

import yoi_runtime
import yoi_workspace

PUBLIC = """
ALLOW_ALL ANONYMOUS EVERYONE_SEES_ALL AggregateItem AggregateSubscription AllowAll
AuditRecord AuditSink Caller Command CommandPolicy CommandRefusedError
EmbeddedRuntimeHandle EventStream EveryoneSeesAll HideWorkers JSONLinesAuditSink
LocalPodSource MemoryAuditSink Operation RemoteRuntimeConfig RemoteRuntimeHandle
RuntimeExistsError RuntimeHandle RuntimeKind RuntimeRegistry RuntimeView SecretRef
RuntimeAdapter ReconnectingRuntime
StreamReset UnknownRuntimeError VisibilityPolicy WorkerEventStream WorkerListing
WorkerNotVisibleError WorkerView WorkerViewPage YoiHome open_remote_handle
pod_worker_id resolve_yoi_home
""".split()


def test_public_names_exist() -> None:
    missing = [name for name in PUBLIC if not hasattr(yoi_workspace, name)]
    assert missing == []
    exported = {
        name
        for name, value in vars(yoi_workspace).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported - set(PUBLIC) == set()
    # One event-stream type, the Runtime API's.
    assert yoi_workspace.EventStream is yoi_runtime.EventStream


def test_errors_join_the_runtime_tree() -> None:
    for name in PUBLIC:
        value = getattr(yoi_workspace, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, yoi_runtime.YoiRuntimeError), name
            assert name.endswith("Error")
    assert issubclass(
        yoi_workspace.WorkerNotVisibleError, yoi_runtime.WorkerNotFoundError
    )
    assert yoi_workspace.CommandRefusedError.code == "command_refused"


def test_importing_the_registry_imports_no_server_framework() -> None:
    code = (
        "import sys, yoi_workspace; "
        "print(sorted(m for m in ('quart', 'quart_trio', 'hypercorn') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yoi_workspace", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--bind HOST:PORT" in done.stdout
    assert "--config" in done.stdout
