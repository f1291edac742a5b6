"""Property-based fuzzing of a real ``yoi-workspace`` process (browser API).

The backend serves no OpenAPI document of its own, so the test builds one
(:func:`browser_api`): every HTTP route of ``docs/workspace.md`` with the
statuses it documents and loose response bodies (objects; the project
routes' errors in the JSON envelope). Request bodies are the runtime
process's own schemas (``yoi_runtime._server._openapi``), which the browser
API accepts field for field. The process runs in ``token`` mode with an
embedded scripted Runtime; schemathesis generates requests for every
operation, and the process must answer each with a documented status and
never a 5xx except ``501 operation_unsupported`` (a ``coder`` profile on
the Companion-only embedded Runtime); the token never appears in an answer.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import APIOperation, checks

from yoi_runtime import WorkerStatus
from yoi_runtime._server._openapi import openapi_document

TOKEN = "ws-fuzz-token-3a9f0c2d7e1b4a5c6d7e8f9012345678"
RUNTIME_ID = "emb"

CONFIG = f"""
[embedded]
runtime_id = "{RUNTIME_ID}"
enable_test_engines = true
default_engine = "echo"
[embedded.engines.echo]
kind = "scripted"

[auth]
mode = "token"
[[auth.tokens]]
caller = "fuzz"
roles = ["admin"]
token_file = "token"
"""

_ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_OBJECT = {"type": "object"}
#: What ``/api/hosts/{host_id}/workers`` takes (else its legacy 400).
_HOST_ID = {"type": "string", "pattern": "^[A-Za-z0-9_:-]{1,120}$"}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _answers(ok: str, *errors: str, legacy: bool = False) -> dict[str, Any]:
    error = _OBJECT if legacy else _ENVELOPE
    return {
        ok: _answer(_OBJECT, "success"),
        "401": _answer(_ENVELOPE, "no or wrong credentials"),
        **{code: _answer(error, "refused") for code in errors},
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def browser_api() -> dict[str, Any]:
    """An OpenAPI 3.1 description of the browser API's HTTP routes."""
    runtime = openapi_document(("companion",), ("echo",))["paths"]

    def body(path: str) -> dict[str, Any]:
        return runtime[path]["post"]["requestBody"]  # type: ignore[no-any-return]

    runtime_id = _path("runtime_id", {"enum": [RUNTIME_ID, "rt-unknown"]})
    worker_id = _path("worker_id", {"type": "string"})
    page = [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        _query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}),
    ]
    status = _query("status", {"enum": [member.value for member in WorkerStatus]})
    get_errors = ("400", "404", "503")
    post_errors = ("400", "403", "404", "409", "413", "501", "503")
    worker = "/api/runtimes/{runtime_id}/workers/{worker_id}"
    paths: dict[str, Any] = {
        "/api/health": {
            "get": {
                "security": [],
                "responses": {
                    "200": _answer(_OBJECT, "serving"),
                    "503": _answer(_OBJECT, "draining"),
                },
            }
        },
        "/api/session": {
            "get": {"responses": _answers("200")},
            "post": {"responses": _answers("200")},
            "delete": {"responses": _answers("200")},
        },
        "/api/runtimes/{runtime_id}": {
            "get": {"parameters": [runtime_id], "responses": _answers("200", "404")}
        },
        "/api/runtimes/{runtime_id}/workers": {
            "get": {
                "parameters": [runtime_id, status, *page],
                "responses": _answers("200", *get_errors),
            },
            "post": {
                "parameters": [runtime_id],
                "requestBody": body("/v1/workers"),
                "responses": _answers("201", *post_errors),
            },
        },
        worker: {
            "get": {
                "parameters": [runtime_id, worker_id],
                "responses": _answers("200", *get_errors),
            }
        },
        worker + "/input": {
            "post": {
                "parameters": [
                    runtime_id,
                    worker_id,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": body("/v1/workers/{worker_id}/input"),
                "responses": _answers("202", *post_errors),
            }
        },
        worker + "/stop": {
            "post": {
                "parameters": [runtime_id, worker_id],
                "requestBody": body("/v1/workers/{worker_id}/stop"),
                "responses": _answers("200", *post_errors),
            }
        },
        worker + "/cancel": {
            "post": {
                "parameters": [runtime_id, worker_id],
                "requestBody": body("/v1/workers/{worker_id}/cancel"),
                "responses": _answers("200", *post_errors),
            }
        },
        worker + "/transcript": {
            "get": {
                "parameters": [runtime_id, worker_id, *page],
                "responses": _answers("200", *get_errors),
            }
        },
        "/api/diagnostics": {"get": {"responses": _answers("200")}},
        # The original server's routes (legacy error shapes).
        "/api/hosts": {"get": {"responses": _answers("200")}},
        "/api/runtimes": {"get": {"responses": _answers("200")}},
        "/api/workspace": {"get": {"responses": _answers("200")}},
        "/api/workers": {
            "get": {"parameters": [status], "responses": _answers("200", "400")}
        },
        "/api/hosts/{host_id}/workers": {
            "get": {
                "parameters": [_path("host_id", _HOST_ID)],
                "responses": _answers("200", "400", "404", legacy=True),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "yoi-workspace browser API", "version": "test"},
        "paths": paths,
        "components": {
            "schemas": runtime_components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def runtime_components() -> dict[str, Any]:
    """The runtime document's schemas (the request bodies may refer to them)."""
    schemas: dict[str, Any] = openapi_document(("companion",), ("echo",))["components"][
        "schemas"
    ]
    return schemas


@pytest.fixture(scope="module")
def process_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("workspace-fuzz")
    (directory / "token").write_text(TOKEN)
    config = directory / "workspace.toml"
    config.write_text(CONFIG)
    child = subprocess.Popen(
        [sys.executable, "-m", "yoi_workspace", "--bind", "127.0.0.1:0",
         "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, cwd=directory,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match is not None, line
        yield match.group(1)
    finally:
        child.terminate()
        assert child.wait(timeout=30) == 0
        assert child.stdout is not None
        child.stdout.close()


@pytest.fixture(scope="module")
def api_schema(process_url: str) -> schemathesis.BaseSchema:
    document = browser_api()
    validate(document)
    return schemathesis.openapi.from_dict(document)


def fuzz(operation: APIOperation, process_url: str) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = case.call(base_url=process_url, headers=headers, timeout=30)
        if response.status_code >= 500:
            assert response.status_code == 501, response.text
            assert response.json()["error"]["code"] == "operation_unsupported"
        assert TOKEN not in response.text
        assert TOKEN not in str(response.headers)
        case.validate_response(response, excluded_checks=[checks.not_a_server_error])

    check()


def test_no_server_errors_and_documented_responses(
    api_schema: schemathesis.BaseSchema, process_url: str
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 18
    for operation in operations:
        fuzz(operation, process_url)
