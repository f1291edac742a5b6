"""The one generic page type (issue 13): ``Page[T]`` and its three aliases.

A page does not know its item type at run time, so every alias has its own
wire form in the converter (the legacy shapes: ``workers`` or ``entries``,
``truncated`` only on a transcript page), and a page unstructured without
its alias is a programming error, not a guess.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

import yoi_runtime
import yoi_workspace
from yoi_runtime import (
    Event,
    Page,
    Runtime,
    ScriptedEngine,
    TranscriptEntry,
    TranscriptPage,
    WorkerPage,
    WorkerSummary,
    open_runtime,
)
from yoi_runtime.serving import converter, page_form, register_page
from yoi_workspace import RuntimeKind, WorkerView, WorkerViewPage


async def pages(runtime: Runtime) -> tuple[WorkerPage, TranscriptPage]:
    """A Worker page and a transcript page, one item each, both with more."""
    worker = await runtime.create_worker(display_name="Ada")
    events = runtime.subscribe(worker.worker_id, after=0)
    await runtime.send_input(worker.worker_id, "hi")
    while not any(
        isinstance(item, Event) and item.type == "turn.completed"
        for item in await events.receive_batch()
    ):
        pass
    await runtime.create_worker()
    listing = await runtime.list_workers(limit=1)
    transcript = await runtime.transcript(worker.worker_id, limit=1)
    return listing, transcript


def wire(page: Page[Any], alias: Any) -> str:
    """The page's JSON text, as the servers send it (``json.dumps``)."""
    return json.dumps(converter.unstructure(page, unstructure_as=alias))


def test_the_old_names_are_aliases_of_one_generic_page() -> None:
    assert yoi_runtime.WorkerPage == Page[WorkerSummary]
    assert yoi_runtime.TranscriptPage == Page[TranscriptEntry]
    assert yoi_workspace.WorkerViewPage == Page[WorkerView]
    assert [f.name for f in attrs.fields(Page)] == [
        "items",
        "next_cursor",
        "truncated",
    ]


def test_a_page_is_a_frozen_value() -> None:
    page: Page[int] = Page((1, 2), "2")
    assert page == Page((1, 2), "2", truncated=False)
    assert page != Page((1, 2), "2", truncated=True)
    assert page != Page((1,), "2")
    assert hash(page) == hash(Page((1, 2), "2"))
    # Built through an alias it is the same class and equal.
    built = WorkerPage((), None)
    assert type(built) is Page
    assert built == Page((), None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        page.items = ()  # type: ignore[misc]


async def test_runtime_pages_round_trip_in_their_legacy_shapes() -> None:
    async with open_runtime({"s": ScriptedEngine()}, runtime_id="rt-p") as runtime:
        listing, transcript = await pages(runtime)
    (worker,) = listing.items
    assert listing.next_cursor == "0"
    workers = json.loads(wire(listing, WorkerPage))
    assert list(workers) == ["workers", "next_cursor"]
    assert workers["workers"] == [converter.unstructure(worker)]
    assert workers["next_cursor"] == "0"
    assert converter.structure(workers, WorkerPage) == listing

    (entry,) = transcript.items
    assert (entry.kind, entry.text, transcript.next_cursor) == ("user", "hi", "1")
    entries = json.loads(wire(transcript, TranscriptPage))
    assert list(entries) == ["entries", "next_cursor", "truncated"]
    assert entries["entries"] == [converter.unstructure(entry)]
    assert entries["truncated"] is False
    assert converter.structure(entries, TranscriptPage) == transcript
    truncated = attrs.evolve(transcript, truncated=True)
    back = converter.structure(
        json.loads(wire(truncated, TranscriptPage)), TranscriptPage
    )
    assert back.truncated is True


def test_empty_pages_keep_their_keys_byte_for_byte() -> None:
    empty: Page[Any] = Page((), None)
    assert wire(empty, WorkerPage) == '{"workers": [], "next_cursor": null}'
    assert (
        wire(empty, TranscriptPage)
        == '{"entries": [], "next_cursor": null, "truncated": false}'
    )
    assert wire(empty, WorkerViewPage) == '{"workers": [], "next_cursor": null}'
    for alias in (WorkerPage, TranscriptPage, WorkerViewPage):
        assert converter.structure(json.loads(wire(empty, alias)), alias) == empty


async def test_a_workspace_page_round_trips_in_its_legacy_shape() -> None:
    async with open_runtime({"s": ScriptedEngine()}, runtime_id="rt-p") as runtime:
        listing, _ = await pages(runtime)
    view = WorkerView.from_summary(listing.items[0], RuntimeKind.EMBEDDED)
    page = Page((view,), "0")
    sent = json.loads(wire(page, WorkerViewPage))
    assert list(sent) == ["workers", "next_cursor"]
    assert sent["workers"][0]["kind"] == "embedded"
    assert sent["workers"][0]["stale"] is False
    assert converter.structure(sent, WorkerViewPage) == page


def test_a_worker_page_has_no_truncated_key_and_reads_it_as_false() -> None:
    sent = {"workers": [], "next_cursor": "4"}
    assert converter.structure(sent, WorkerPage) == Page((), "4", truncated=False)
    # Retention never drops Workers: the flag is not part of the shape.
    assert "truncated" not in converter.unstructure(
        Page((), None, truncated=True), unstructure_as=WorkerPage
    )


def test_a_page_without_its_alias_is_a_type_error() -> None:
    page: Page[Any] = Page((), None)
    with pytest.raises(TypeError, match="bare Page does not know its item type"):
        converter.unstructure(page)
    with pytest.raises(TypeError, match="bare Page"):
        yoi_runtime.to_json(page)
    with pytest.raises(TypeError, match="not a registered page alias"):
        converter.unstructure(page, unstructure_as=Page[int])
    with pytest.raises(TypeError, match="bare Page"):
        converter.structure({"items": [], "next_cursor": None}, Page)
    with pytest.raises(TypeError, match="not a registered page alias"):
        converter.structure({"items": [], "next_cursor": None}, Page[str])
    with pytest.raises(TypeError, match="not a registered page alias"):
        page_form(Page[int])


def test_to_json_gives_a_page_the_form_its_alias_names() -> None:
    empty: Page[Any] = Page((), None)
    assert yoi_runtime.to_json(empty, as_type=WorkerPage) == {
        "workers": [],
        "next_cursor": None,
    }
    assert yoi_runtime.to_json(empty, as_type=TranscriptPage) == {
        "entries": [],
        "next_cursor": None,
        "truncated": False,
    }
    with pytest.raises(TypeError, match="not a registered page alias"):
        yoi_runtime.to_json(empty, as_type=Page[int])


def test_the_forms_name_the_openapi_schemas() -> None:
    assert page_form(WorkerPage).name == "WorkerPage"
    assert page_form(TranscriptPage).key == "entries"
    assert page_form(TranscriptPage).truncated is True
    assert page_form(WorkerViewPage).name == "WorkerViewPage"


def test_register_page_gives_a_new_alias_its_shape() -> None:
    @attrs.frozen
    class Note:
        text: str

    alias = Page[Note]
    register_page(alias, "NotePage", "notes", truncated=True)
    page = Page((Note("a"),), None, truncated=True)
    assert wire(page, alias) == (
        '{"notes": [{"text": "a"}], "next_cursor": null, "truncated": true}'
    )
    assert converter.structure(json.loads(wire(page, alias)), alias) == page
