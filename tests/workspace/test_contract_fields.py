"""Every field of the Runtime API's create and input reaches the Runtime.

The fields are read from the runtime process's own bodies
(``CreateWorkerBody``, ``InputBody``), so a field added there without a check
here fails :func:`test_every_field_has_a_check`. Each check sends a value
and looks for its effect in what the Runtime answers (or, for a value the
summary does not show, the conflict only the Runtime can raise). The checks
run through every layer: the embedded handle, the remote handle (a real
``yoi-runtime`` process), the registry over each, and the browser API over
a registry over each. Every one of these layers reaches a Runtime authority,
so every field must take effect: refusing one fails the check as surely as
dropping it (only the read-only compat source refuses, and it refuses every
create: ``test_handle_conformance``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from workspace.handle_support import open_handle_case
from workspace.workspace_support import serve_registry

from yoi_runtime import ScopeConflictError, WorkerExistsError, YoiRuntimeError
from yoi_runtime._wire import converter
from yoi_runtime.serving import CreateWorkerBody, InputBody
from yoi_workspace import ANONYMOUS, MemoryAuditSink, RuntimeRegistry

#: A result as a JSON object, or the error code it ended with.
Outcome = dict[str, Any] | str


@attrs.define
class Layer:
    """One way of reaching a Runtime: create and input as JSON outcomes."""

    create: Callable[..., Awaitable[Outcome]]
    send: Callable[..., Awaitable[Outcome]]
    audit: MemoryAuditSink | None = None


async def outcome(call: Awaitable[Any]) -> Outcome:
    try:
        result = await call
    except YoiRuntimeError as exc:
        return exc.code
    value: dict[str, Any] = converter.unstructure(result)
    return value


@asynccontextmanager
async def open_layer(name: str, directory: Path) -> AsyncIterator[Layer]:
    """``embedded`` / ``remote`` (the handle), ``registry-embedded`` /
    ``registry-remote`` (a registry over it), ``browser`` /
    ``browser-remote`` (the API over a registry over the embedded / remote
    handle)."""
    kind = "remote" if name.endswith("remote") else "embedded"
    async with open_handle_case(kind, directory) as case:
        handle = case.handle
        if name in ("embedded", "remote"):
            yield Layer(
                lambda **f: outcome(handle.create_worker(**f)),
                lambda w, text, **f: outcome(handle.send_input(w, text, **f)),
            )
            return
        audit = MemoryAuditSink()
        registry = RuntimeRegistry(audit=audit)
        registry.add(handle)
        runtime_id = handle.runtime_id
        if name.startswith("registry"):
            yield Layer(
                lambda **f: outcome(registry.create_worker(ANONYMOUS, runtime_id, **f)),
                lambda w, text, **f: outcome(
                    registry.send_input(ANONYMOUS, runtime_id, w, text, **f)
                ),
                audit,
            )
            return
        async with serve_registry(registry) as served:
            base = f"/api/runtimes/{runtime_id}/workers"

            async def create(**fields: Any) -> Outcome:
                response = await served.http.post(base, json=fields)
                body = response.json()
                return body["worker"] if response.is_success else body["error"]["code"]

            async def send(worker_id: str, text: str, **fields: Any) -> Outcome:
                headers = {}
                if "idempotency_key" in fields:
                    headers["Idempotency-Key"] = fields.pop("idempotency_key")
                response = await served.http.post(
                    f"{base}/{worker_id}/input",
                    json={"text": text, **fields},
                    headers={**headers, "X-Request-Id": "req-contract-1"},
                )
                body = response.json()
                return body["turn"] if response.is_success else body["error"]["code"]

            yield Layer(create, send, audit)


_serial = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


def ok(result: Outcome) -> dict[str, Any]:
    assert isinstance(result, dict), result
    return result


async def check_profile(layer: Layer) -> None:
    assert ok(await layer.create(profile="companion"))["profile"] == "companion"
    assert await layer.create(profile="no-such-profile") == "invalid_input"


async def check_display_name(layer: Layer) -> None:
    name = fresh("Zed")
    assert ok(await layer.create(display_name=name))["display_name"] == name


async def check_engine(layer: Layer) -> None:
    assert ok(await layer.create(engine="slow"))["engine"]["name"] == "slow"
    assert await layer.create(engine="no-such-engine") == "invalid_input"


async def check_system_prompt(layer: Layer) -> None:
    # The summary does not show it; only a Runtime that got it can tell two
    # creates with the same id apart by it.
    worker_id = fresh("w-prompt")
    ok(await layer.create(worker_id=worker_id, system_prompt="Be brief."))
    assert ok(await layer.create(worker_id=worker_id, system_prompt="Be brief."))
    again = await layer.create(worker_id=worker_id, system_prompt="Be verbose.")
    assert again == WorkerExistsError.code


async def check_worker_id(layer: Layer) -> None:
    worker_id = fresh("w-mine")
    assert ok(await layer.create(worker_id=worker_id))["worker_id"] == worker_id


async def check_scopes(layer: Layer) -> None:
    # Only a Runtime that got the scope can refuse a second live claim of
    # it; every layer shows the claim in the Worker it returns.
    scope = fresh("workdir:/srv/repo")
    assert ok(await layer.create(scopes=[scope]))["scopes"] == [scope]
    assert await layer.create(scopes=[scope]) == "scope_conflict"


CREATE_CHECKS = {
    "profile": check_profile,
    "display_name": check_display_name,
    "engine": check_engine,
    "system_prompt": check_system_prompt,
    "worker_id": check_worker_id,
    "scopes": check_scopes,
}


async def check_text_and_input_id(layer: Layer) -> None:
    worker = ok(await layer.create(engine="hang"))
    key = fresh("in")
    turn = ok(await layer.send(worker["worker_id"], "first", input_id=key))
    assert turn["input_id"] == key
    # The same key with other text: only a Runtime that got both can say so.
    assert await layer.send(worker["worker_id"], "other", input_id=key) == (
        "idempotency_conflict"
    )
    # Without a key the text is new input: the Worker is busy with the first.
    assert await layer.send(worker["worker_id"], "third") == "worker_busy"


INPUT_CHECKS = {"text": check_text_and_input_id, "input_id": check_text_and_input_id}


def test_every_field_has_a_check() -> None:
    assert set(attrs.fields_dict(CreateWorkerBody)) == set(CREATE_CHECKS)
    assert set(attrs.fields_dict(InputBody)) == set(INPUT_CHECKS)


LAYERS = [
    "embedded",
    "remote",
    "registry-embedded",
    "registry-remote",
    "browser",
    "browser-remote",
]


@pytest.mark.parametrize("name", LAYERS)
async def test_every_field_reaches_the_runtime(tmp_path: Path, name: str) -> None:
    with trio.fail_after(60):
        async with open_layer(name, tmp_path) as layer:
            for check in CREATE_CHECKS.values():
                await check(layer)
            for check in set(INPUT_CHECKS.values()):
                await check(layer)
            if name.startswith("browser"):
                await check_idempotency_key_header(layer)
    if layer.audit is not None:
        inputs = [r for r in layer.audit.records if r.operation == "input"]
        assert inputs[0].turn_id is not None
        assert inputs[0].profile == "companion"
        if name.startswith("browser"):
            assert inputs[0].request_id == "req-contract-1"


async def check_idempotency_key_header(layer: Layer) -> None:
    worker = ok(await layer.create(engine="hang"))
    turn = ok(await layer.send(worker["worker_id"], "hi", idempotency_key="key-1"))
    assert turn["input_id"] == "key-1"
    again = ok(await layer.send(worker["worker_id"], "hi", idempotency_key="key-1"))
    assert again["turn_id"] == turn["turn_id"]
    clash = await layer.send(
        worker["worker_id"], "hi", input_id="key-2", idempotency_key="key-1"
    )
    assert clash == "idempotency_conflict"


async def test_a_scope_conflict_on_a_remote_runtime_is_typed_end_to_end(
    tmp_path: Path,
) -> None:
    """A second claim of a scope held in a ``yoi-runtime`` process is the
    typed ``scope_conflict`` (naming the scope and its holder) through the
    registry and the browser API, audited as such, and the create did not
    happen."""
    audit = MemoryAuditSink()
    scope = "workdir:/srv/repo"
    with trio.fail_after(60):
        async with open_handle_case("remote", tmp_path) as case:
            registry = RuntimeRegistry(audit=audit)
            registry.add(case.handle)
            runtime_id = case.handle.runtime_id
            holder = await registry.create_worker(ANONYMOUS, runtime_id, scopes=[scope])
            with pytest.raises(ScopeConflictError) as conflict:
                await registry.create_worker(
                    ANONYMOUS, runtime_id, worker_id="w-second", scopes=[scope]
                )
            assert conflict.value.details() == {
                "worker_id": holder.worker_id,
                "scope": scope,
            }
            async with serve_registry(registry) as served:
                response = await served.http.post(
                    f"/api/runtimes/{runtime_id}/workers",
                    json={"worker_id": "w-third", "scopes": ["port:1", scope]},
                )
                assert response.status_code == 409
                assert response.json()["error"] == {
                    "code": "scope_conflict",
                    "message": conflict.value.message,
                    "details": {"worker_id": holder.worker_id, "scope": scope},
                }
            listing = await registry.list_all_workers(ANONYMOUS)
            assert [w.worker_id for w in listing.workers] == [holder.worker_id]
    assert [(r.operation, r.worker_id, r.outcome) for r in audit.records] == [
        ("create", holder.worker_id, "ok"),
        ("create", "w-second", "scope_conflict"),
        ("create", "w-third", "scope_conflict"),
    ]
