"""The event-stream protocol, sans-IO: frames, close codes, reconnection.

Both ends of an event stream (``docs/protocol.md``, "Observation") are
driven from here, h11-style: frozen values for what travels, pure functions
for the framing, and one small state machine per end whose transitions are
all in one table. Nothing here does I/O; the drivers are
:mod:`yoi_runtime.serving._streams` and :mod:`yoi_runtime.serving._sse`
(the server's pump and its two writers) and
:mod:`yoi_runtime.client._subscription` (the reconnecting client).

What travels:

- :class:`Items`: one frame of stream items. On a WebSocket a text frame
  holds one item (a JSON object) or a batch (a JSON array, in stream
  order); in SSE each item is one event whose ``id:`` is its position.
  Items are events, ``stream.gap`` (:class:`~yoi_runtime.Gap`) and, on the
  workspace's aggregate stream, ``stream.reset`` (:class:`Reset`).
- :class:`Heartbeat`: after a silence, ``{"type": "stream.heartbeat",
  "position"}`` on a WebSocket, ``: heartbeat position=N`` in SSE.
- :class:`Closing`: the end, a WebSocket close code and reason (SSE: a last
  ``{"type": "stream.end", "code", "reason"}`` event without ``id:``).

The close codes are :data:`CLOSE_CODES`, each with what a reconnecting
client does (:class:`CloseAction`); ``docs/protocol.md`` holds
:func:`close_code_table` and :func:`reconnect_rules` verbatim (a test checks).
"""

from ._client import CLIENT_TRANSITIONS as CLIENT_TRANSITIONS
from ._client import Backoff as Backoff
from ._client import ClientState as ClientState
from ._client import ClientStream as ClientStream
from ._client import Next as Next
from ._client import reconnect_rules as reconnect_rules
from ._frames import BROKEN as BROKEN
from ._frames import CLOSE_CODES as CLOSE_CODES
from ._frames import END_TYPE as END_TYPE
from ._frames import ENDED as ENDED
from ._frames import FINAL_EVENTS as FINAL_EVENTS
from ._frames import GAP_TYPE as GAP_TYPE
from ._frames import GOING_AWAY as GOING_AWAY
from ._frames import HEARTBEAT_TYPE as HEARTBEAT_TYPE
from ._frames import LOST as LOST
from ._frames import MAX_BATCH as MAX_BATCH
from ._frames import RESET_TYPE as RESET_TYPE
from ._frames import SSE_PREAMBLE as SSE_PREAMBLE
from ._frames import CloseAction as CloseAction
from ._frames import CloseCode as CloseCode
from ._frames import CloseFrame as CloseFrame
from ._frames import Closing as Closing
from ._frames import Heartbeat as Heartbeat
from ._frames import Items as Items
from ._frames import Reset as Reset
from ._frames import TextFrame as TextFrame
from ._frames import close_action as close_action
from ._frames import close_code_table as close_code_table
from ._frames import decode_frame as decode_frame
from ._frames import position_of as position_of
from ._frames import sse_comment as sse_comment
from ._frames import sse_event as sse_event
from ._frames import sse_text as sse_text
from ._frames import websocket_message as websocket_message
from ._server import SERVER_TRANSITIONS as SERVER_TRANSITIONS
from ._server import ServerState as ServerState
from ._server import ServerStream as ServerStream
