"""The client of a ``yoi-runtime`` process (``docs/protocol.md``).

:func:`open_runtime_client` gives a :class:`RuntimeClient` with the same async
operations and result types as the embedded :class:`yoi_runtime.Runtime`, and
:class:`RemoteSubscription` event streams that reconnect without gap or
duplicate. Needs the ``client`` extra (``pip install "yoi-runtime[client]"``).
"""

import importlib.util as _importlib_util

if _importlib_util.find_spec("trio_websocket") is None:  # pragma: no cover
    raise ImportError(
        "yoi_runtime.client needs the 'client' extra: pip install 'yoi-runtime[client]'"
    )

from ._client import RuntimeClient as RuntimeClient
from ._client import open_runtime_client as open_runtime_client
from ._subscription import RemoteSubscription as RemoteSubscription
