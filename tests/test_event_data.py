"""Typed event payloads: the classes, their JSON, the docs and the schemas.

Every payload class must give back key for key the JSON of the dicts the
Worker emits today (recorded from a scripted Runtime run, and the examples in
``docs/events.md``); ``docs/events.md`` must list exactly the classes' fields;
the JSON Schemas made from the classes must accept every recorded event and
refuse wrong ones.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import trio

from yoi_runtime import (
    ContextLengthExceededError,
    EngineError,
    EngineStatusError,
    Event,
    EventType,
    ScriptedEngine,
    ScriptedReply,
    open_runtime,
)
from yoi_runtime._engines._base import (
    Completion,
    Engine,
    Retry,
    TurnListener,
    TurnRequest,
    Usage,
    estimate_token_counts,
)
from yoi_runtime._event_data import (
    EVENT_DATA,
    EventError,
    TurnCompletedData,
    TurnFailedData,
    event_schemas,
    omits_none,
)
from yoi_runtime._types import WorkerStatus
from yoi_runtime._wire import (
    item_from_json,
    item_to_json,
    structure_event_data,
    unstructure_event_data,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def _reply(request: TurnRequest) -> ScriptedReply:
    """What the scripted engine does, by input."""
    replies = {
        "hi": ScriptedReply(deltas=("Hel", "lo"), usage=Usage(3, 2)),
        "long": ScriptedReply(deltas=("cut",), finish_reason="length"),
        "http": ScriptedReply(
            error=EngineStatusError(
                "the model server answered HTTP 503 (overloaded): busy",
                status_code=503,
                provider_code="overloaded",
            )
        ),
        "http-bare": ScriptedReply(
            error=EngineStatusError("HTTP 500", status_code=500)
        ),
        "context": ScriptedReply(error=ContextLengthExceededError("too long")),
        "incomplete": ScriptedReply(deltas=("par",), finish_reason=None),
        "bug": ScriptedReply(error=RuntimeError("engine bug")),
        "hang": ScriptedReply(deltas=("wait",), hang=True),
    }
    return replies[request.input]


@attrs.define(eq=False)
class RetryingEngine:
    """Reports two retries (an HTTP one, then a plain exception), then
    answers."""

    kind: str = "retrying"
    model: str = "retrying"
    context_tokens: int | None = None
    max_tokens: int | None = None
    max_concurrent: int | None = None

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return await estimate_token_counts(texts)

    async def run_turn(
        self, request: TurnRequest, listener: TurnListener
    ) -> Completion:
        await trio.lowlevel.checkpoint()
        limited = EngineStatusError(
            "HTTP 429", status_code=429, provider_code="rate_limit_exceeded"
        )
        listener.on_retry(Retry(2, 0.25, limited))
        listener.on_retry(Retry(3, 0.5, OSError("reset")))
        listener.on_text("ok")
        return Completion("stop", Usage(1, 1))

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _until(events: Any, kind: str, seen: list[Event]) -> None:
    """Read ``events`` (a subscription) into ``seen`` up to an event of
    ``kind``."""
    with trio.fail_after(10):
        async for item in events:
            assert isinstance(item, Event)
            seen.append(item)
            if item.type == kind:
                return


async def _recorded_run() -> list[Event]:
    """The events of a scripted Runtime run that has most event types."""
    engines: dict[str, Engine] = {
        "s": ScriptedEngine(_reply),
        "retrying": RetryingEngine(),
    }
    seen: list[Event] = []
    async with open_runtime(engines, default_engine="s") as runtime:
        ada = (await runtime.create_worker(display_name="Ada")).worker_id
        anon = (await runtime.create_worker(engine="retrying")).worker_id
        async with runtime.subscribe(after=0) as events:
            await runtime.send_input(ada, "hi", input_id="in-1")
            await _until(events, "turn.completed", seen)
            for text in ("long",):
                await runtime.send_input(ada, text)
                await _until(events, "turn.completed", seen)
            for text in ("http", "http-bare", "context", "incomplete", "bug"):
                await runtime.send_input(ada, text)
                await _until(events, "turn.failed", seen)
            for reason in ("user pressed stop", None):
                await runtime.send_input(ada, "hang")
                await _until(events, "turn.text_delta", seen)
                await runtime.cancel(ada, reason=reason)
                await _until(events, "turn.cancelled", seen)
            await runtime.send_input(anon, "go")
            await _until(events, "turn.completed", seen)
            await runtime.send_input(ada, "hang")
            await _until(events, "turn.text_delta", seen)
            await runtime.stop(ada, reason="closing the tab")
            await _until(events, "worker.stopped", seen)
            await runtime.stop(anon)
            await _until(events, "worker.stopped", seen)
    return seen


@pytest.fixture(scope="module")
def recorded() -> list[Event]:
    return trio.run(_recorded_run)


def _docs_examples() -> list[dict[str, Any]]:
    """The example events in docs/events.md (its first ``json`` block)."""
    block = re.search(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None
    return [json.loads(line) for line in block.group(1).splitlines() if line]


def _all_events(recorded: list[Event]) -> list[dict[str, Any]]:
    return [item_to_json(event) for event in recorded] + _docs_examples()


def test_the_run_and_the_docs_have_every_event_type(recorded: list[Event]) -> None:
    types = {event["type"] for event in _all_events(recorded)}
    assert types == {t.value for t in EventType}
    # worker.failed and turn.interrupted only come from the docs' examples.
    assert {e.type.value for e in recorded} == types - {
        "worker.failed",
        "turn.interrupted",
    }


def test_every_type_has_one_class() -> None:
    assert list(EVENT_DATA) == list(EventType)
    for event_type, cls in EVENT_DATA.items():
        assert cls.event_type is event_type
        words = re.split(r"[._]", event_type.value)
        assert cls.__name__ == "".join(w.title() for w in words) + "Data"


def test_classes_give_back_todays_json(recorded: list[Event]) -> None:
    for event in _all_events(recorded):
        kind = EventType(event["type"])
        data = structure_event_data(kind, event["data"])
        assert type(data) is EVENT_DATA[kind]
        again = unstructure_event_data(data)
        # Same keys in the same order, same values, same JSON text.
        assert json.dumps(again) == json.dumps(event["data"]), event
        assert structure_event_data(kind, json.loads(json.dumps(again))) == data


def test_typed_values_of_recorded_events(recorded: list[Event]) -> None:
    by_type: dict[str, list[Any]] = {}
    for event in recorded:
        # The Worker emits the typed payload itself.
        assert type(event.data) is EVENT_DATA[event.type], event
        by_type.setdefault(event.type.value, []).append(event.data)
    completed = by_type["turn.completed"][0]
    assert completed == TurnCompletedData(completed.turn_id, Usage(3, 2), "stop", False)
    assert [d.truncated for d in by_type["turn.completed"]] == [False, True, False]
    errors = [d.error for d in by_type["turn.failed"]]
    assert errors[0] == EventError(
        "engine_http_error",
        "the model server answered HTTP 503 (overloaded): busy",
        503,
        "overloaded",
    )
    assert errors[1] == EventError("engine_http_error", "HTTP 500", 500)
    assert [e.code for e in errors[2:]] == [
        "context_length_exceeded",
        "engine_stream_incomplete",
        "engine_crashed",
    ]
    assert all(e.status_code is None for e in errors[2:])
    assert by_type["worker.created"][0].status is WorkerStatus.IDLE
    assert [d.display_name for d in by_type["worker.created"]] == ["Ada", None]
    assert [d.input_id for d in by_type["turn.accepted"]][:2] == ["in-1", None]
    assert [d.reason for d in by_type["turn.cancelled"]] == [
        "user pressed stop",
        None,
        "closing the tab",
    ]
    assert [d.reason for d in by_type["worker.stopped"]] == ["closing the tab", None]
    retries = by_type["turn.retrying"]
    assert [(d.attempt, d.delay) for d in retries] == [(2, 0.25), (3, 0.5)]
    assert retries[0].error == EventError(
        "engine_http_error", "HTTP 429", 429, "rate_limit_exceeded"
    )
    assert retries[1].error == EventError("engine_error", "reset")


def test_omitted_keys_stay_omitted_and_nulls_stay_null() -> None:
    bare = unstructure_event_data(TurnFailedData("t-1", EventError("c", "m")))
    assert bare == {"turn_id": "t-1", "error": {"code": "c", "message": "m"}}
    full = unstructure_event_data(TurnFailedData("t-1", EventError("c", "m", 400)))
    assert full["error"] == {"code": "c", "message": "m", "status_code": 400}
    cancelled = structure_event_data(
        EventType.TURN_CANCELLED, {"turn_id": "t-1", "reason": None}
    )
    assert unstructure_event_data(cancelled) == {"turn_id": "t-1", "reason": None}


class ShardError(EngineError):
    """An engine's own error whose details hold keys events do not carry."""

    code = "shard_unavailable"

    def details(self) -> dict[str, Any]:
        return {"shard": 3, "status_code": "not an int", "provider_code": "busy"}


