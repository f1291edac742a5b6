"""The serving layer's public namespace (``yoi_runtime.serving``, issue 13).

Its names exist and are the only ones; core helpers it re-exports are the
core's own objects (not copies); the workspace backend imports no private
``yoi_runtime`` module; and ``import yoi_runtime`` loads no server module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import yoi_runtime.serving as serving
from yoi_runtime import InvalidInputError

PUBLIC = """
ASGIApp AppMetrics CancelBody CommandParser ConfigError ConnectionLimits
CreateWorkerBody CURSOR DISPLAY_TEXT_PATTERN ERROR_ENVELOPE EngineConfig EventSource
FileConfig GuardSettings GuardedApp HEADER ID_PATTERN IDEMPOTENCY_KEY InputBody
InvalidJSONError LIMIT LOOPBACK_HOSTS LogSettings MAX_JSON_DEPTH
MethodNotAllowedError ObservedApp PayloadTooLargeError REQUEST_ID RouteNotFoundError
STATUS Schemas SecretRef ServeFunction StopBody StreamControl StreamSettings
TOOL_PROFILES
WebSocketRequiredError add_log_arguments check_engine_secrets check_id config_converter
configure_logging converter drain_logged environment_help error_response
event_stream_response install_error_handlers install_metrics_route
install_route_names is_loopback item_cursor item_from_json item_to_json json_response
listen_failure load_config make_engines new_request_id parse_bind parse_count
check_limit position_of
parse_json parse_store_spec probe_engines query_int raise_open_file_limit read_body
read_config_file ready_now ready_within refuse_control_characters request_bodies
run_server run_server_command run_until_signal sane_request_id serve_app serve_observed
serve_event_stream single_error sse_resume sse_resume_count startup_error
structure_config PageForm page_form register_page
""".split()

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_exist_and_nothing_else() -> None:
    missing = [name for name in PUBLIC if not hasattr(serving, name)]
    assert missing == []
    exported = {
        name
        for name, value in vars(serving).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported - set(PUBLIC) == set()


def test_core_helpers_are_re_exported_not_copied() -> None:
    from yoi_runtime import _checks, _cli, _ids, _stream_protocol, _util, _wire

    assert serving.parse_count is _util.parse_count
    assert serving.check_limit is _checks.check_limit
    assert serving.position_of is _stream_protocol.position_of
    assert serving.single_error is _util.single_error
    assert serving.check_id is _ids.check_id
    assert serving.converter is _wire.converter
    assert serving.item_to_json is _wire.item_to_json
    assert serving.register_page is _wire.register_page
    assert serving.run_server_command is _cli.run_server_command


def test_check_id_accepts_ids_and_names_the_field() -> None:
    for good in ("a", "rt-1", "A.b_c:d-e", "x" * 128):
        serving.check_id(good, "worker_id")
    for bad in ("", "-a", "a b", "é", "x" * 129, 5):
        with pytest.raises(InvalidInputError) as caught:
            serving.check_id(bad, "config.runtime_id")  # type: ignore[arg-type]
        assert caught.value.details()["path"] == "config.runtime_id"


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (``from yoi_runtime import _ask`` counts
    as importing ``yoi_runtime._ask``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_the_workspace_imports_only_public_runtime_modules() -> None:
    allowed = {
        "yoi_runtime",
        "yoi_runtime.client",
        "yoi_runtime.serving",
        "yoi_runtime.testing",
    }
    found = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "yoi_workspace").rglob("*.py"))
        for module in _imported_modules(path)
        if module.startswith("yoi_runtime") and module not in allowed
    }
    assert found == set()


def test_the_core_loads_no_server_module() -> None:
    code = (
        "import sys, yoi_runtime\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('yoi_runtime._server', 'yoi_runtime.serving', 'quart', 'hypercorn'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_importing_the_layer_loads_a_server_library_only_on_first_use() -> None:
    code = (
        "import sys; import yoi_runtime.serving as s; "
        "before = sorted(m for m in ('quart', 'hypercorn', 'prometheus_client') "
        "if m in sys.modules); "
        "s.json_response; "
        "print(before, 'quart' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[] True"
