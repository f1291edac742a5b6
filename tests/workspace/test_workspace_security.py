"""The workspace's authentication modes and browser-facing rules, black-box.

The backend is served in-process on ``127.0.0.1:0`` (``serve_registry``)
with each :class:`Authenticator` mode; the start-up refusals run the real
``python -m yoi_workspace`` command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import trio
from workspace.workspace_support import Served, error_of

from yoi_runtime import ScriptedEngine, open_runtime
from yoi_runtime.serving import GuardSettings, serve_app
from yoi_runtime.serving._streams import StreamControl, StreamSettings
from yoi_workspace import Caller, EmbeddedRuntimeHandle, RuntimeRegistry
from yoi_workspace._auth import Authenticator
from yoi_workspace._server._app import WorkspaceState, create_app
from yoi_workspace._server._serve import WORKSPACE_CSP as CSP

TOKEN = "ws-token-8f2c1e9a7b3d4f60a1b2c3d4e5f60718"
SECRET = "proxy-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@asynccontextmanager
async def backend(auth: Authenticator) -> AsyncIterator[Served]:
    async with open_runtime(
        {"echo": ScriptedEngine()}, default_engine="echo", runtime_id="emb"
    ) as runtime:
        registry = RuntimeRegistry()
        registry.add(EmbeddedRuntimeHandle(runtime))
        streams = StreamControl(StreamSettings())
        state = WorkspaceState(registry, streams, auth=auth)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(
                    serve_app,
                    create_app(state),
                    "127.0.0.1",
                    0,
                    shutdown_trigger=trio.Event(),
                    shutdown_timeout=1.0,
                    drain=streams.close_streams,
                    guard=GuardSettings.for_bind(
                        "127.0.0.1", same_origin=True, content_security_policy=CSP
                    ),
                )
            )
            async with httpx.AsyncClient(base_url=binds[0]) as http:
                with trio.fail_after(30):
                    yield Served(binds[0], registry, state, http)
            nursery.cancel_scope.cancel()


async def whoami(http: httpx.AsyncClient, **headers: str) -> tuple[int, object]:
    response = await http.get("/api/session", headers=headers)
    return response.status_code, response.json()


async def test_none_mode_ignores_identity_headers() -> None:
    async with backend(Authenticator.none()) as served:
        spoofed = {"X-Yoi-Caller": "root", "X-Yoi-Roles": "admin"}
        assert await whoami(served.http, **spoofed) == (
            200,
            {"caller": "local", "roles": []},
        )


async def test_token_mode_and_the_session_cookie() -> None:
    auth = Authenticator.with_tokens({TOKEN: Caller("ada", frozenset({"admin"}))})
    async with backend(auth) as served:
        http = served.http
        refused = await http.get("/api/runtimes")
        assert (refused.status_code, error_of(refused)["code"]) == (
            401,
            "unauthorized",
        )
        spoofed = await http.get(
            "/api/runtimes", headers={"X-Yoi-Caller": "root", "X-Yoi-Roles": "admin"}
        )
        assert spoofed.status_code == 401
        wrong = await http.get("/api/runtimes", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/api/runtimes", headers=bearer)).status_code == 200
        assert (await http.get("/api/health")).status_code == 200
        # The browser trades the token once for an HttpOnly, Strict cookie.
        opened = await http.post("/api/session", headers=bearer)
        assert opened.json() == {"caller": "ada", "roles": ["admin"]}
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        assert await whoami(http) == (200, {"caller": "ada", "roles": ["admin"]})
        assert (await http.delete("/api/session")).json() == {"signed_out": True}
        assert (await whoami(http))[0] == 401
        no_token = await http.post("/api/session")
        assert no_token.status_code == 401


async def test_proxy_mode_needs_the_proxy() -> None:
    auth = Authenticator.behind_proxy(secret=SECRET)
    async with backend(auth) as served:
        named = {"X-Yoi-Caller": "bob", "X-Yoi-Roles": "ops, admin"}
        assert (await whoami(served.http, **named))[0] == 401
        proxied = {**named, "X-Yoi-Proxy-Secret": SECRET}
        assert await whoami(served.http, **proxied) == (
            200,
            {"caller": "bob", "roles": ["admin", "ops"]},
        )
        bad = await served.http.get(
            "/api/session",
            headers=[
                ("X-Yoi-Proxy-Secret", SECRET),
                ("X-Yoi-Caller", "bob"),
                ("X-Yoi-Caller", "root"),
            ],
        )
        assert (bad.status_code, error_of(bad)["code"]) == (400, "invalid_input")


async def test_the_workspace_allows_its_own_origin_only() -> None:
    async with backend(Authenticator.none()) as served:
        own = served.url  # http://127.0.0.1:PORT
        made = await served.http.post(
            "/api/runtimes/emb/workers", json={}, headers={"Origin": own}
        )
        assert made.status_code == 201
        for origin in ("http://evil.example", "null", own + ".evil.example"):
            refused = await served.http.post(
                "/api/runtimes/emb/workers", json={}, headers={"Origin": origin}
            )
            assert (refused.status_code, error_of(refused)["code"]) == (
                403,
                "origin_not_allowed",
            )
        plain = await served.http.post(
            "/api/runtimes/emb/workers",
            content=b'{"display_name": "x"}',
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status_code == 415
        page = await served.http.get("/api/health")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def run_workspace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yoi_workspace", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_public_bind_without_authentication_refuses_to_start() -> None:
    child = run_workspace("--bind", "0.0.0.0:0")
    assert child.returncode == 2
    assert "without authentication" in child.stderr


def test_short_tokens_refused_on_a_public_bind(tmp_path: Path) -> None:
    (tmp_path / "ada.token").write_text("short-token\n")
    config = tmp_path / "workspace.toml"
    config.write_text(
        '[embedded]\nenabled = false\n[auth]\nmode = "token"\n'
        '[[auth.tokens]]\ncaller = "ada"\ntoken_file = "ada.token"\n'
    )
    child = run_workspace("--bind", "0.0.0.0:0", "--config", str(config))
    assert child.returncode == 2
    assert "shorter than 32 characters" in child.stderr
    assert "short-token" not in child.stderr.replace("ada.token", "")