def test_an_engines_own_details_are_left_out_of_the_error() -> None:
    assert EventError.from_details(
        "c", "m", {"status_code": 502, "provider_code": "x", "retry_after": 3}
    ) == EventError("c", "m", 502, "x")
    assert EventError.from_details("c", "m", None) == EventError("c", "m")

    async def run() -> list[Event]:
        seen: list[Event] = []
        engine = ScriptedEngine([ScriptedReply(error=ShardError("shard 3 is down"))])
        async with open_runtime({"s": engine}) as runtime:
            worker_id = (await runtime.create_worker()).worker_id
            async with runtime.subscribe(worker_id) as events:
                await runtime.send_input(worker_id, "hi")
                await _until(events, "turn.failed", seen)
            # The Worker is fine: it takes the next input.
            await runtime.send_input(worker_id, "again")
        return seen

    failed = trio.run(run)[-1]
    assert failed.data == TurnFailedData(
        "t-1", EventError("shard_unavailable", "shard 3 is down", None, "busy")
    )


def test_a_bad_payload_is_an_error_naming_its_path() -> None:
    with pytest.raises(ValueError, match=r"\$\.data\.error\.code"):
        structure_event_data(
            EventType.TURN_FAILED, {"turn_id": "t-1", "error": {"message": "m"}}
        )
    with pytest.raises(ValueError, match=r"\$\.data\.status"):
        structure_event_data(
            EventType.WORKER_STATUS, {"status": "asleep", "previous": "idle"}
        )


