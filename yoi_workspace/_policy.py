"""Who is asking, what they may see, and what they may do.

The registry asks two policies on the way to every Runtime:

- a :class:`VisibilityPolicy` decides which Workers a :class:`Caller` may see.
  A hidden Worker is left out of listings and event streams, and naming it
  raises :class:`~yoi_workspace.WorkerNotVisibleError` (the browser API
  answers exactly as for an unknown Worker, ``404 worker_not_found``); the
  policy's reason is recorded in the registry's diagnostics and the audit log.
- a :class:`CommandPolicy` decides whether a caller may run a command
  (create, input, stop, cancel); a refusal is
  :class:`~yoi_workspace.CommandRefusedError` (``403 command_refused``).

Both are synchronous and must not block: they decide from the caller and the
projection they are handed. The defaults, :data:`EVERYONE_SEES_ALL` and
:data:`ALLOW_ALL`, let everyone see and do everything; commands a compat
source cannot do are refused by its handle (``operation_unsupported``), not
by policy. :class:`HideWorkers` is a real second implementation of both.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from ._views import RuntimeKind, WorkerView

__all__ = [
    "ALLOW_ALL",
    "ANONYMOUS",
    "EVERYONE_SEES_ALL",
    "AllowAll",
    "Caller",
    "Command",
    "CommandPolicy",
    "EveryoneSeesAll",
    "HideWorkers",
    "Operation",
    "VisibilityPolicy",
]


@attrs.frozen
class Caller:
    """The person (or program) a request comes from.

    The browser API takes it from a header set by the authenticating proxy in
    front of the backend (``docs/workspace.md``); the registry never checks
    credentials itself.

    Attributes:
        caller_id: A stable id for audit lines and policies (``"anonymous"``
            when nobody was named).
        roles: Role names a policy may consult (``"admin"``, ...).
    """

    caller_id: str
    roles: frozenset[str] = frozenset()


#: The caller of a request that names nobody.
ANONYMOUS = Caller("anonymous")


class Operation(enum.StrEnum):
    """The commands the registry audits and asks the command policy about."""

    CREATE = "create"
    INPUT = "input"
    STOP = "stop"
    CANCEL = "cancel"


@attrs.frozen
class Command:
    """One command as the command policy sees it.

    Attributes:
        operation: What is asked.
        runtime_id: The Runtime (or compat source) addressed.
        kind: The kind of its handle.
        profile: The Worker's profile (for ``create``, the one asked for).
        worker: The Worker's projection; None for ``create``.
    """

    operation: Operation
    runtime_id: str
    kind: RuntimeKind
    profile: str
    worker: WorkerView | None = None


class VisibilityPolicy(Protocol):
    """Decides which Workers a caller may see."""

    def why_hidden(self, caller: Caller, worker: WorkerView) -> str | None:
        """Return None when ``caller`` may see ``worker``, else the reason.

        The reason is recorded (diagnostics, audit), never sent to a browser.
        Called once per Worker per listing, detail or command, and once per
        Worker per event stream (the decision is kept for the stream's life).
        """
        ...


class CommandPolicy(Protocol):
    """Decides whether a caller may run a command."""

    def why_refused(self, caller: Caller, command: Command) -> str | None:
        """Return None when ``caller`` may run ``command``, else the reason.

        The reason is the message of the ``command_refused`` error the
        browser receives, so it must not name anything the caller may not see.
        """
        ...


@attrs.frozen
class EveryoneSeesAll:
    """The default visibility policy: every caller sees every Worker."""

    def why_hidden(self, caller: Caller, worker: WorkerView) -> str | None:
        return None


@attrs.frozen
class AllowAll:
    """The default command policy: every caller may run every command.

    Commands a compat source cannot do still fail, with
    ``operation_unsupported`` from its handle.
    """

    def why_refused(self, caller: Caller, command: Command) -> str | None:
        return None


EVERYONE_SEES_ALL = EveryoneSeesAll()
ALLOW_ALL = AllowAll()


@attrs.frozen
class HideWorkers:
    """Hide the Workers of some Runtimes or some profiles, except from some roles.

    Serves as both policies: it hides those Workers (visibility) and refuses
    every command on them, including creating one (command), so a caller
    cannot make a Worker it would then not see.

    Attributes:
        runtimes: Runtime ids whose Workers are hidden.
        profiles: Profiles (``"coder"``, ...) whose Workers are hidden.
        exempt_roles: Callers with any of these roles see and do everything.
    """

    runtimes: frozenset[str] = frozenset()
    profiles: frozenset[str] = frozenset()
    exempt_roles: frozenset[str] = frozenset()

    def _why(self, caller: Caller, runtime_id: str, profile: str) -> str | None:
        if caller.roles & self.exempt_roles:
            return None
        if runtime_id in self.runtimes:
            return f"the Workers of runtime {runtime_id} are hidden from this caller"
        if profile in self.profiles:
            return f"{profile} Workers are hidden from this caller"
        return None

    def why_hidden(self, caller: Caller, worker: WorkerView) -> str | None:
        return self._why(caller, worker.runtime_id, worker.profile)

    def why_refused(self, caller: Caller, command: Command) -> str | None:
        if self._why(caller, command.runtime_id, command.profile) is None:
            return None
        return f"{command.operation.value} is not allowed here"
