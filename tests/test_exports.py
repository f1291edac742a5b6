"""The public namespace: names exist, private modules stay private."""

from __future__ import annotations

import subprocess
import sys
import types

import yoi_runtime

PUBLIC = """
CancelOutcome CancelResult Capabilities COMPANION Diagnostic Engine EngineConfigError
EngineConnectError EngineError EngineInfo EngineProtocolError EngineStatusError
EngineTimeoutError Event EventType Gap InternalError InvalidInputError Limits Message
UnauthorizedError IdempotencyConflictError ScopeConflictError StoreError
OpenAIChatEngine OperationUnsupportedError Profile PROTOCOL_VERSION ReplayEngine
Runtime RuntimeSummary RuntimeUnavailableError ScriptedEngine ScriptedReply
Subscription TranscriptEntry TranscriptPage TurnError TurnRequest TurnStatus
TurnSummary Usage WorkerBusyError WorkerError WorkerExistsError WorkerNotFoundError
WorkerPage WorkerStatus WorkerStoppedError WorkerSummary YoiRuntimeError
open_runtime __version__
""".split()


def test_public_names_exist() -> None:
    missing = [name for name in PUBLIC if not hasattr(yoi_runtime, name)]
    assert missing == []
    exported = {
        name
        for name, value in vars(yoi_runtime).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported - set(PUBLIC) == set()


def test_errors_form_one_tree() -> None:
    for name in PUBLIC:
        value = getattr(yoi_runtime, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, yoi_runtime.YoiRuntimeError), name
            assert name.endswith("Error")
    assert issubclass(yoi_runtime.WorkerBusyError, yoi_runtime.WorkerError)
    assert yoi_runtime.WorkerBusyError.code == "worker_busy"


def test_importing_the_core_imports_no_server_framework() -> None:
    code = (
        "import sys, yoi_runtime, yoi_runtime.testing; "
        "print(sorted(m for m in ('quart', 'quart_trio', 'hypercorn', "
        "'trio_websocket') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