def test_events_still_round_trip_through_the_wire(recorded: list[Event]) -> None:
    for event in recorded:
        assert item_from_json(json.loads(json.dumps(item_to_json(event)))) == event


# -- docs/events.md --------------------------------------------------------------


def _documented_fields(cell: str) -> list[tuple[str, bool, list[tuple[str, bool]]]]:
    """Parse a ``data`` cell of the types table: each top-level field with
    whether it is marked optional (``?``) and its ``{...}`` subfields.
    Parenthesised remarks are skipped."""
    fields: list[tuple[str, bool, list[tuple[str, bool]]]] = []
    parens = braces = 0
    for token in re.finditer(r"`([^`]*)`(\?)?|[(){}]", cell):
        text = token.group(0)
        if text in "()":
            parens += 1 if text == "(" else -1
        elif text in "{}":
            braces += 1 if text == "{" else -1
        elif parens == 0:
            name, optional = token.group(1), token.group(2) == "?"
            if braces == 0:
                fields.append((name, optional, []))
            else:
                fields[-1][2].append((name, optional))
    assert parens == braces == 0, cell
    return fields


def _class_fields(cls: type) -> list[tuple[str, bool, list[tuple[str, bool]]]]:
    hints = typing.get_type_hints(cls)
    result = []
    for field in attrs.fields(cls):
        hint = hints[field.name]
        nested = (
            [(f.name, omits_none(f)) for f in attrs.fields(hint)]
            if attrs.has(hint)
            else []
        )
        result.append((field.name, omits_none(field), nested))
    return result


