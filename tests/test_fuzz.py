"""Property-based fuzzing of the runtime process against its OpenAPI document.

schemathesis generates valid and invalid requests for every operation; the
process must answer each with a documented status and a body matching the
schema, and never a 5xx except the documented ``501 operation_unsupported``
(a ``coder`` profile on this Companion-only Runtime).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, checks

CONFIG = Path(__file__).parent / "conformance" / "runtime.toml"
TOKEN = "fuzz-token-7c1d"


@pytest.fixture(scope="module")
def process_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    token_file = tmp_path_factory.mktemp("fuzz") / "token"
    token_file.write_text(TOKEN)
    child = subprocess.Popen(
        [sys.executable, "-m", "yoi_runtime", "--bind", "127.0.0.1:0",
         "--config", str(CONFIG), "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True,
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
    return schemathesis.openapi.from_url(
        process_url + "/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )


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
        case.validate_response(response, excluded_checks=[checks.not_a_server_error])

    check()


def test_no_server_errors_and_documented_responses(
    api_schema: schemathesis.BaseSchema, process_url: str
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # Every operation but the document itself, which schemathesis skips.
    labels = {operation.label for operation in operations}
    assert labels == {
        "GET /v1/runtime", "GET /v1/diagnostics", "GET /v1/health",
        "GET /v1/workers", "POST /v1/workers", "GET /v1/workers/{worker_id}",
        "POST /v1/workers/{worker_id}/input", "POST /v1/workers/{worker_id}/stop",
        "POST /v1/workers/{worker_id}/cancel",
        "GET /v1/workers/{worker_id}/transcript",
    }  # fmt: skip
    for operation in operations:
        fuzz(operation, process_url)
