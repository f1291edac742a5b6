"""yoi-workspace: the backend's RuntimeRegistry and browser-facing API.

A :class:`RuntimeRegistry` holds one handle per Runtime: a
:class:`RuntimeAdapter` over any :class:`yoi_runtime.RuntimeAPI` (an
:class:`EmbeddedRuntimeHandle`, or a :class:`RemoteRuntimeHandle` from
:func:`open_remote_handle` over a :class:`ReconnectingRuntime`), or a
read-only :class:`LocalPodSource` over the Pods of a yoi installation (a
:class:`YoiHome`, found as yoi does by :func:`resolve_yoi_home`) whose
Worker ids :func:`pod_worker_id` derives. It routes every operation by
``runtime_id`` + ``worker_id``, applying a :class:`VisibilityPolicy`, a
:class:`CommandPolicy` and an :class:`AuditSink`. The ``yoi-workspace``
command serves it to browsers
(``docs/workspace.md``).
"""

from ._aggregate import AggregateItem as AggregateItem
from ._aggregate import AggregateSubscription as AggregateSubscription
from ._aggregate import StreamReset as StreamReset
from ._audit import AuditRecord as AuditRecord
from ._audit import AuditSink as AuditSink
from ._audit import JSONLinesAuditSink as JSONLinesAuditSink
from ._audit import MemoryAuditSink as MemoryAuditSink
from ._compat import LocalPodSource as LocalPodSource
from ._errors import CommandRefusedError as CommandRefusedError
from ._errors import RuntimeExistsError as RuntimeExistsError
from ._errors import UnknownRuntimeError as UnknownRuntimeError
from ._errors import WorkerNotVisibleError as WorkerNotVisibleError
from ._follow import WorkerEventStream as WorkerEventStream
from ._handle import EmbeddedRuntimeHandle as EmbeddedRuntimeHandle
from ._handle import EventStream as EventStream
from ._handle import RuntimeAdapter as RuntimeAdapter
from ._handle import RuntimeHandle as RuntimeHandle
from ._listing import WorkerListing as WorkerListing
from ._pods import pod_worker_id as pod_worker_id
from ._policy import ALLOW_ALL as ALLOW_ALL
from ._policy import ANONYMOUS as ANONYMOUS
from ._policy import EVERYONE_SEES_ALL as EVERYONE_SEES_ALL
from ._policy import AllowAll as AllowAll
from ._policy import Caller as Caller
from ._policy import Command as Command
from ._policy import CommandPolicy as CommandPolicy
from ._policy import EveryoneSeesAll as EveryoneSeesAll
from ._policy import HideWorkers as HideWorkers
from ._policy import Operation as Operation
from ._policy import VisibilityPolicy as VisibilityPolicy
from ._registry import RuntimeRegistry as RuntimeRegistry
from ._remote import ReconnectingRuntime as ReconnectingRuntime
from ._remote import RemoteRuntimeConfig as RemoteRuntimeConfig
from ._remote import RemoteRuntimeHandle as RemoteRuntimeHandle
from ._remote import open_remote_handle as open_remote_handle
from ._secrets import SecretRef as SecretRef
from ._views import RuntimeKind as RuntimeKind
from ._views import RuntimeView as RuntimeView
from ._views import WorkerView as WorkerView
from ._views import WorkerViewPage as WorkerViewPage
from ._yoi_home import YoiHome as YoiHome
from ._yoi_home import resolve_yoi_home as resolve_yoi_home
