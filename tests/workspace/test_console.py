"""The web console (``docs/console.md``) in a real browser, black-box.

Each test runs the real ``python -m yoi_workspace`` command on
``127.0.0.1:0`` with an embedded Runtime whose scripted engine streams a
known answer slowly (test engines on), and drives Debian's Chromium
(``/usr/bin/chromium``, installed by ``.ci/dev``) with Playwright's sync API
in a worker thread, so trio keeps draining the child's output meanwhile.
Every Playwright wait is capped by :data:`WAIT_MS`, each test by
``trio.fail_after``. The page must raise no script error and no
Content-Security-Policy report: it runs under the workspace's real CSP.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)
from workspace.workspace_support import open_workspace_process, write_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Milliseconds any one Playwright wait may take.
WAIT_MS = 15_000

#: Seconds a whole browser scenario may take.
SCENARIO_SECONDS = 120

TOKEN = "console-token-5d1e0c9b8a7f6e5d4c3b2a1908f7e6d5"

#: What the scripted engine streams, one delta per word, ``DELAY`` apart.
WORDS = [f"{word} " for word in "Once upon a time a console watched".split()] + [
    f"word{n} " for n in range(1, 18)
]
ANSWER = "".join(WORDS)
DELAY = 0.1

ENGINE = f"""\
heartbeat_interval = 1.0
[embedded]
runtime_id = "emb"
enable_test_engines = true
default_engine = "story"
[embedded.engines.story]
kind = "scripted"
deltas = {WORDS!r}
delay = {DELAY}
[embedded.engines.echo]
kind = "scripted"
"""

TOKEN_AUTH = """\
[auth]
mode = "token"
[[auth.tokens]]
caller = "ada"
roles = ["admin"]
token_file = "ada.token"
"""


@contextmanager
def open_page(user_data: Path) -> Iterator[tuple[BrowserContext, Page, list[str]]]:
    """Chromium with a fresh profile in ``user_data``: its context, a page
    and the list collecting the page's script errors and CSP reports."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 820},
        )
        try:
            context.set_default_timeout(WAIT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            problems: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                # A 401 is the signed-out probe of token mode, not a problem.
                if message.type == "error" and "status of 401" not in message.text:
                    problems.append(f"console: {message.text}")

            page.on("pageerror", lambda error: problems.append(f"error: {error}"))
            page.on("console", on_console)
            yield context, page, problems
        finally:
            context.close()


async def in_browser(scenario: Callable[..., Any], *args: Any) -> Any:
    """Run a sync browser scenario in a worker thread, capped."""
    with trio.fail_after(SCENARIO_SECONDS):
        return await trio.to_thread.run_sync(
            partial(scenario, *args), abandon_on_cancel=True
        )


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot into the test's tmp dir, and into
    ``$YOI_TEST_ARTIFACTS`` when that is set; return the tmp dir's copy."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    artefacts = os.environ.get("YOI_TEST_ARTIFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artefacts) / name)
    return path


def assistant(page: Page, n: int) -> Any:
    """The ``n``-th (from 1) answer in the Worker's panel."""
    return page.locator("#messages .message.assistant").nth(n - 1)


def chat_scenario(url: str, tmp_path: Path) -> dict[str, Any]:
    """Create a Companion, stream an answer, cancel a second one, stop it."""
    seen: dict[str, Any] = {}
    with open_page(tmp_path / "chromium") as (_, page, problems):
        page.goto(url)
        runtime = page.locator('#runtimes tr[data-runtime-id="emb"]')
        expect(runtime).to_contain_text("serving")
        expect(page.locator("#sign-in")).to_be_hidden()
        expect(page.locator("#workers-empty")).to_be_visible()

        # Create a Companion on the slow engine.
        page.select_option("#create-engine", "story")
        page.fill("#create-name", "Ada")
        page.click("#create")
        expect(page.locator("#worker-title")).to_have_text("Ada")
        expect(page.locator("#worker-status")).to_have_text("idle")
        row = page.locator("#workers tr.worker-row")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("companion")
        seen["worker_id"] = row.get_attribute("data-worker-id")

        # Send a message; the answer shows up a few words at a time.
        page.fill("#input-text", "Tell me a story")
        page.press("#input-text", "Enter")
        expect(page.locator("#messages .message.user")).to_have_text("Tell me a story")
        first = assistant(page, 1)
        expect(first).to_have_attribute("data-status", "running")
        expect(first.locator(".text")).to_contain_text("Once upon")
        partial_text = first.locator(".text").inner_text()
        assert partial_text
        assert len(partial_text) < len(ANSWER.strip())
        seen["partial"] = partial_text
        expect(first).to_have_attribute("data-status", "completed")
        expect(first.locator(".text")).to_have_text(ANSWER)
        # Usage (one token per input word, one per delta) reaches the page.
        usage = f"{len(WORDS)}"
        expect(page.locator("#worker-usage")).to_contain_text(f"4 / {usage}")
        expect(row).to_contain_text(f"4 / {usage}")
        expect(page.locator('#runtimes tr[data-runtime-id="emb"]')).to_contain_text(
            f"4 / {usage}"
        )

        # A second answer, cancelled while it streams.
        page.fill("#input-text", "Another, longer one")
        page.click("#send")
        second = assistant(page, 2)
        expect(second.locator(".text")).to_contain_text("upon")
        expect(page.locator("#cancel")).to_be_enabled()
        page.click("#cancel")
        expect(second).to_have_attribute("data-status", "cancelled")
        expect(second).to_contain_text("cancelled")
        expect(page.locator("#worker-status")).to_have_text("idle")
        cut = second.locator(".text").inner_text()
        assert cut.startswith("Once upon")
        assert len(cut) < len(ANSWER.strip())
        seen["cancelled_text"] = cut

        # Stop the Worker.
        page.click("#stop")
        expect(page.locator("#worker-status")).to_have_text("stopped")
        expect(row).to_contain_text("stopped")
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator("#stop")).to_be_disabled()
        expect(page.locator("#cancel")).to_be_disabled()

        seen["screenshot"] = save_screenshot(page, tmp_path, "console.png")
        seen["problems"] = problems
    return seen


