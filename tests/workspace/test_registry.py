"""The RuntimeRegistry: routing, policies, audit and the aggregate stream.

Embedded Runtimes run in the test; remote ones are real ``yoi-runtime``
processes (``conformance.support``); compat sources read pods written by
``workspace.handle_support``.
"""

from __future__ import annotations

import datetime
import json
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from conformance.support import open_runtime_process, scripted_engines
from workspace.handle_support import (
    EPOCH,
    REMOTE_ID,
    free_port,
    runtime_config,
    write_pod,
)
from workspace.workspace_support import events_of, write_config

from yoi_runtime import (
    CancelOutcome,
    Event,
    InvalidInputError,
    OperationUnsupportedError,
    RuntimeUnavailableError,
    ScopeConflictError,
    TurnCompletedData,
    WorkerBusyError,
    WorkerNotFoundError,
    open_runtime,
)
from yoi_workspace import (
    ANONYMOUS,
    AggregateItem,
    AggregateSubscription,
    Caller,
    Command,
    CommandRefusedError,
    EmbeddedRuntimeHandle,
    HideWorkers,
    JSONLinesAuditSink,
    LocalPodSource,
    MemoryAuditSink,
    RemoteRuntimeConfig,
    RuntimeExistsError,
    RuntimeKind,
    RuntimeRegistry,
    SecretRef,
    StreamReset,
    UnknownRuntimeError,
    WorkerNotVisibleError,
    WorkerView,
    open_remote_handle,
    pod_worker_id,
)
from yoi_workspace._config import load_config
from yoi_workspace._workspace import open_workspace

ADA = Caller("ada")
ADMIN = Caller("root", frozenset({"admin"}))


@asynccontextmanager
async def embedded_registry(
    *runtime_ids: str, **options: Any
) -> AsyncIterator[RuntimeRegistry]:
    """A registry holding one embedded Runtime per id (scripted engines)."""
    registry = RuntimeRegistry(**options)
    async with AsyncExitStack() as stack:
        for runtime_id in runtime_ids:
            runtime = await stack.enter_async_context(
                open_runtime(
                    scripted_engines(), default_engine="echo", runtime_id=runtime_id
                )
            )
            registry.add(EmbeddedRuntimeHandle(runtime))
        yield registry


async def test_add_refuses_a_duplicate_id_and_get_an_unknown_one() -> None:
    async with embedded_registry("rt-a") as registry:
        with pytest.raises(RuntimeExistsError) as duplicate:
            registry.add(LocalPodSource("rt-a", "/nonexistent"))
        assert duplicate.value.details() == {"runtime_id": "rt-a"}
        with pytest.raises(UnknownRuntimeError) as unknown:
            registry.get("rt-zz")
        assert (unknown.value.code, unknown.value.runtime_id) == (
            "unknown_runtime",
            "rt-zz",
        )
        with pytest.raises(UnknownRuntimeError):
            await registry.list_workers(ANONYMOUS, "rt-zz")
        assert registry.runtime_ids == ("rt-a",)


