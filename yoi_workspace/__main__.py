"""``python -m yoi_workspace``: the same as the ``yoi-workspace`` command."""

from ._cli import main

raise SystemExit(main())
