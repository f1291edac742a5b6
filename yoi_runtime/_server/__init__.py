"""The runtime process (Quart-Trio on Hypercorn); needs the ``server`` extra.

Never imported by ``yoi_runtime`` itself, only by the ``yoi-runtime``
command (``yoi_runtime._cli``, by name), so the embedded library runs
without Quart or Hypercorn; import-linter's ``server`` contract
(``pyproject.toml``) keeps it so. The app builds on
:mod:`yoi_runtime.serving`, which the workspace backend shares.
"""
