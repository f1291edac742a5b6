"""The serving layer both servers share (``yoi-runtime`` and ``yoi-workspace``).

Public, for the workspace backend and for programs that serve a Runtime in
their own ASGI app; needs the ``server`` (or ``workspace``) extra. See
``docs/serving.md``: the JSON error envelope and its status table, body
and query reading, request bodies, Hypercorn serving with graceful
shutdown and the browser guard, request ids, access logs and metrics,
event-stream pumping (WebSocket and SSE), the start-up checks and the
command runner. Core helpers the layer builds on (the wire converter, id
and count checks, the engine config file) are re-exported from the core
modules that own them.

Importing this package needs no server library: the names that do (Quart,
Hypercorn, prometheus-client) are imported on first use, so the workspace
library (:class:`yoi_workspace.RuntimeRegistry` and its handles) can use the
core helpers here without the ``server`` extra.
"""

import importlib
import typing

from .._checks import check_limit as check_limit
from .._cli import run_server_command as run_server_command
from .._config import ConfigError as ConfigError
from .._config import EngineConfig as EngineConfig
from .._config import FileConfig as FileConfig
from .._config import config_converter as config_converter
from .._config import load_config as load_config
from .._config import make_engines as make_engines
from .._config import read_config_file as read_config_file
from .._config import structure_config as structure_config
from .._ids import ID_PATTERN as ID_PATTERN
from .._ids import check_id as check_id
from .._profiles import TOOL_PROFILES as TOOL_PROFILES
from .._store._records import parse_store_spec as parse_store_spec
from .._stream_protocol import position_of as position_of
from .._util import parse_count as parse_count
from .._util import single_error as single_error
from .._wire import PageForm as PageForm
from .._wire import converter as converter
from .._wire import item_from_json as item_from_json
from .._wire import item_to_json as item_to_json
from .._wire import page_form as page_form
from .._wire import register_page as register_page
from ._bodies import CancelBody as CancelBody
from ._bodies import CreateWorkerBody as CreateWorkerBody
from ._bodies import InputBody as InputBody
from ._bodies import StopBody as StopBody
from ._guard import GuardedApp as GuardedApp
from ._guard_settings import LOOPBACK_HOSTS as LOOPBACK_HOSTS
from ._guard_settings import ASGIApp as ASGIApp
from ._guard_settings import GuardSettings as GuardSettings
from ._logs import LogSettings as LogSettings
from ._logs import add_log_arguments as add_log_arguments
from ._logs import configure_logging as configure_logging
from ._request_id import HEADER as HEADER
from ._request_id import REQUEST_ID as REQUEST_ID
from ._request_id import new_request_id as new_request_id
from ._request_id import sane_request_id as sane_request_id
from ._secrets import SecretRef as SecretRef
from ._startup import CommandParser as CommandParser
from ._startup import check_engine_secrets as check_engine_secrets
from ._startup import environment_help as environment_help
from ._startup import listen_failure as listen_failure
from ._startup import probe_engines as probe_engines
from ._startup import startup_error as startup_error
from ._streams import EventSource as EventSource
from ._streams import StreamControl as StreamControl
from ._streams import StreamSettings as StreamSettings
from ._streams import ready_now as ready_now
from ._streams import ready_within as ready_within
from ._streams import serve_event_stream as serve_event_stream

if typing.TYPE_CHECKING:
    from ._http import DISPLAY_TEXT_PATTERN as DISPLAY_TEXT_PATTERN
    from ._http import MAX_JSON_DEPTH as MAX_JSON_DEPTH
    from ._http import STATUS as STATUS
    from ._http import InvalidJSONError as InvalidJSONError
    from ._http import MethodNotAllowedError as MethodNotAllowedError
    from ._http import PayloadTooLargeError as PayloadTooLargeError
    from ._http import RouteNotFoundError as RouteNotFoundError
    from ._http import WebSocketRequiredError as WebSocketRequiredError
    from ._http import error_response as error_response
    from ._http import install_error_handlers as install_error_handlers
    from ._http import json_response as json_response
    from ._http import parse_json as parse_json
    from ._http import query_int as query_int
    from ._http import read_body as read_body
    from ._http import refuse_control_characters as refuse_control_characters
    from ._hypercorn import ConnectionLimits as ConnectionLimits
    from ._hypercorn import ServeFunction as ServeFunction
    from ._hypercorn import is_loopback as is_loopback
    from ._hypercorn import parse_bind as parse_bind
    from ._hypercorn import raise_open_file_limit as raise_open_file_limit
    from ._hypercorn import run_until_signal as run_until_signal
    from ._hypercorn import serve_app as serve_app
    from ._metrics import AppMetrics as AppMetrics
    from ._metrics import install_metrics_route as install_metrics_route
    from ._observe import ObservedApp as ObservedApp
    from ._observe import install_route_names as install_route_names
    from ._openapi import CURSOR as CURSOR
    from ._openapi import ERROR_ENVELOPE as ERROR_ENVELOPE
    from ._openapi import IDEMPOTENCY_KEY as IDEMPOTENCY_KEY
    from ._openapi import LIMIT as LIMIT
    from ._openapi import Schemas as Schemas
    from ._openapi import request_bodies as request_bodies
    from ._run import drain_logged as drain_logged
    from ._run import run_server as run_server
    from ._run import serve_observed as serve_observed
    from ._sse import event_stream_response as event_stream_response
    from ._sse import item_cursor as item_cursor
    from ._sse import sse_resume as sse_resume
    from ._sse import sse_resume_count as sse_resume_count

#: The submodules that import a server library, loaded on first use.
_SERVER_MODULES = (
    "._http",
    "._hypercorn",
    "._metrics",
    "._observe",
    "._openapi",
    "._run",
    "._sse",
)


def __getattr__(name: str) -> object:
    """Load a name of a submodule that needs a server library (PEP 562)."""
    for module_name in _SERVER_MODULES:
        module = importlib.import_module(module_name, __name__)
        if name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
