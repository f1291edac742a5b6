"""The Runtime: the environment that runs Workers, embedded in a Trio program."""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio

from . import _ask
from ._ask import DEFAULT_CANCEL_TIMEOUT, TurnResult, TurnStream
from ._engines._base import Engine, EngineInfo, Usage
from ._errors import (
    InvalidInputError,
    LimitExceededError,
    OperationUnsupportedError,
    RuntimeUnavailableError,
    ScopeConflictError,
    StoreError,
    WorkerExistsError,
    WorkerNotFoundError,
)
from ._events import EventLog, Subscription
from ._profiles import COMPANION, TOOL_PROFILES, Profile
from ._restore import restore_workers
from ._store._journal import Journal
from ._store._records import StoreSnapshot, parse_store_spec
from ._store._sqlite import SQLiteStore
from ._transcript import DEFAULT_PAGE
from ._types import (
    CancelOutcome,
    CancelResult,
    Capabilities,
    Diagnostic,
    RuntimeSummary,
    TranscriptPage,
    TurnStatus,
    TurnSummary,
    WorkerPage,
    WorkerStatus,
    WorkerSummary,
)
from ._util import parse_count, single_error
from ._version import PROTOCOL_VERSION, __version__
from ._worker import Hub, Limits, Worker

__all__ = ["Runtime", "open_runtime"]

#: Ids a caller may supply: 1-128 characters, starting alphanumeric.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

#: The bounds a Runtime keeps unless told otherwise.
DEFAULT_LIMITS = Limits()

#: Page size of Worker listings when the caller gives none, and the largest.
_DEFAULT_LIMIT = 50
_MAX_LIMIT = 500

#: The most exclusive scopes one Worker may claim; each is 1-1024 characters
#: without control characters.
_MAX_SCOPES = 16
_SCOPE_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,1024}")


def _check_scopes(scopes: Sequence[str] | None) -> tuple[str, ...]:
    if scopes is None:
        return ()
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise InvalidInputError("scopes must be a list of strings", path="scopes")
    if len(scopes) > _MAX_SCOPES:
        raise InvalidInputError(
            f"a Worker may claim at most {_MAX_SCOPES} scopes", path="scopes"
        )
    for scope in scopes:
        if not isinstance(scope, str) or _SCOPE_RE.fullmatch(scope) is None:
            raise InvalidInputError(
                "each scope must be 1-1024 characters without control characters",
                path="scopes",
            )
    if len(set(scopes)) != len(scopes):
        raise InvalidInputError("scopes must not repeat", path="scopes")
    return tuple(scopes)


#: The longest cancel or stop reason, in characters.
_MAX_REASON = 1_000

#: Characters refused in display names: C0 and C1 controls, and the
#: Unicode line and paragraph separators.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: A surrogate code point: never valid text on its own (UTF-8 cannot encode it).
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def _check_text(value: str | None, path: str, most: int | None = None) -> None:
    """Refuse text that is not a string, is too long, or has a surrogate.

    Raises:
        InvalidInputError: ``path`` names the field.
    """
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInputError(f"{path} must be a string", path=path)
    if most is not None and len(value) > most:
        raise InvalidInputError(f"{path} is longer than {most} characters", path=path)
    # isascii() is O(1) in CPython: plain ASCII text skips the scan.
    if not value.isascii() and _SURROGATE_RE.search(value) is not None:
        raise InvalidInputError(
            f"{path} contains a lone surrogate (not a Unicode character)",
            path=path,
        )


def _check_id(value: str, path: str) -> None:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise InvalidInputError(
            f"{path} must be 1-128 characters of A-Z a-z 0-9 . _ : -, "
            "starting with a letter or digit",
            path=path,
        )


def _check_limit(limit: int | None) -> int:
    if limit is None:
        return _DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError("limit must be an integer", path="limit")
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInputError(
            f"limit must be between 1 and {_MAX_LIMIT}", path="limit"
        )
    return limit