async def test_embedded_routing_goes_to_the_named_runtime() -> None:
    audit = MemoryAuditSink()
    with trio.fail_after(10):
        async with embedded_registry("rt-a", "rt-b", audit=audit) as registry:
            a = await registry.create_worker(ADA, "rt-a", display_name="Ada")
            b = await registry.create_worker(ADA, "rt-b", engine="hang")
            assert (a.runtime_id, a.kind) == ("rt-a", RuntimeKind.EMBEDDED)
            only_a = await registry.list_workers(ADA, "rt-a")
            assert [w.worker_id for w in only_a.items] == [a.worker_id]
            with pytest.raises(WorkerNotFoundError):
                await registry.get_worker(ADA, "rt-a", b.worker_id)

            async with registry.subscribe(ADA, "rt-a", a.worker_id) as events:
                turn = await registry.send_input(ADA, "rt-a", a.worker_id, "hi")
                seen = await events_of(events, a.worker_id, "turn.completed")
            assert seen[0].type == "turn.accepted"
            assert isinstance(seen[-1].data, TurnCompletedData)
            assert seen[-1].data.turn_id == turn.turn_id
            page = await registry.transcript(ADA, "rt-a", a.worker_id)
            assert [e.text for e in page.items] == ["hi", "echo: hi"]

            running = await registry.send_input(ADA, "rt-b", b.worker_id, "go")
            with pytest.raises(WorkerBusyError) as busy:
                await registry.send_input(ADA, "rt-b", b.worker_id, "again")
            assert busy.value.turn_id == running.turn_id
            assert busy.value.details()["turn_id"] == running.turn_id
            cancelled = await registry.cancel(ADA, "rt-b", b.worker_id, reason="x")
            assert cancelled.outcome is CancelOutcome.CANCELLED
            stopped = await registry.stop(ADA, "rt-b", b.worker_id)
            assert stopped.status == "stopped"
            listing = await registry.list_all_workers(ADA)
            assert [w.worker_id for w in listing.workers] == [a.worker_id, b.worker_id]
            assert listing.unavailable == ()
            with pytest.raises(InvalidInputError):
                await registry.create_worker(ADA, "rt-a", engine="gpt-9")
    assert [(r.operation, r.outcome) for r in audit.records] == [
        ("create", "ok"),
        ("create", "ok"),
        ("input", "ok"),
        ("input", "ok"),
        ("input", "worker_busy"),
        ("cancel", "ok"),
        ("stop", "ok"),
        ("create", "invalid_input"),
    ]
    assert {r.caller for r in audit.records} == {"ada"}
    assert audit.records[0].worker_id == a.worker_id


async def test_hidden_workers_read_as_not_found_and_the_reason_is_recorded(
    tmp_path: Path,
) -> None:
    audit = MemoryAuditSink()
    hide = HideWorkers(
        runtimes=frozenset({"rt-b"}),
        profiles=frozenset({"coder"}),
        exempt_roles=frozenset({"admin"}),
    )
    home = tmp_path / "yoi-home"
    write_pod(home, "old-coder", profile="coder", at=EPOCH)
    write_pod(home, "old-chat", at=EPOCH + datetime.timedelta(seconds=1))
    with trio.fail_after(10):
        async with embedded_registry(
            "rt-a", "rt-b", visibility=hide, commands=hide, audit=audit
        ) as registry:
            registry.add(LocalPodSource("pods", home))
            a = await registry.create_worker(ADMIN, "rt-a")
            b = await registry.create_worker(ADMIN, "rt-b")
            with pytest.raises(WorkerNotVisibleError) as hidden:
                await registry.get_worker(ADA, "rt-b", b.worker_id)
            assert isinstance(hidden.value, WorkerNotFoundError)
            assert hidden.value.worker_id == b.worker_id
            assert "rt-b" in hidden.value.reason
            assert (await registry.get_worker(ADMIN, "rt-b", b.worker_id)) == b
            assert (await registry.list_workers(ADA, "rt-b")).items == ()
            every = await registry.list_all_workers(ADA)
            assert [w.display_name for w in every.workers] == [None, "old-chat"]
            assert every.workers[0].worker_id == a.worker_id
            assert every.workers[1].worker_id == pod_worker_id("old-chat")
            everything = await registry.list_all_workers(ADMIN)
            assert [(w.runtime_id, w.profile) for w in everything.workers] == [
                ("rt-a", "companion"),
                ("rt-b", "companion"),
                ("pods", "companion"),  # Pods in byte order of their names
                ("pods", "coder"),
            ]

            with pytest.raises(WorkerNotVisibleError):
                await registry.send_input(ADA, "rt-b", b.worker_id, "hi")
            with pytest.raises(WorkerNotVisibleError):
                await registry.transcript(ADA, "rt-b", b.worker_id)
            with pytest.raises(WorkerNotVisibleError):
                async with registry.subscribe(ADA, "rt-b", b.worker_id):
                    pass
            with pytest.raises(CommandRefusedError) as refused:
                await registry.create_worker(ADA, "rt-b")
            assert refused.value.details() == {"operation": "create"}
            assert (await registry.list_workers(ADMIN, "rt-b")).items == (b,)

    hidden_notes = [d for d in registry.diagnostics() if d.code == "worker_hidden"]
    assert len(hidden_notes) == 4
    assert {d.worker_id for d in hidden_notes} == {b.worker_id}
    assert all("hidden from ada" in d.message for d in hidden_notes)
    refusals = [(r.operation, r.outcome, r.reason) for r in list(audit.records)[2:]]
    assert refusals == [
        ("input", "worker_not_visible", hidden.value.reason),
        ("create", "command_refused", "create is not allowed here"),
    ]


