"""``python -m yoi_runtime.client``: the same as the ``yoi`` command."""

from ._cli import main

raise SystemExit(main())
