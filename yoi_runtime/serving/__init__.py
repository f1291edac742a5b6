"""The serving layer both servers share (``yoi-runtime`` and ``yoi-workspace``).

Public, for the workspace backend and for programs that serve a Runtime in
their own ASGI app. See ``docs/serving.md``.
"""

from ._sse import event_stream_response as event_stream_response
from ._sse import item_cursor as item_cursor
from ._sse import sse_resume as sse_resume
from ._sse import sse_resume_count as sse_resume_count
from ._streams import EventSource as EventSource
from ._streams import StreamControl as StreamControl
from ._streams import StreamSettings as StreamSettings
from ._streams import ready_now as ready_now
from ._streams import ready_within as ready_within
from ._streams import serve_event_stream as serve_event_stream
