"""The web console: a page at ``/`` and its files under ``/static/``.

The files live in this package (``console/``: ``index.html``,
``console.js``, ``console.css``); there is no build step and nothing comes
from another origin. The page talks to the browser API only, from the same
origin (``docs/console.md``).

Serving rules:

- ``GET`` / ``HEAD`` of ``/`` answers ``index.html``, of ``/static/NAME``
  the file ``NAME`` when it is one of :data:`CONSOLE_FILES`, each with its
  content type; any other path under ``/static/`` is ``404`` (the files are
  an allow-list read once at start, so no request reaches the filesystem
  and there is nothing to traverse).
- They are served to everyone, before authentication: the files hold no
  data and no secret, and in ``token`` mode the page must load to offer its
  sign-in form. Everything the page shows comes from the browser API, which
  authenticates as before.
- Like every response they get the serving layer's headers
  (:mod:`yoi_runtime.serving`): the workspace CSP, which the page
  keeps (no inline script or style), ``X-Content-Type-Options: nosniff``
  and ``Cache-Control: no-store``, so a reload after an upgrade never mixes
  old and new files.
"""

from __future__ import annotations

from importlib import resources

from quart import Response, request
from quart_trio import QuartTrio

from ._legacy import legacy_json

__all__ = ["CONSOLE_FILES", "STATIC_PREFIX", "install_console"]

#: The URL prefix of the console's files.
STATIC_PREFIX = "/static/"

#: The files served under :data:`STATIC_PREFIX`, with their content types.
CONSOLE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


def _read_files() -> dict[str, bytes]:
    folder = resources.files(__package__).joinpath("console")
    return {name: folder.joinpath(name).read_bytes() for name in CONSOLE_FILES}


def install_console(app: QuartTrio) -> None:
    """Serve the console on ``app`` (the module docstring says what).

    Call it before :func:`~yoi_workspace._server._session.install_authentication`:
    its hook answers the console's paths before the caller is asked for.
    Every other request passes through untouched.

    Raises:
        OSError: A console file is missing from the package.
    """
    files = _read_files()

    @app.before_request
    async def serve_console() -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path == "/":
            name = "index.html"
        elif path.startswith(STATIC_PREFIX):
            name = path[len(STATIC_PREFIX) :]
        else:
            return None
        body = files.get(name)
        if body is None:
            return legacy_json({"error": "not_found", "message": "unknown file"}, 404)
        return Response(body, content_type=CONSOLE_FILES[name])