def test_the_docs_list_exactly_the_classes_fields() -> None:
    text = DOCS.read_text()
    table = text[text.index("| type | data | when |") :]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        kind = re.fullmatch(r"`([a-z_.]+)`", cells[0])
        assert kind is not None, line
        rows[kind.group(1)] = _documented_fields(cells[1])
    assert sorted(rows) == sorted(t.value for t in EventType)
    for event_type, cls in EVENT_DATA.items():
        assert rows[event_type.value] == _class_fields(cls), event_type


def test_the_docs_parser_sees_what_is_written() -> None:
    cell = "`turn_id`, `error` {`code`, `status_code`?} (`not`, `this`), `x`"
    assert _documented_fields(cell) == [
        ("turn_id", False, []),
        ("error", False, [("code", False), ("status_code", True)]),
        ("x", False, []),
    ]


# -- JSON Schemas ------------------------------------------------------------------


def _validator() -> jsonschema.Draft202012Validator:
    root = {
        "$ref": "#/components/schemas/Event",
        "components": {"schemas": event_schemas()},
    }
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


def test_the_schemas_accept_every_recorded_event(recorded: list[Event]) -> None:
    validator = _validator()
    for event in _all_events(recorded):
        validator.validate(event)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e["data"]["error"].update(status_code=None), "omitted, not null"),
        (lambda e: e["data"]["error"].pop("code"), "required"),
        (lambda e: e["data"].update(turn_id=7), "wrong type"),
        (lambda e: e.update(type="turn.completed"), "data of another type"),
        (lambda e: e.pop("cursor"), "envelope field"),
    ],
)
def test_the_schemas_refuse_wrong_events(
    recorded: list[Event], change: Any, why: str
) -> None:
    failed = next(
        json.loads(json.dumps(item_to_json(e)))
        for e in recorded
        if isinstance(e.data, TurnFailedData) and e.data.error.status_code is not None
    )
    validator = _validator()
    validator.validate(failed)
    change(failed)
    assert not validator.is_valid(failed), why


def test_the_schemas_describe_exactly_the_classes() -> None:
    schemas = event_schemas()
    classes = [*EVENT_DATA.values(), EventError]
    for cls in classes:
        schema = schemas[cls.__name__]
        fields = attrs.fields(cls)
        assert list(schema["properties"]) == [f.name for f in fields]
        assert schema["required"] == [f.name for f in fields if not omits_none(f)]
    variants = schemas["Event"]["oneOf"]
    assert [v["properties"]["type"]["const"] for v in variants] == [
        t.value for t in EventType
    ]
    assert [v["properties"]["data"]["$ref"].rsplit("/", 1)[1] for v in variants] == [
        cls.__name__ for cls in EVENT_DATA.values()
    ]
    envelope = [f.name for f in attrs.fields(Event)]
    for variant in variants:
        assert sorted(variant["properties"]) == sorted(envelope)
        assert sorted(variant["required"]) == sorted(envelope)


def test_the_openapi_documents_describe_events_by_the_classes() -> None:
    from yoi_runtime._server._openapi import openapi_document as runtime_document
    from yoi_workspace._server._openapi import openapi_document as browser_document

    typed = event_schemas()
    for document in (
        runtime_document(("companion",), ("s",)),
        browser_document(("rt",), ("companion",), ("s",)),
    ):
        schemas = document["components"]["schemas"]
        for name, schema in typed.items():
            assert schemas.get(name) == schema, name