@attrs.frozen
class OnlyAdminsStop:
    """A command policy of the test's own: only admins may stop."""

    def why_refused(self, caller: Caller, command: Command) -> str | None:
        if command.operation == "stop" and "admin" not in caller.roles:
            return "only admins may stop Workers"
        return None


@attrs.frozen
class HideByName:
    """A visibility policy of the test's own: display names starting '_'."""

    def why_hidden(self, caller: Caller, worker: WorkerView) -> str | None:
        if (worker.display_name or "").startswith("_"):
            return "a private Worker"
        return None


async def test_command_policy_and_a_custom_visibility_policy() -> None:
    audit = MemoryAuditSink()
    with trio.fail_after(10):
        async with embedded_registry(
            "rt-a", commands=OnlyAdminsStop(), visibility=HideByName(), audit=audit
        ) as registry:
            worker = await registry.create_worker(ADA, "rt-a", display_name="Bo")
            with pytest.raises(CommandRefusedError) as refused:
                await registry.stop(ADA, "rt-a", worker.worker_id)
            assert refused.value.message == "only admins may stop Workers"
            assert (await registry.get_worker(ADA, "rt-a", worker.worker_id)).status
            assert (await registry.stop(ADMIN, "rt-a", worker.worker_id)).status == (
                "stopped"
            )
            private = await registry.create_worker(ADA, "rt-a", display_name="_me")
            with pytest.raises(WorkerNotVisibleError) as hidden:
                await registry.get_worker(ADA, "rt-a", private.worker_id)
            assert hidden.value.reason == "a private Worker"
    assert [(r.caller, r.operation, r.outcome) for r in audit.records] == [
        ("ada", "create", "ok"),
        ("ada", "stop", "command_refused"),
        ("root", "stop", "ok"),
        ("ada", "create", "ok"),
    ]