class _Diagnostics(list[Diagnostic]):
    """A Runtime's diagnostics: the newest ``most``, oldest first."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self._most = most

    def append(self, item: Diagnostic, /) -> None:
        super().append(item)
        if len(self) > self._most:
            del self[: len(self) - self._most]

    def extend(self, items: Iterable[Diagnostic], /) -> None:
        super().extend(items)
        if len(self) > self._most:
            del self[: len(self) - self._most]


@attrs.define(eq=False)
class Runtime:
    """Runs Workers as supervised actors in one Trio nursery.

    Create one with :func:`open_runtime`. Every operation is a method taking
    ``worker_id``; together with :attr:`runtime_id` it is a Worker's identity.

    Errors (see :mod:`yoi_runtime._errors` for the tree): every method may
    raise :class:`RuntimeUnavailableError` once the Runtime is closing, and
    the ones taking a ``worker_id`` raise :class:`WorkerNotFoundError` for an
    unknown one.
    """

    _hub: Hub
    _nursery: trio.Nursery
    _engines: Mapping[str, Engine]
    _default_engine: str
    _profiles: Mapping[str, Profile]
    _placement: str
    started_at: datetime.datetime = attrs.field(
        factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    _workers: dict[str, Worker] = attrs.field(factory=dict)
    _ordered: list[Worker] = attrs.field(factory=list)
    _status: str = "serving"
    _next_ordinal: int = 0

    @property
    def runtime_id(self) -> str:
        """The Runtime's id, given to :func:`open_runtime` or generated."""
        return self._hub.runtime_id

    # -- helpers ----------------------------------------------------------------

    @property
    def status(self) -> str:
        """``"serving"``; ``"degraded"`` while the durable store cannot be
        written (commands are refused, reads work; :attr:`status_reason`
        says why; it serves again by itself once a write succeeds);
        ``"closing"`` or ``"closed"``."""
        if self._status == "serving" and self.status_reason is not None:
            return "degraded"
        return self._status

    @property
    def status_reason(self) -> str | None:
        """Why the Runtime is degraded (the real cause, such as a full disk),
        or None."""
        journal = self._hub.journal
        if journal is None or journal.problem is None:
            return None
        return journal.problem.message

    def _check_serving(self) -> None:
        if self._status != "serving":
            raise RuntimeUnavailableError(
                f"runtime {self.runtime_id} is {self._status}"
            )
        journal = self._hub.journal
        if journal is not None and journal.problem is not None:
            problem = journal.problem
            raise type(problem)(problem.message)

    async def _committed(self, worker_id: str | None = None) -> None:
        """Return once the changes made so far are durable (at once in
        memory), so the caller can acknowledge them.

        Raises:
            StoreWriteError: The store cannot be written now (the Runtime is
                degraded); the change is not acknowledged.
            StoreError: A row of ``worker_id``'s change could not be stored.
        """
        journal = self._hub.journal
        if journal is None:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await journal.wait_committed(worker_id)

    def _worker(self, worker_id: str) -> Worker:
        try:
            return self._workers[worker_id]
        except (KeyError, TypeError):
            raise WorkerNotFoundError(
                f"no worker {worker_id!r} in runtime {self.runtime_id}",
                worker_id=str(worker_id),
            ) from None

    # -- commands -----------------------------------------------------------------

    async def create_worker(
        self,
        profile: str = "companion",
        *,
        display_name: str | None = None,
        engine: str | None = None,
        system_prompt: str | None = None,
        worker_id: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> WorkerSummary:
        """Create a Worker and start its actor.

        On a durable store the Worker is committed before this returns.

        Args:
            profile: A profile name from :attr:`Capabilities.profiles`.
            display_name: A label for people; never used as identity. At
                most ``Limits.max_display_name_chars`` characters, without
                control characters.
            engine: An engine name from :attr:`Capabilities.engines`; None
                picks the Runtime's default engine.
            system_prompt: Replaces the profile's system prompt; at most
                ``Limits.max_system_prompt_chars`` characters.
            worker_id: Your own id, for idempotent create: creating again with
                the same id and settings returns the existing Worker.
            scopes: Exclusive scopes to claim in the allocation registry (for
                example ``"workdir:/srv/repo"``), held while the Worker is
                live (not stopped or failed); at most 16, each 1-1024
                characters without control characters.

        Returns:
            The new (or existing) Worker, ``idle``.

        Raises:
            InvalidInputError: Unknown profile or engine, a malformed id, a
                display name or system prompt too long or with a lone
                surrogate, a display name with a control character.
            OperationUnsupportedError: A profile that needs tools (``coder``,
                ``reviewer``) on a Runtime that offers none.
            WorkerExistsError: ``worker_id`` exists with other settings.
            ScopeConflictError: A live Worker holds one of ``scopes``; its
                id is the error's ``worker_id``.
            LimitExceededError: The Runtime holds ``Limits.max_workers``.
            StoreWriteError: The durable store cannot be written now
                (:class:`StorageFullError` for a full disk).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_serving()
        limits = self._hub.limits
        _check_text(display_name, "display_name", limits.max_display_name_chars)
        if display_name is not None and _CONTROL_RE.search(display_name):
            raise InvalidInputError(
                "display_name must not contain control characters",
                path="display_name",
            )
        _check_text(system_prompt, "system_prompt", limits.max_system_prompt_chars)
        if profile not in self._profiles:
            if profile in TOOL_PROFILES:
                raise OperationUnsupportedError(
                    f"runtime {self.runtime_id} cannot run {profile} Workers: "
                    "it offers no filesystem, shell or git tools"
                )
            raise InvalidInputError(f"unknown profile {profile!r}", path="profile")
        engine = self._default_engine if engine is None else engine
        if engine not in self._engines:
            raise InvalidInputError(f"unknown engine {engine!r}", path="engine")
        chosen = self._profiles[profile]
        prompt = chosen.system_prompt if system_prompt is None else system_prompt
        claimed = _check_scopes(scopes)
        if worker_id is None:
            worker_id = "w-" + secrets.token_hex(8)
        else:
            _check_id(worker_id, "worker_id")
            existing = self._workers.get(worker_id)
            if existing is not None:
                same = (
                    existing.profile,
                    existing.display_name,
                    existing.engine_name,
                    existing.system_prompt,
                    existing.scopes,
                ) == (profile, display_name, engine, prompt, claimed)
                if not same:
                    raise WorkerExistsError(
                        f"worker {worker_id} exists with other settings",
                        worker_id=worker_id,
                    )
                await self._committed()
                return existing.summary()
        if len(self._workers) >= limits.max_workers:
            raise LimitExceededError(
                f"runtime {self.runtime_id} holds {limits.max_workers} Workers, "
                "its limit",
                limit="max_workers",
                value=limits.max_workers,
            )
        hub = self._hub
        for scope in claimed:
            holder = hub.allocations.get(scope)
            if holder is not None:
                raise ScopeConflictError(
                    f"scope {scope!r} is held by worker {holder}",
                    worker_id=holder,
                    scope=scope,
                )
        worker = Worker(
            hub,
            worker_id,
            self._next_ordinal,
            profile,
            prompt,
            display_name,
            engine,
            self._engines[engine],
            chosen.tools,
            claimed,
        )
        self._next_ordinal += 1
        self._adopt(worker)
        for scope in claimed:
            hub.claim(scope, worker_id)
        worker.announce()
        await self._committed(worker_id)
        return worker.summary()

    def _adopt(self, worker: Worker) -> None:
        worker.log.set_max_bytes(self._hub.limits.worker_event_bytes)
        self._workers[worker.worker_id] = worker
        self._ordered.append(worker)
        if worker.status not in (WorkerStatus.STOPPED, WorkerStatus.FAILED):
            name = f"yoi-worker-{worker.worker_id}"
            self._nursery.start_soon(worker.run, name=name)

    async def send_input(
        self, worker_id: str, text: str, *, input_id: str | None = None
    ) -> TurnSummary:
        """Give a Worker input; it starts a turn, or is refused at once.

        Returns as soon as the turn is accepted (on a durable store: and
        committed); follow the Worker's events (:meth:`subscribe`) for the
        answer.

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            input_id: Your idempotency key for the input, recorded on the turn:
                sending the same ``input_id`` and text again returns that
                turn (as it is now) instead of starting another, also after
                a restart on a durable store.

        Returns:
            The accepted turn.

        Raises:
            WorkerBusyError: A turn is already accepted or running; nothing
                was queued.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty, too long or
                has a lone surrogate.
            IdempotencyConflictError: ``input_id`` was sent with other text.
            StoreWriteError: The durable store cannot be written now
                (:class:`StorageFullError` for a full disk); the input was
                not acknowledged.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_serving()
        worker = self._worker(worker_id)
        if not isinstance(text, str) or not text:
            raise InvalidInputError("input must be a non-empty string", path="text")
        if len(text) > self._hub.limits.max_input_chars:
            raise InvalidInputError(
                f"input is longer than {self._hub.limits.max_input_chars} characters",
                path="text",
            )
        _check_text(text, "text")
        if input_id is not None:
            _check_id(input_id, "input_id")
        turn = worker.accept_input(text, input_id)
        # Let the actor start the turn before the caller goes on.
        await self._committed(worker_id)
        return turn

    async def cancel(
        self, worker_id: str, *, turn_id: str | None = None, reason: str | None = None
    ) -> CancelResult:
        """End a Worker's current turn and wait until it has ended.

        The engine's work is cancelled (an HTTP stream is closed); the turn
        becomes ``cancelled`` and the Worker ``idle``. Not an error on an idle
        Worker.

        Args:
            worker_id: The Worker.
            turn_id: The turn you mean to cancel. If it has already ended the
                outcome says so; None means whatever turn is active.
            reason: Recorded in the ``turn.cancelled`` event (at most 1,000
                characters).

        Returns:
            ``cancelled``; ``no_active_turn``; or ``already_completed`` when
            the turn ended (completed or failed) before the cancel took hold.
        """
        await trio.lowlevel.checkpoint()
        self._check_serving()
        worker = self._worker(worker_id)
        _check_text(reason, "reason", _MAX_REASON)
        turn = worker.find_turn(turn_id)
        if turn is None:
            return CancelResult(CancelOutcome.NO_ACTIVE_TURN, worker_id)
        worker.cancel(turn, reason)
        await turn.wait_done()
        await self._committed()
        outcome = (
            CancelOutcome.CANCELLED
            if turn.status is TurnStatus.CANCELLED
            else CancelOutcome.ALREADY_COMPLETED
        )
        return CancelResult(outcome, worker_id, turn.turn_id)

    async def stop(self, worker_id: str, *, reason: str | None = None) -> WorkerSummary:
        """Stop a Worker: cancel its turn, end its actor, refuse later input.

        Idempotent: stopping a stopped (or failed) Worker returns its summary.
        Waits until the actor has ended.

        Args:
            worker_id: The Worker.
            reason: Recorded in the ``turn.cancelled`` and ``worker.stopped``
                events (at most 1,000 characters).

        Returns:
            The Worker, ``stopped`` (or ``failed`` if it had crashed).
        """
        await trio.lowlevel.checkpoint()
        self._check_serving()
        worker = self._worker(worker_id)
        _check_text(reason, "reason", _MAX_REASON)
        worker.stop(reason)
        await worker.wait_ended()
        await self._committed()
        return worker.summary()

    async def ask(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> TurnResult:
        """Give a Worker input and return its whole answer.

        Subscribes, sends ``text`` and waits for the turn's end (see
        ``docs/embedding.md``).

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            cancel_timeout: Seconds allowed for cancelling the turn when this
                call is cancelled.

        Returns:
            The completed turn's text, finish reason, usage and ids.

        Raises:
            TurnFailedError: The turn failed (``error.code`` says why).
            TurnCancelledError: Someone cancelled the turn or stopped the
                Worker, or the Runtime closed.
            WorkerBusyError: A turn is already accepted or running.
            WorkerStoppedError: The Worker is stopped or failed.
            InvalidInputError: ``text`` is not a string, empty or too long.

        Cancellation:
            Cancelling the call cancels the turn.
        """
        return await _ask.ask(self, worker_id, text, cancel_timeout=cancel_timeout)

    def open_turn(
        self,
        worker_id: str,
        text: str,
        *,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
    ) -> AbstractAsyncContextManager[TurnStream]:
        """Give a Worker input and stream that turn's answer.

        Use it as ``async with runtime.open_turn(worker_id, text) as turn:``,
        iterate ``turn`` for the text deltas, then read ``turn.result``.

        Args:
            worker_id: The Worker.
            text: The user input (at most ``Limits.max_input_chars`` chars).
            cancel_timeout: Seconds allowed for cancelling the turn when the
                block is left before the turn ended.

        Returns:
            An async context manager yielding a :class:`TurnStream`, whose
            iteration raises the turn's :class:`TurnNotCompletedError` if it
            did not complete.

        Raises:
            (on entering) WorkerBusyError, WorkerStoppedError,
            InvalidInputError: As :meth:`send_input`.

        Cancellation:
            Leaving the block before the turn ended (``break``, an error, a
            cancelled scope) cancels the turn.
        """
        return _ask.open_turn(self, worker_id, text, cancel_timeout=cancel_timeout)

    # -- observation ------------------------------------------------------------

    async def get_worker(self, worker_id: str) -> WorkerSummary:
        """Return one Worker's detail (never waits behind a running turn)."""
        await trio.lowlevel.checkpoint()
        return self._worker(worker_id).summary()

    async def list_workers(
        self,
        *,
        status: WorkerStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> WorkerPage:
        """List Workers, oldest first, one page at a time.

        Args:
            status: Only Workers with this status.
            limit: Page size, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts over.

        Raises:
            InvalidInputError: Unknown status, bad limit or malformed cursor.
        """
        await trio.lowlevel.checkpoint()
        limit = _check_limit(limit)
        wanted = None
        if status is not None:
            try:
                wanted = WorkerStatus(status)
            except ValueError:
                raise InvalidInputError(
                    f"unknown status {status!r}", path="status"
                ) from None
        start = 0
        if cursor is not None:
            parsed = parse_count(cursor)
            if parsed is None:
                raise InvalidInputError("malformed cursor", path="cursor")
            start = parsed + 1
        page: list[WorkerSummary] = []
        ordered = self._ordered
        index = start
        while index < len(ordered) and len(page) < limit:
            worker = ordered[index]
            if wanted is None or worker.status is wanted:
                page.append(worker.summary())
            index += 1
        more = (
            any(wanted is None or w.status is wanted for w in ordered[index:])
            if index < len(ordered)
            else False
        )
        return WorkerPage(tuple(page), str(index - 1) if more else None)

    async def transcript(
        self, worker_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> TranscriptPage:
        """Return a page of a Worker's transcript (input, answers, errors).

        Args:
            worker_id: The Worker.
            limit: Entries per page, 1 to 500; None means 50.
            cursor: ``next_cursor`` of the previous page; None starts at the
                oldest retained entry.
        """
        await trio.lowlevel.checkpoint()
        worker = self._worker(worker_id)
        transcript, journal = worker.transcript, self._hub.journal
        page = transcript.page(limit=limit, cursor=cursor)
        if journal is None:
            return page
        after = 0 if cursor is None else int(cursor)
        if after >= transcript.first - 1:
            return attrs.evolve(page, truncated=False)
        # Older than what memory keeps: the durable store has every entry.
        upto = min(
            after + (DEFAULT_PAGE if limit is None else limit), transcript.first - 1
        )
        stored = await journal.read_transcript(worker_id, after, upto)
        next_cursor = str(upto) if upto < transcript.last else None
        return TranscriptPage(tuple(stored), next_cursor, truncated=False)

    def subscribe(
        self, worker_id: str | None = None, *, after: int | None = None
    ) -> Subscription:
        """Follow one Worker's events, or every Worker's.

        Args:
            worker_id: The Worker; None for the Runtime-wide stream.
            after: Resume after this cursor (an event's ``seq`` on a Worker
                stream, its ``cursor`` on the Runtime stream); 0 replays all
                that is retained; None starts with the next new event.

        Returns:
            A :class:`Subscription` (replay, then live, without gap or
            duplicate; a :class:`Gap` where retention dropped events).

        Raises:
            WorkerNotFoundError: Unknown ``worker_id``.
            InvalidInputError: ``after`` is negative or ahead of the stream.
        """
        log = self._hub.log if worker_id is None else self._worker(worker_id).log
        return Subscription(log, log.check_cursor(after))

    async def summary(self) -> RuntimeSummary:
        """Return the Runtime's status, Worker counts, usage and capabilities."""
        await trio.lowlevel.checkpoint()
        counts = dict.fromkeys((s.value for s in WorkerStatus), 0)
        for worker in self._ordered:
            counts[worker.status.value] += 1
        return RuntimeSummary(
            runtime_id=self.runtime_id,
            version=__version__,
            protocol_version=PROTOCOL_VERSION,
            status=self.status,
            started_at=self.started_at,
            workers=counts,
            usage=self._hub.usage,
            capabilities=self.capabilities(),
            last_cursor=self._hub.log.last,
        )

    def capabilities(self) -> Capabilities:
        """Return what this Runtime can do (fixed for its lifetime)."""
        tools = sorted({tool for p in self._profiles.values() for tool in p.tools})
        return Capabilities(
            placement=self._placement,
            can_start_processes=False,
            filesystem=False,
            shell=False,
            git=False,
            worktree=False,
            engines=tuple(
                EngineInfo(name, engine.kind, engine.model)
                for name, engine in self._engines.items()
            ),
            profiles=tuple(self._profiles),
            tools=tuple(tools),
        )

    async def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Return what the Runtime noticed (crashed actors, ...), oldest first."""
        await trio.lowlevel.checkpoint()
        return tuple(self._hub.diagnostics)

    async def usage(self) -> Usage:
        """Return the tokens used by every turn of every Worker so far."""
        await trio.lowlevel.checkpoint()
        return self._hub.usage

    # -- closing ------------------------------------------------------------------

    async def drain(self, reason: str = "shutdown") -> None:
        """Stop taking commands and stop every Worker; wait until all ended.

        Running turns end ``cancelled`` with ``reason``. In memory every
        Worker ends ``stopped`` (``worker.stopped`` with ``reason``); on a
        durable store it keeps its status for the next start. Observation keeps
        working: subscribers can still read every event, and the streams end
        when the Runtime closes. Leaving :func:`open_runtime` drains
        implicitly. Idempotent.

        Afterwards every command raises :class:`RuntimeUnavailableError`.
        """
        self._begin_close(reason)
        for worker in self._ordered:
            await worker.wait_ended()

    def _begin_close(self, reason: str = "shutdown") -> None:
        if self._status == "serving":
            self._status = "closing"
        durable = self._hub.journal is not None
        for worker in self._ordered:
            if durable:
                worker.close(reason)
            else:
                worker.stop(reason)

    def _restore(self, snapshot: StoreSnapshot) -> None:
        journal = self._hub.journal
        if journal is not None:
            journal.on_failure = self._store_failed
        for worker in restore_workers(self._hub, snapshot, self._engines):
            self._adopt(worker)
            self._next_ordinal = max(self._next_ordinal, worker.ordinal + 1)

    def _store_failed(self, message: str) -> None:
        self._hub.diagnose("error", "store_failed", message)
        self._begin_close("store_failed")


@asynccontextmanager
async def open_runtime(
    engines: Mapping[str, Engine],
    *,
    default_engine: str | None = None,
    runtime_id: str | None = None,
    profiles: Mapping[str, Profile] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    placement: str = "embedded",
    store: str = "memory",
    close_timeout: float = 10.0,
) -> AsyncIterator[Runtime]:
    """Open a Runtime in the caller's Trio program.

    On exit every running turn is cancelled with reason ``shutdown``, the
    event streams end, and the engines are closed. In memory every Worker is
    then ``stopped``; on a durable store Workers keep their status and come
    back with it when a Runtime opens the store again.

    Args:
        engines: Engines by name (``{"local": OpenAIChatEngine(...)}``). The
            Runtime owns them from now on and closes them on exit.
        default_engine: The engine for Workers created without one; None means
            the first of ``engines``.
        runtime_id: The Runtime's id; None means the store's (a durable store
            keeps the id it was created with), or a new ``rt-<16 hex digits>``.
        profiles: Profiles by name; None means ``{"companion": COMPANION}``.
        limits: Retention and size bounds.
        placement: ``"embedded"``, or ``"process"`` for a standalone process.
        store: ``"memory"`` (nothing outlives the Runtime) or
            ``"sqlite:PATH"`` (durable: see ``docs/store.md``).
        close_timeout: Seconds allowed for closing engines on exit.

    Raises:
        InvalidInputError: No engines, an unknown default, a malformed id or
            an unknown store.
        StoreError: The store is in use by another process, is not a
            yoi-runtime store, has a newer schema, or belongs to another
            ``runtime_id``.
    """
    if not engines:
        raise InvalidInputError("a Runtime needs at least one engine", path="engines")
    default_engine = next(iter(engines)) if default_engine is None else default_engine
    if default_engine not in engines:
        raise InvalidInputError(
            f"unknown default engine {default_engine!r}", path="default_engine"
        )
    if runtime_id is not None:
        _check_id(runtime_id, "runtime_id")
    path = parse_store_spec(store)
    settings = (
        dict(engines),
        default_engine,
        {COMPANION.name: COMPANION} if profiles is None else dict(profiles),
        placement,
    )
    try:
        if path is None:
            hub = Hub(
                runtime_id or "rt-" + secrets.token_hex(8),
                limits,
                EventLog(
                    limits.runtime_event_retention,
                    max_bytes=limits.runtime_event_bytes,
                ),
                diagnostics=_Diagnostics(limits.max_diagnostics),
            )
            async with _run(hub, settings, None) as runtime:
                yield runtime
        else:
            async with _open_durable(path, runtime_id, limits) as (hub, snapshot):
                async with _run(hub, settings, snapshot) as runtime:
                    yield runtime
    finally:
        with trio.move_on_after(close_timeout, shield=True):
            for engine in engines.values():
                await engine.aclose()


_Settings = tuple[dict[str, Engine], str, dict[str, Profile], str]


@asynccontextmanager
async def _run(
    hub: Hub, settings: _Settings, snapshot: StoreSnapshot | None
) -> AsyncIterator[Runtime]:
    """Run the Runtime's nursery: one actor task per live Worker."""
    engines, default_engine, profiles, placement = settings
    runtime: Runtime | None = None
    try:
        async with _writing(hub.journal):
            with single_error():
                async with trio.open_nursery() as nursery:
                    runtime = Runtime(
                        hub, nursery, engines, default_engine, profiles, placement
                    )
                    if snapshot is not None:
                        runtime._restore(snapshot)
                        await runtime._committed()
                    try:
                        yield runtime
                    finally:
                        # The actors never raise: a nursery error is the body's.
                        runtime._begin_close()
    finally:
        hub.log.close()
        if runtime is not None:
            runtime._status = "closed"


@asynccontextmanager
async def _writing(journal: Journal | None) -> AsyncIterator[None]:
    """Run the journal's writer task (if durable) around the actors; on exit
    it commits what the actors noted last, then ends."""
    if journal is None:
        yield
        return
    with single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal.run, name="yoi-store-writer")
            try:
                yield
            finally:
                journal.close()


@asynccontextmanager
async def _open_durable(
    path: Path, runtime_id: str | None, limits: Limits
) -> AsyncIterator[tuple[Hub, StoreSnapshot]]:
    """Open the SQLite store, read it, and build the Hub it continues."""
    store = await trio.to_thread.run_sync(SQLiteStore.open, path)
    try:
        snapshot = await trio.to_thread.run_sync(
            partial(
                store.load,
                worker_event_retention=limits.worker_event_retention,
                runtime_event_retention=limits.runtime_event_retention,
                transcript_retention=limits.transcript_retention,
            )
        )
        stored_id = snapshot.runtime_id
        if stored_id is not None and runtime_id not in (None, stored_id):
            raise StoreError(
                f"store {path} belongs to runtime {stored_id}, not {runtime_id}"
            )
        events = snapshot.runtime_events
        log = EventLog(
            limits.runtime_event_retention,
            first=snapshot.last_cursor - len(events) + 1,
            events=events,
            max_bytes=limits.runtime_event_bytes,
        )
        hub = Hub(
            stored_id or runtime_id or "rt-" + secrets.token_hex(8),
            limits,
            log,
            diagnostics=_Diagnostics(limits.max_diagnostics),
        )
        hub.journal = Journal(store, log, hub.diagnose)
        if stored_id is None:
            hub.journal.set_runtime_id(hub.runtime_id)
        yield hub, snapshot
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store.close)
