"""The runtime process (Quart-Trio on Hypercorn); needs the ``server`` extra.

Never imported by ``yoi_runtime`` itself, only by the ``yoi-runtime``
command, so the embedded library runs without Quart or Hypercorn.
"""
