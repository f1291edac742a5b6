"""``examples/workspace_demo.py`` runs, so it cannot rot (on the real model)."""

from __future__ import annotations

import pytest
from test_examples import run_example


@pytest.mark.llm
async def test_workspace_demo() -> None:
    output = await run_example("workspace_demo.py")
    assert "workspace demo (demo), store sqlite" in output
    assert "runtime embedded (embedded): serving" in output
    assert "runtime rt-office (remote): serving" in output
    assert "runtime legacy-pods (compat-local-pod): read-only" in output
    assert "[embedded] turn.completed" in output
    assert output.count("[rt-office] turn.completed") == 2
    assert "old pod 'helper-2024': stale, stale True" in output
    assert "diagnostic of legacy-pods: compat_pod_stale" in output
    assert "  assistant: A tower that guides ships." in output
    assert "input refused: 501 operation_unsupported" in output
    assert "rt-office is down: unavailable" in output
    assert "create refused: 503 runtime_unavailable" in output
    assert "(diagnostics: ['runtime_unavailable'])" in output
    assert "rt-office is back: serving" in output
    assert "'reset of rt-office': 1" in output
    assert "'events of embedded'" in output