async def test_audit_writes_one_json_line_per_command(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with trio.fail_after(10):
        async with embedded_registry(
            "rt-a", audit=JSONLinesAuditSink(path)
        ) as registry:
            worker = await registry.create_worker(ADA, "rt-a", engine="hang")
            turn = await registry.send_input(ADA, "rt-a", worker.worker_id, "go")
            with pytest.raises(WorkerBusyError):
                await registry.send_input(ADA, "rt-a", worker.worker_id, "more")
            with pytest.raises(UnknownRuntimeError):
                await registry.cancel(ADA, "rt-nope", worker.worker_id)
            with pytest.raises(WorkerNotFoundError):
                await registry.stop(ADA, "rt-a", "w-0000000000000000")
            await registry.cancel(ADA, "rt-a", worker.worker_id, request_id="req-7")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [set(line) for line in lines] == [
        {
            "at",
            "caller",
            "runtime_id",
            "worker_id",
            "operation",
            "outcome",
            "turn_id",
            "profile",
            "request_id",
        }
    ] * 6
    assert [
        (line["runtime_id"], line["worker_id"], line["operation"], line["outcome"])
        for line in lines
    ] == [
        ("rt-a", worker.worker_id, "create", "ok"),
        ("rt-a", worker.worker_id, "input", "ok"),
        ("rt-a", worker.worker_id, "input", "worker_busy"),
        ("rt-nope", worker.worker_id, "cancel", "unknown_runtime"),
        ("rt-a", "w-0000000000000000", "stop", "worker_not_found"),
        ("rt-a", worker.worker_id, "cancel", "ok"),
    ]
    # The turn and profile where they were known; the request id as given.
    assert [
        (line["turn_id"], line["profile"], line["request_id"]) for line in lines
    ] == [
        (None, "companion", None),
        (turn.turn_id, "companion", None),
        (turn.turn_id, "companion", None),
        (None, None, None),
        (None, None, None),
        (turn.turn_id, "companion", "req-7"),
    ]
    assert {line["caller"] for line in lines} == {"ada"}
    assert all(line["at"].endswith("+00:00") for line in lines)


async def test_compat_source_reads_and_refuses_commands(tmp_path: Path) -> None:
    home = tmp_path / "yoi-home"
    worker_id = write_pod(home, "old", "hey")
    audit = MemoryAuditSink()
    with trio.fail_after(10):
        async with embedded_registry("rt-a", audit=audit) as registry:
            registry.add(LocalPodSource("pods", home))
            views = {v.runtime_id: v for v in await registry.list_runtimes()}
            assert (views["pods"].status, views["pods"].authority) == (
                "read-only",
                False,
            )
            (pod,) = (await registry.list_workers(ANONYMOUS, "pods")).items
            assert (pod.worker_id, pod.display_name, pod.status) == (
                worker_id,
                "old",
                "live",
            )
            assert pod.kind is RuntimeKind.COMPAT_LOCAL_POD
            page = await registry.transcript(ANONYMOUS, "pods", pod.worker_id)
            assert [(e.kind, e.text) for e in page.items] == [
                ("user", "hey"),
                ("assistant", "echo: hey"),
            ]
            with pytest.raises(OperationUnsupportedError):
                await registry.send_input(ANONYMOUS, "pods", pod.worker_id, "hi")
            with pytest.raises(OperationUnsupportedError):
                await registry.create_worker(ANONYMOUS, "pods")
            with pytest.raises(OperationUnsupportedError):
                async with registry.subscribe(ANONYMOUS, "pods", pod.worker_id):
                    pass
    assert [(r.operation, r.outcome) for r in audit.records] == [
        ("input", "operation_unsupported"),
        ("create", "operation_unsupported"),
    ]


async def test_remote_routing_against_a_real_process(tmp_path: Path) -> None:
    audit = MemoryAuditSink()
    with trio.fail_after(60):
        async with (
            open_runtime_process(tmp_path, config=runtime_config(tmp_path)) as server,
            embedded_registry("rt-a", audit=audit) as registry,
        ):
            token = SecretRef(file=str(tmp_path / "runtime-token"))
            config = RemoteRuntimeConfig(REMOTE_ID, server.url, token=token)
            async with open_remote_handle(config) as handle:
                registry.add(handle)
                views = await registry.list_runtimes()
                assert [(v.runtime_id, v.kind, v.status) for v in views] == [
                    ("rt-a", RuntimeKind.EMBEDDED, "serving"),
                    (REMOTE_ID, RuntimeKind.REMOTE, "serving"),
                ]
                worker = await registry.create_worker(ADA, REMOTE_ID, display_name="R")
                assert (worker.runtime_id, worker.kind) == (
                    REMOTE_ID,
                    RuntimeKind.REMOTE,
                )
                async with registry.subscribe(
                    ADA, REMOTE_ID, worker.worker_id, after=0
                ) as events:
                    await registry.send_input(ADA, REMOTE_ID, worker.worker_id, "hi")
                    seen = await events_of(events, worker.worker_id, "turn.completed")
                assert [e.type.value for e in seen][:2] == [
                    "worker.created",
                    "turn.accepted",
                ]
                page = await registry.transcript(ADA, REMOTE_ID, worker.worker_id)
                assert [e.text for e in page.items] == ["hi", "echo: hi"]
                slow = await registry.create_worker(ADA, REMOTE_ID, engine="hang")
                await registry.send_input(ADA, REMOTE_ID, slow.worker_id, "go")
                with pytest.raises(WorkerBusyError) as busy:
                    await registry.send_input(ADA, REMOTE_ID, slow.worker_id, "no")
                assert busy.value.worker_id == slow.worker_id
                result = await registry.cancel(ADA, REMOTE_ID, slow.worker_id)
                assert result.outcome is CancelOutcome.CANCELLED
                stopped = await registry.stop(ADA, REMOTE_ID, slow.worker_id)
                assert stopped.status == "stopped"
                listing = await registry.list_all_workers(ADA, REMOTE_ID)
                assert [w.worker_id for w in listing.workers] == [
                    worker.worker_id,
                    slow.worker_id,
                ]
    assert [r.outcome for r in audit.records] == ["ok"] * 4 + ["worker_busy"] + [
        "ok"
    ] * 2
    assert {r.runtime_id for r in audit.records} == {REMOTE_ID}


async def test_a_down_remote_is_listed_unavailable_and_the_others_still_list() -> None:
    config = RemoteRuntimeConfig(
        "rt-down", f"http://127.0.0.1:{free_port()}", connect_timeout=1.0
    )
    with trio.fail_after(20):
        async with (
            embedded_registry("rt-a") as registry,
            open_remote_handle(config) as handle,
        ):
            registry.add(handle)
            worker = await registry.create_worker(ADA, "rt-a")
            views = await registry.list_runtimes()
            assert [(v.runtime_id, v.status) for v in views] == [
                ("rt-a", "serving"),
                ("rt-down", "unavailable"),
            ]
            assert views[1].error is not None
            listing = await registry.list_all_workers(ADA)
            assert [w.worker_id for w in listing.workers] == [worker.worker_id]
            assert listing.unavailable == ("rt-down",)
            with pytest.raises(RuntimeUnavailableError):
                await registry.get_worker(ADA, "rt-down", "w-1")
            with pytest.raises(RuntimeUnavailableError):
                await registry.list_workers(ADA, "rt-down")


async def receive_items(
    stream: AggregateSubscription, count: int
) -> list[AggregateItem]:
    """Exactly ``count`` items from an aggregate subscription."""
    items: list[AggregateItem] = []
    while len(items) < count:
        items += await stream.receive_batch(count - len(items))
    return items


def events_by_runtime(items: list[AggregateItem]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for item in items:
        assert isinstance(item.item, Event)
        found.setdefault(item.runtime_id, []).append(item.item)
    return found


async def test_aggregate_merges_visible_workers_and_resumes_by_cursor() -> None:
    with trio.fail_after(10):
        async with embedded_registry("rt-a", "rt-b", visibility=HideByName()) as reg:
            async with reg.subscribe_all(ADA) as everything:
                a = await reg.create_worker(ADA, "rt-a")
                hidden = await reg.create_worker(ADA, "rt-a", display_name="_x")
                b = await reg.create_worker(ADA, "rt-b")
                for runtime_id, worker in (("rt-a", a), ("rt-a", hidden), ("rt-b", b)):
                    # Straight to the handle: the policy hides "_x" from all.
                    await reg.get(runtime_id).send_input(worker.worker_id, "hi")
                # Each visible Worker: created, then a turn of six events.
                items = await receive_items(everything, 14)
            seen = events_by_runtime(items)
            assert {e.worker_id for e in seen["rt-a"]} == {a.worker_id}
            assert {e.worker_id for e in seen["rt-b"]} == {b.worker_id}
            assert [e.seq for e in seen["rt-a"]] == list(range(1, 8))
            assert [e.seq for e in seen["rt-b"]] == list(range(1, 8))
            # Resume after the sixth item: exactly the rest of each Runtime's.
            async with reg.subscribe_all(ADA, after=items[5].position) as resumed:
                rest = await receive_items(resumed, 8)
            assert events_by_runtime(rest) == events_by_runtime(items[6:])
            with pytest.raises(InvalidInputError) as bad:
                reg.subscribe_all(ADA, after="not a cursor")
            assert bad.value.path == "after"


async def test_aggregate_follows_a_remote_that_is_down_then_restarts(
    tmp_path: Path,
) -> None:
    """The aggregate keeps following a remote Runtime that is down at first,
    then up, then restarted (same port, a new token in the same file): the
    restarted process's stream is read from its beginning after one reset,
    and the first command after the restart succeeds."""
    port = free_port()
    config_file = runtime_config(tmp_path)
    token = SecretRef(file=str(tmp_path / "runtime-token"))
    remote = RemoteRuntimeConfig(
        REMOTE_ID,
        f"http://127.0.0.1:{port}",
        token=token,
        connect_timeout=1.0,
        # Longer than a restart takes (and within the test's cap): the old
        # stream is still reconnecting on the old client when the process is
        # back, so the first command after the restart always meets the old
        # token (refused, read again, retried) however fast the restart is.
        reconnect_timeout=30.0,
    )
    bind = ("--bind", f"127.0.0.1:{port}")
    with trio.fail_after(90):
        async with (
            embedded_registry("rt-a") as registry,
            open_remote_handle(remote) as handle,
        ):
            registry.add(handle)
            async with registry.subscribe_all(ADA) as everything:
                # The remote is down: the embedded Runtime's events still flow.
                local = await registry.create_worker(ADA, "rt-a")
                await events_of(everything, local.worker_id, "worker.created")
                async with open_runtime_process(
                    tmp_path, config=config_file, args=bind
                ) as first:
                    far = await registry.create_worker(ADA, REMOTE_ID)
                    await registry.send_input(ADA, REMOTE_ID, far.worker_id, "one")
                    seen = await events_of(everything, far.worker_id, "turn.completed")
                    assert seen[0].type == "worker.created"
                    first.process.send_signal(signal.SIGTERM)
                    await events_of(everything, far.worker_id, "worker.stopped")
                async with open_runtime_process(
                    tmp_path, config=config_file, args=bind
                ):
                    again = await registry.create_worker(ADA, REMOTE_ID)
                    items: list[AggregateItem] = []
                    while not any(
                        isinstance(i.item, Event)
                        and i.item.worker_id == again.worker_id
                        for i in items
                    ):
                        items += await everything.receive_batch()
                    resets = [i for i in items if isinstance(i.item, StreamReset)]
                    assert [r.runtime_id for r in resets] == [REMOTE_ID]
                    # The restarted process is read from its beginning.
                    first_new = next(i for i in items if isinstance(i.item, Event))
                    assert isinstance(first_new.item, Event)
                    assert first_new.item.cursor == 1


class Refused:
    """An event stream whose opening fails, as a remote one's does while its
    process is down."""

    async def __aenter__(self) -> Refused:
        await trio.lowlevel.checkpoint()
        raise RuntimeUnavailableError("runtime rt-flaky: down")

    async def __aexit__(self, *exc_info: object) -> None:
        await trio.lowlevel.checkpoint()


@attrs.define
class Flaky:
    """An embedded handle posing as a remote one whose first ``failures``
    stream openings fail; records when each opening was tried."""

    inner: EmbeddedRuntimeHandle
    failures: int
    tried: list[float] = attrs.field(factory=list)

    @property
    def runtime_id(self) -> str:
        return self.inner.runtime_id

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.REMOTE

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> Any:
        self.tried.append(trio.current_time())
        if len(self.tried) <= self.failures:
            return Refused()
        return self.inner.subscribe(worker_id, after=after)


async def test_a_runtime_down_at_subscribe_time_is_retried_with_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        embedded_registry("rt-a") as registry,
        open_runtime(scripted_engines(), runtime_id="rt-flaky") as runtime,
    ):
        flaky = Flaky(EmbeddedRuntimeHandle(runtime), failures=4)
        registry.add(flaky)
        start = trio.current_time()
        with trio.fail_after(10):
            async with registry.subscribe_all(ADA) as everything:
                local = await registry.create_worker(ADA, "rt-a")
                far = await registry.create_worker(ADA, "rt-flaky", engine="echo")
                # The reachable Runtime's events do not wait for the other.
                first = events_by_runtime(await everything.receive_batch())
                assert [e.worker_id for e in first.pop("rt-a")] == [local.worker_id]
                assert first == {}
                assert trio.current_time() == start
                # Down when the stream began: once reached, read from its
                # start, so the Worker created meanwhile is not missed.
                (late,) = await everything.receive_batch()
                assert isinstance(late.item, Event)
                assert (late.item.worker_id, late.item.seq) == (far.worker_id, 1)
        # Attempts at once, then after 0.1, 0.2, 0.4 and 0.8 seconds.
        assert [t - start for t in flaky.tried] == pytest.approx(
            [0, 0.1, 0.3, 0.7, 1.5]
        )


DOCS = Path(__file__).resolve().parents[2] / "docs" / "workspace.md"


async def test_open_workspace_registers_what_the_documented_config_lists(
    tmp_path: Path,
) -> None:
    blocks = [b.split("```", 1)[0] for b in DOCS.read_text().split("```toml\n")[1:]]
    # The config file's example: the block that declares the Runtimes.
    (text,) = [b for b in blocks if "[embedded]" in b and "[[remote]]" in b]
    config = load_config(write_config(tmp_path, text))
    assert config.runtime_ids == ("embedded", "rt-office", "local-pod-runtime")
    (remote,) = config.remote_configs()
    assert remote.token == SecretRef(env="YOI_OFFICE_TOKEN")
    with trio.fail_after(20):
        async with open_workspace(config) as workspace:
            registry = workspace.registry
            assert workspace.runtime is not None
            views = await registry.list_runtimes()
            assert [(v.runtime_id, v.kind, v.status) for v in views] == [
                ("embedded", RuntimeKind.EMBEDDED, "serving"),
                ("rt-office", RuntimeKind.REMOTE, "unavailable"),
                ("local-pod-runtime", RuntimeKind.COMPAT_LOCAL_POD, "read-only"),
            ]
            # [visibility] is a HideWorkers policy for both hooks.
            with pytest.raises(CommandRefusedError):
                await registry.create_worker(ADA, "embedded", "reviewer")
    (line,) = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["outcome"] == "command_refused"


@attrs.frozen
class HideSecrets:
    """Hides Workers whose display name starts with ``secret`` from all but
    their creator's role ``admin``."""

    def why_hidden(self, caller: Caller, worker: WorkerView) -> str | None:
        if (worker.display_name or "").startswith("secret") and (
            "admin" not in caller.roles
        ):
            return "a secret Worker"
        return None


async def test_a_scope_conflict_names_the_holder_only_to_who_may_see_it() -> None:
    with trio.fail_after(10):
        async with embedded_registry("rt-a", visibility=HideSecrets()) as registry:
            holder = await registry.create_worker(
                ADMIN, "rt-a", display_name="secret plan", scopes=["repo:x"]
            )
            with pytest.raises(ScopeConflictError) as hidden:
                await registry.create_worker(ADA, "rt-a", scopes=["repo:x"])
            assert hidden.value.scope == "repo:x"
            assert hidden.value.worker_id == ""
            assert holder.worker_id not in str(hidden.value)
            assert holder.worker_id not in json.dumps(hidden.value.details())
            with pytest.raises(ScopeConflictError) as shown:
                await registry.create_worker(ADMIN, "rt-a", scopes=["repo:x"])
            assert shown.value.worker_id == holder.worker_id


async def test_the_memory_audit_sink_keeps_the_newest_records() -> None:
    audit = MemoryAuditSink(retention=3)
    with trio.fail_after(10):
        async with embedded_registry("rt-a", audit=audit) as registry:
            created = [await registry.create_worker(ADA, "rt-a") for _ in range(5)]
    assert [r.worker_id for r in audit.records] == [w.worker_id for w in created[2:]]
