"""The original server's routes answer exactly as upstream yoi does.

The oracle is ``shared/fixtures/yoi-local-pods/expected-legacy-api.json``:
upstream's responses for the sample yoi home, workspace root
``/workspace/project`` and workspace id ``0192f0e8-...-000000000001``. Bodies
are compared byte for byte, except what the fixture says varies
(``observed_at``, ``os``, ``arch``), which is checked for its form and then
substituted.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conformance.support import scripted_engines
from workspace.workspace_support import Served, serve_registry

from yoi_runtime import open_runtime
from yoi_workspace import EmbeddedRuntimeHandle, LocalPodSource, RuntimeRegistry
from yoi_workspace._identity import WorkspaceIdentity
from yoi_workspace._yoi_home import YoiHome

FIXTURE = Path(__file__).parents[3] / "shared" / "fixtures" / "yoi-local-pods"
ORACLE = json.loads((FIXTURE / "expected-legacy-api.json").read_text())
RESPONSES = ORACLE["responses"]
WORKSPACE_ID = "0192f0e8-4d84-7d6e-a000-000000000001"
HOST_ID = "local-0192f0e8-4d84-7d6e-a000-000000000001-4c88672e399ef6a5"
IDENTITY = WorkspaceIdentity(WORKSPACE_ID, "project", "/workspace/project")

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00")


def compact(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def with_varying(expected: Any, actual: Any) -> Any:
    """``expected`` with the values the fixture says vary taken from
    ``actual`` (after checking their form)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        merged = {}
        for key, value in expected.items():
            if key == "observed_at" and isinstance(actual.get(key), str):
                assert RFC3339.fullmatch(actual[key]), actual[key]
                merged[key] = actual[key]
            elif key in ("os", "arch") and isinstance(actual.get(key), str):
                assert actual[key]
                assert actual[key] != "unknown"
                merged[key] = actual[key]
            else:
                merged[key] = with_varying(value, actual.get(key))
        return merged
    if isinstance(expected, list) and isinstance(actual, list):
        return [with_varying(e, a) for e, a in zip(expected, actual, strict=False)] + [
            e for e in expected[len(actual) :]
        ]
    return expected


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    home = tmp_path / "yoi-home"
    shutil.copytree(FIXTURE / "yoi-home", home)
    registry = RuntimeRegistry()
    registry.add(
        LocalPodSource("local-pod-runtime", home, workspace_root="/workspace/project")
    )
    async with serve_registry(registry, identity=IDENTITY) as served:
        yield served


@pytest.mark.parametrize("route", list(RESPONSES))
async def test_the_sample_home_answers_byte_for_byte(
    served: Served, route: str
) -> None:
    expected = RESPONSES[route]
    path = route.removeprefix("GET ")
    with trio.fail_after(10):
        response = await served.http.get(path)
    assert response.status_code == expected["status"]
    assert response.headers["content-type"] == "application/json"
    body = with_varying(expected["body"], response.json())
    assert response.content == compact(body)


async def test_workspace_names_the_workspace(served: Served) -> None:
    with trio.fail_after(10):
        body = (await served.http.get("/api/workspace")).json()
    assert list(body) == [
        "workspace_id",
        "display_name",
        "local_root",
        "record_authority",
        "schema_version",
        "auth",
        "extension_points",
    ]
    assert (body["workspace_id"], body["display_name"], body["local_root"]) == (
        WORKSPACE_ID,
        "project",
        "/workspace/project",
    )
    assert body["extension_points"]["host_worker_bridge"]["status"] == "read_only_local"


async def test_an_unconfigured_data_dir_is_degraded() -> None:
    registry = RuntimeRegistry()
    registry.add(LocalPodSource("local-pod-runtime", YoiHome(None, None)))
    unavailable = {
        "code": "local_pod_registry_unavailable",
        "severity": "warning",
        "message": "local Pod data directory is not configured; worker "
        "discovery is unavailable",
    }
    with trio.fail_after(10):
        async with serve_registry(registry, identity=IDENTITY) as served:
            hosts = (await served.http.get("/api/hosts")).json()
            workers = (await served.http.get("/api/workers")).json()
            per_host = (await served.http.get(f"/api/hosts/{HOST_ID}/workers")).json()
    (host,) = hosts["items"]
    assert host["status"] == "degraded"
    assert host["capabilities"]["local_pod_inspection"] == "unavailable"
    assert host["diagnostics"] == hosts["diagnostics"] == [unavailable]
    assert (workers["items"], workers["diagnostics"]) == ([], [unavailable])
    assert per_host["diagnostics"] == [unavailable, unavailable]


async def test_new_runtime_kinds_are_additive_items(tmp_path: Path) -> None:
    home = tmp_path / "yoi-home"
    shutil.copytree(FIXTURE / "yoi-home", home)
    async with open_runtime(
        scripted_engines(), default_engine="echo", runtime_id="emb"
    ) as runtime:
        registry = RuntimeRegistry()
        registry.add(
            LocalPodSource(
                "local-pod-runtime", home, workspace_root="/workspace/project"
            )
        )
        registry.add(EmbeddedRuntimeHandle(runtime))
        worker = await runtime.create_worker(display_name="Ada")
        with trio.fail_after(10):
            async with serve_registry(registry, identity=IDENTITY) as served:
                http = served.http
                hosts = (await http.get("/api/hosts")).json()
                runtimes = (await http.get("/api/runtimes")).json()
                workers = (await http.get("/api/workers")).json()
                emb = (await http.get("/api/hosts/emb/workers")).json()
                pods = (await http.get(f"/api/hosts/{HOST_ID}/workers")).json()
    # The compat source's items are upstream's; the new kinds follow them,
    # with upstream's keys first, in upstream's order.
    legacy_host = RESPONSES["GET /api/hosts"]["body"]["items"][0]
    assert [h["host_id"] for h in hosts["items"]] == [HOST_ID, "emb"]
    assert list(hosts["items"][1])[: len(legacy_host)] == list(legacy_host)
    assert hosts["items"][1]["kind"] == "embedded-runtime-host"
    legacy_runtime = RESPONSES["GET /api/runtimes"]["body"]["items"][0]
    assert list(runtimes["items"][1])[: len(legacy_runtime)] == list(legacy_runtime)
    assert runtimes["items"][1]["kind"] == "embedded"
    legacy_worker = RESPONSES["GET /api/workers"]["body"]["items"][0]
    ada = workers["items"][-1]
    assert list(ada)[: len(legacy_worker)] == list(legacy_worker)
    assert (ada["worker_id"], ada["label"], ada["state"]) == (
        worker.worker_id,
        "Ada",
        "idle",
    )
    assert ada["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert [w["worker_id"] for w in emb["items"]] == [worker.worker_id]
    assert [w["label"] for w in pods["items"]] == [
        "alpha",
        "beta",
        "delta",
        "gamma",
        "zeta",
    ]
