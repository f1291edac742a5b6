"""Authentication of browser requests, and the session routes.

:func:`install_authentication` makes every request but ``GET /api/health``
and ``POST /api/session`` name its caller through the app's
:class:`~yoi_workspace._auth.Authenticator` before any other hook runs;
handlers read it with :func:`current_caller`. ``POST /api/session`` trades a
bearer token for an ``HttpOnly; SameSite=Strict`` session cookie,
``GET /api/session`` says who the caller is, ``DELETE /api/session`` signs
out (``docs/security.md``).
"""

from __future__ import annotations

from quart import Response, g, has_websocket_context, request, websocket
from quart_trio import QuartTrio

from yoi_runtime import UnauthorizedError
from yoi_runtime.serving import error_response, json_response

from .._auth import SESSION_COOKIE, Authenticator
from .._policy import Caller

__all__ = ["current_caller", "install_authentication"]

#: Routes that need no caller.
_OPEN = frozenset({("GET", "/api/health"), ("POST", "/api/session")})


def current_caller() -> Caller:
    """The caller the authentication hook found for this request."""
    caller: Caller = g.yoi_caller
    return caller


def _caller_json(caller: Caller) -> dict[str, object]:
    return {"caller": caller.caller_id, "roles": sorted(caller.roles)}


def install_authentication(app: QuartTrio, auth: Authenticator) -> None:
    """Authenticate every request of ``app`` with ``auth``; add the session
    routes. Call it before registering other hooks (they run in order).

    Errors (the JSON envelope): ``401 unauthorized`` without valid
    credentials, ``400 invalid_input`` for a repeated or malformed identity
    header (``proxy`` mode).
    """

    def authenticate() -> Response | None:
        context = websocket if has_websocket_context() else request
        client = context.scope.get("client")
        try:
            g.yoi_caller = auth.authenticate(
                list(context.headers.items()),
                dict(context.cookies),
                None if client is None else str(client[0]),
            )
        except UnauthorizedError as exc:
            # Answered here: the app's own handler reads a 401 as a remote
            # Runtime refusing the backend's token.
            return error_response(exc)
        return None

    @app.before_request
    async def authenticate_request() -> Response | None:
        if (request.method, request.path) in _OPEN:
            return None
        return authenticate()

    @app.before_websocket
    async def authenticate_websocket() -> Response | None:
        return authenticate()

    @app.post("/api/session")
    async def open_session() -> Response:
        try:
            session, caller = auth.open_session(list(request.headers.items()))
        except UnauthorizedError as exc:
            return error_response(exc)
        response = json_response(_caller_json(caller))
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=int(auth.session_ttl),
            path="/",
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )
        return response

    @app.get("/api/session")
    async def whoami() -> Response:
        return json_response(_caller_json(current_caller()))

    @app.delete("/api/session")
    async def close_session() -> Response:
        auth.close_session(dict(request.cookies))
        response = json_response({"signed_out": True})
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="Strict"
        )
        return response