async def test_console_chat_cancel_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path, ENGINE)
    async with open_workspace_process("--config", str(config)) as served:
        seen = await in_browser(chat_scenario, served.url, tmp_path)
        assert seen["problems"] == []
        print(f"console screenshot: {seen['screenshot']}")
        # The page showed what the Runtime recorded.
        path = f"/api/runtimes/emb/workers/{seen['worker_id']}"
        async with httpx.AsyncClient(base_url=served.url) as http:
            with trio.fail_after(10):
                worker = (await http.get(path)).json()["worker"]
                entries = (await http.get(f"{path}/transcript")).json()["entries"]
    assert worker["status"] == "stopped"
    assert worker["display_name"] == "Ada"
    answers = [e for e in entries if e["kind"] == "assistant"]
    assert [(e["status"], e["text"]) for e in answers] == [
        ("completed", ANSWER),
        ("cancelled", seen["cancelled_text"]),
    ]
    assert seen["screenshot"].stat().st_size > 10_000


def sign_in_scenario(url: str, tmp_path: Path) -> dict[str, Any]:
    """Sign in with the token, chat once, sign out."""
    seen: dict[str, Any] = {}
    with open_page(tmp_path / "chromium") as (context, page, problems):
        page.goto(url)
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#console")).to_be_hidden()

        page.fill("#sign-in-token", "not-the-token")
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#sign-in-error")).to_have_text(
            "That token was not accepted."
        )

        page.fill("#sign-in-token", TOKEN)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#console")).to_be_visible()
        expect(page.locator("#caller")).to_have_text("ada")
        expect(page.locator('#runtimes tr[data-runtime-id="emb"]')).to_contain_text(
            "serving"
        )
        # The token is gone from the page; the session cookie is HttpOnly.
        seen["html"] = page.content()
        seen["field"] = page.input_value("#sign-in-token")
        seen["storage"] = page.evaluate(
            "[document.cookie, localStorage.length, sessionStorage.length]"
        )
        seen["cookies"] = context.cookies()

        # The stream works on the session cookie alone.
        page.select_option("#create-engine", "echo")
        page.click("#create")
        expect(page.locator("#worker-status")).to_have_text("idle")
        page.fill("#input-text", "hello")
        page.press("#input-text", "Enter")
        expect(assistant(page, 1)).to_have_attribute("data-status", "completed")
        expect(assistant(page, 1).locator(".text")).to_have_text("echo: hello")

        page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        page.reload()
        expect(page.locator("#sign-in")).to_be_visible()
        expect(page.locator("#console")).to_be_hidden()
        save_screenshot(page, tmp_path, "console-sign-in.png")
        seen["problems"] = problems
    return seen


async def test_console_token_sign_in(tmp_path: Path) -> None:
    (tmp_path / "ada.token").write_text(TOKEN + "\n")
    config = write_config(tmp_path, ENGINE + TOKEN_AUTH)
    async with open_workspace_process("--config", str(config)) as served:
        seen = await in_browser(sign_in_scenario, served.url, tmp_path)
    assert seen["problems"] == []
    assert TOKEN not in seen["html"]
    assert seen["field"] == ""
    assert seen["storage"] == ["", 0, 0]
    [cookie] = seen["cookies"]
    assert cookie["name"] == "yoi_session"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]


#: The console's files and their content types.
FILES = {
    "/": "text/html; charset=utf-8",
    "/static/index.html": "text/html; charset=utf-8",
    "/static/console.js": "text/javascript; charset=utf-8",
    "/static/console.css": "text/css; charset=utf-8",
}

#: Paths under the static prefix that are not a console file.
NOT_FILES = [
    "/static/",
    "/static/nope.js",
    "/static/_console.py",
    "/static/..%2f_console.py",
    "/static/%2e%2e/_console.py",
    "/static/..%5c_console.py",
    "/static//console.js",
    "/static/console/index.html",
    "/static/CONSOLE.JS",
    "/static/console.js/",
    "/static/console.js%00",
]


async def test_console_files(tmp_path: Path) -> None:
    """The files are served without credentials (even in token mode), with
    their content type, ``no-store`` and the workspace CSP, while the API
    asks for credentials; anything else under ``/static/`` is 404 and
    nothing is read from disk."""
    (tmp_path / "ada.token").write_text(TOKEN)
    config = write_config(tmp_path, ENGINE + TOKEN_AUTH)
    async with open_workspace_process("--config", str(config)) as served:
        async with httpx.AsyncClient(base_url=served.url) as http:
            with trio.fail_after(20):
                answers = {path: await http.get(path) for path in FILES}
                heads = {path: await http.head(path) for path in FILES}
                missing = {path: await http.get(path) for path in NOT_FILES}
                api = await http.get("/api/runtimes")
                post = await http.post("/", json={})
    assert api.status_code == 401
    assert post.status_code in (401, 404, 405)
    for path, content_type in FILES.items():
        response, head = answers[path], heads[path]
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type
        assert response.headers.get_list("cache-control") == ["no-store"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith(
            "default-src 'self'"
        )
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(response.content))
    # Nothing inline: the CSP allows scripts and styles from files only.
    html = answers["/"].text
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html
    assert re.findall(r"\s(style|on[a-z]+)=", html) == []
    for path, response in missing.items():
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json", path
        assert "__future__" not in response.text
