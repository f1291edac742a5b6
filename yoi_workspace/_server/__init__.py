"""The workspace backend process (Quart-Trio on Hypercorn); needs the
``workspace`` extra.

Never imported by ``yoi_workspace`` itself, only by the ``yoi-workspace``
command and tests, so the registry runs without Quart or Hypercorn.
"""
