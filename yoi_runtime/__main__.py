"""``python -m yoi_runtime``: the same as the ``yoi-runtime`` command."""

from ._cli import main

raise SystemExit(main())
