"""yoi-runtime: run LLM Workers as supervised Trio actors.

Open a :class:`Runtime` with :func:`open_runtime`, create Workers, give them
input, and follow their events. See ``README.md`` and ``docs/``.
"""

from ._ask import TurnResult as TurnResult
from ._ask import TurnStream as TurnStream
from ._engine import Engine as Engine
from ._engine import EngineInfo as EngineInfo
from ._engine import Message as Message
from ._engine import TurnRequest as TurnRequest
from ._engine import Usage as Usage
from ._errors import EngineConfigError as EngineConfigError
from ._errors import EngineConnectError as EngineConnectError
from ._errors import EngineError as EngineError
from ._errors import EngineProtocolError as EngineProtocolError
from ._errors import EngineStatusError as EngineStatusError
from ._errors import EngineTimeoutError as EngineTimeoutError
from ._errors import IdempotencyConflictError as IdempotencyConflictError
from ._errors import InternalError as InternalError
from ._errors import InvalidInputError as InvalidInputError
from ._errors import OperationUnsupportedError as OperationUnsupportedError
from ._errors import RuntimeUnavailableError as RuntimeUnavailableError
from ._errors import ScopeConflictError as ScopeConflictError
from ._errors import StoreError as StoreError
from ._errors import TurnCancelledError as TurnCancelledError
from ._errors import TurnFailedError as TurnFailedError
from ._errors import TurnInterruptedError as TurnInterruptedError
from ._errors import TurnNotCompletedError as TurnNotCompletedError
from ._errors import UnauthorizedError as UnauthorizedError
from ._errors import WorkerBusyError as WorkerBusyError
from ._errors import WorkerError as WorkerError
from ._errors import WorkerExistsError as WorkerExistsError
from ._errors import WorkerNotFoundError as WorkerNotFoundError
from ._errors import WorkerStoppedError as WorkerStoppedError
from ._errors import YoiRuntimeError as YoiRuntimeError
from ._events import Event as Event
from ._events import EventType as EventType
from ._events import Gap as Gap
from ._events import Subscription as Subscription
from ._json_form import to_json as to_json
from ._openai_chat import OpenAIChatEngine as OpenAIChatEngine
from ._profiles import COMPANION as COMPANION
from ._profiles import Profile as Profile
from ._replay import ReplayEngine as ReplayEngine
from ._runtime import Runtime as Runtime
from ._runtime import open_runtime as open_runtime
from ._scripted import ScriptedEngine as ScriptedEngine
from ._scripted import ScriptedReply as ScriptedReply
from ._types import CancelOutcome as CancelOutcome
from ._types import CancelResult as CancelResult
from ._types import Capabilities as Capabilities
from ._types import Diagnostic as Diagnostic
from ._types import RuntimeSummary as RuntimeSummary
from ._types import TranscriptEntry as TranscriptEntry
from ._types import TranscriptPage as TranscriptPage
from ._types import TurnError as TurnError
from ._types import TurnStatus as TurnStatus
from ._types import TurnSummary as TurnSummary
from ._types import WorkerPage as WorkerPage
from ._types import WorkerStatus as WorkerStatus
from ._types import WorkerSummary as WorkerSummary
from ._version import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._version import __version__ as __version__
from ._worker import Limits as Limits
