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
TurnResult TurnStream TurnNotCompletedError TurnFailedError TurnCancelledError
TurnInterruptedError to_json
Completion Retry TurnListener ContextLengthExceededError EngineStreamIncompleteError
LimitExceededError StoreDamagedError StoreWriteError StorageFullError
RuntimeAPI EventStream TurnHost WorkerOptions ask open_turn forwarded
EventData EventError TurnAcceptedData TurnCancelledData TurnCompletedData
TurnFailedData TurnInterruptedData TurnRetryingData TurnStartedData
TurnTextDeltaData WorkerCreatedData WorkerFailedData WorkerStatusData
WorkerStoppedData Page
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
    for name in ("Failed", "Cancelled", "Interrupted"):
        error = getattr(yoi_runtime, f"Turn{name}Error")
        assert issubclass(error, yoi_runtime.TurnNotCompletedError)
        assert error.code == f"turn_{name.lower()}"
    assert issubclass(yoi_runtime.TurnNotCompletedError, yoi_runtime.WorkerError)


def test_the_local_model_launcher_has_a_public_home() -> None:
    import yoi_runtime.local_model as local_model
    import yoi_runtime.testing as testing

    assert set(local_model.__all__) == {
        "DEFAULT_N_CTX",
        "LocalModelServer",
        "StartupError",
        "find_smollm2_model",
        "open_local_model_server",
    }
    assert all(hasattr(local_model, name) for name in local_model.__all__)
    # The names tests know stay as re-exports, not copies.
    assert testing.open_llama_server is local_model.open_local_model_server
    assert testing.LlamaServer is local_model.LocalModelServer
    assert testing.StartupError is local_model.StartupError


def test_the_local_model_engine_fits_its_server() -> None:
    from yoi_runtime.local_model import LocalModelServer

    server = LocalModelServer("http://127.0.0.1:9/v1", "smollm2", n_ctx=512)
    engine = server.chat_engine(temperature=0.0, max_tokens=64)
    assert (engine.base_url, engine.model) == (server.base_url, "smollm2")
    assert (engine.context_tokens, engine.max_concurrent) == (512, 1)
    assert engine.tokenizer == "llama-cpp-python"
    assert (engine.temperature, engine.max_tokens) == (0.0, 64)


def test_importing_the_core_imports_no_server_framework() -> None:
    code = (
        "import sys, yoi_runtime, yoi_runtime.testing, yoi_runtime.local_model; "
        "print(sorted(m for m in ('quart', 'quart_trio', 'hypercorn', "
        "'trio_websocket') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
