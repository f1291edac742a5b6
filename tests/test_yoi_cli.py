"""The ``yoi`` command, run as a subprocess against a real ``yoi-runtime``.

Every test starts the runtime process on a free loopback port with scripted
engines (and one OpenAI-compatible engine whose server is down), drives
``yoi`` as a child process (with pipes, or in a pseudo-terminal for Ctrl-C)
and checks what a person or a script would see. Every wait is capped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from yoi_runtime.testing import open_runtime_process

YOI = Path(sys.executable).parent / "yoi"

CONFIG = """
default_engine = "echo"
enable_test_engines = true

[engines.echo]
kind = "scripted"            # answers "echo: <input>"

[engines.slow]
kind = "scripted"
deltas = [{ticks}]
delay = 0.15                 # seconds before each delta: about 3 s an answer

[engines.long]
kind = "scripted"
deltas = ["cut ", "short"]
finish_reason = "length"     # the token limit cut it

[engines.down]
kind = "openai-chat"         # nothing listens there: retried, then failed
base_url = "http://127.0.0.1:{down_port}/v1"
model = "none"
retry_attempts = 2
retry_wait_max = 0.2
"""


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """The runtime's config; the ``down`` engine's port is held, unlistened."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        path = tmp_path / "runtime.toml"
        ticks = ", ".join(['"tick "'] * 20)
        port = held.getsockname()[1]
        path.write_text(CONFIG.format(ticks=ticks, down_port=port))
        yield path


def yoi_env(url: str | None, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOI_")}
    if url is not None:
        env["YOI_URL"] = url
    if token is not None:
        env["YOI_TOKEN"] = token
    return env


async def yoi(
    *args: str, url: str | None, stdin: bytes = b"", token: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``yoi ARGS`` to the end with ``stdin`` piped in."""
    assert YOI.exists(), "install the package: .venv/bin/pip install -e ."
    return await trio.run_process(
        [str(YOI), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=yoi_env(url, token),
    )


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines()]


async def create(url: str, *args: str) -> str:
    done = await yoi("create", "--json", *args, url=url)
    assert done.returncode == 0, done.stderr
    worker_id: str = json_lines(done.stdout)[0]["worker_id"]
    return worker_id


async def test_workers_create_chat_and_transcript(config: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(config)) as served:
            url = served.url
            done = await yoi("workers", url=url)
            assert (done.returncode, done.stdout) == (0, b"")
            assert b"no Workers" in done.stderr

            done = await yoi("create", "--display-name", "Yoi", url=url)
            assert done.returncode == 0, done.stderr
            match = re.fullmatch(
                rb"(w-\S+)  \(profile companion, engine echo\)\n", done.stdout
            )
            assert match is not None, done.stdout
            yoi_id = match.group(1).decode()
            # Options after the subcommand, and the JSON form of a summary.
            done = await yoi("create", "--engine", "slow", "--json", url=url)
            [slow] = json_lines(done.stdout)
            assert slow["engine"] == {
                "name": "slow",
                "kind": "scripted",
                "model": "scripted",
            }
            assert slow["status"] == "idle"

            done = await yoi("workers", url=url)
            rows = [line.split() for line in done.stdout.decode().splitlines()]
            assert rows == [
                ["WORKER", "STATUS", "PROFILE", "ENGINE", "TURNS", "NAME"],
                [yoi_id, "idle", "companion", "echo", "0", "Yoi"],
                [slow["worker_id"], "idle", "companion", "slow", "0"],
            ]
            done = await yoi("--json", "workers", url=url)
            listed = json_lines(done.stdout)
            assert [w["worker_id"] for w in listed] == [yoi_id, slow["worker_id"]]
            assert listed[0]["display_name"] == "Yoi"

            done = await yoi("chat", yoi_id, url=url, stdin=b"hello\n\nwhat?\n")
            assert done.returncode == 0, done.stderr
            assert done.stdout == b"echo: hello\necho: what?\n"
            assert done.stderr == b""  # no progress noise off a terminal

            done = await yoi("transcript", yoi_id, url=url)
            assert done.returncode == 0, done.stderr
            assert done.stdout.decode().splitlines() == [
                "you> hello",
                "Yoi> echo: hello",
                "you> what?",
                "Yoi> echo: what?",
            ]
            done = await yoi("transcript", yoi_id, "--json", url=url)
            entries = json_lines(done.stdout)
            assert [(e["kind"], e["text"]) for e in entries] == [
                ("user", "hello"),
                ("assistant", "echo: hello"),
                ("user", "what?"),
                ("assistant", "echo: what?"),
            ]
            assert entries[1]["status"] == "completed"
            assert entries[1]["finish_reason"] == "stop"


async def test_chat_marks_truncation_and_streams_json(config: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(config)) as served:
            worker_id = await create(served.url, "--engine", "long")
            done = await yoi("chat", worker_id, url=served.url, stdin=b"hi\n")
            assert done.returncode == 0, done.stderr
            assert done.stdout == (
                b"cut short [cut off: the answer reached the token limit]\n"
            )
            done = await yoi(
                "chat", worker_id, "--json", url=served.url, stdin=b"again\n"
            )
            assert done.returncode == 0, done.stderr
            events = json_lines(done.stdout)
            assert [e["type"] for e in events] == [
                "turn.accepted",
                "turn.started",
                "turn.text_delta",
                "turn.text_delta",
                "turn.completed",
            ]
            assert {e["data"]["turn_id"] for e in events} == {"t-2"}
            assert events[0]["data"]["input"] == "again"
            assert events[-1]["data"]["truncated"] is True
            assert events[-1]["data"]["finish_reason"] == "length"
            assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})

            done = await yoi("transcript", worker_id, url=served.url)
            assert done.stdout.decode().splitlines()[1] == (
                f"{worker_id}> cut short [cut off: the answer reached the token limit]"
            )


async def test_chat_shows_retries_and_a_failed_turn(config: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(config)) as served:
            worker_id = await create(served.url, "--engine", "down")
            done = await yoi("chat", worker_id, url=served.url, stdin=b"hi\n")
            assert done.returncode == 1
            assert done.stdout == b""
            lines = done.stderr.decode().splitlines()
            assert lines[0] == "yoi: retrying (attempt 2) after engine_unreachable…"
            assert lines[1].startswith("yoi: turn t-1 failed: engine_unreachable: ")
            assert len(lines) == 2


class Terminal:
    """The master side of a pseudo-terminal, read into one growing buffer."""

    def __init__(self, master: int) -> None:
        self.stream = trio.lowlevel.FdStream(master)
        self.output = b""

    async def wait_for(self, pattern: bytes, start: int = 0) -> int:
        """Read until ``pattern`` occurs after ``start``; return where it ends."""
        while (found := self.output.find(pattern, start)) < 0:
            try:
                chunk = await self.stream.receive_some()
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"no {pattern!r} in {self.output!r}")
            self.output += chunk
        return found + len(pattern)

    async def type(self, text: bytes) -> None:
        await self.stream.send_all(text)


@asynccontextmanager
async def open_in_terminal(
    *args: str, url: str
) -> AsyncIterator[tuple[trio.Process, Terminal]]:
    """Run ``yoi ARGS`` with a pseudo-terminal as its stdin, stdout and stderr."""
    master, slave = os.openpty()
    try:
        process = await trio.lowlevel.open_process(
            [str(YOI), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=yoi_env(url),
            start_new_session=True,
        )
    finally:
        os.close(slave)
    terminal = Terminal(master)
    try:
        yield process, terminal
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await terminal.stream.aclose()


async def test_ctrl_c_cancels_only_the_answer(config: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(config)) as served:
            worker_id = await create(served.url, "--engine", "slow")
            async with open_in_terminal("chat", worker_id, url=served.url) as (
                process,
                term,
            ):
                at = await term.wait_for(b"you> ")
                await term.type(b"first\n")
                await term.wait_for("[waiting for the engine…]".encode(), at)
                at = await term.wait_for(f"{worker_id}> tick".encode(), at)
                process.send_signal(signal.SIGINT)  # Ctrl-C during the answer
                at = await term.wait_for(b" [cancelled]\r\n", at)
                at = await term.wait_for(b"you> ", at)
                await term.type(b"second\n")
                answer = f"{worker_id}> {'tick ' * 20}\r\n".encode()
                at = await term.wait_for(answer, at)
                await term.wait_for(b"you> ", at)
                await term.type(b"\x04")  # Ctrl-D: end of input
                assert await process.wait() == 0
            async with httpx.AsyncClient(base_url=served.url) as http:
                worker = (await http.get(f"/v1/workers/{worker_id}")).json()["worker"]
                page = (await http.get(f"/v1/workers/{worker_id}/transcript")).json()
            assert worker["status"] == "idle"
            answers = [e for e in page["entries"] if e["kind"] == "assistant"]
            assert [(e["turn_id"], e["status"]) for e in answers] == [
                ("t-1", "cancelled"),
                ("t-2", "completed"),
            ]
            assert answers[1]["text"] == "tick " * 20


class DroppingProxy:
    """A TCP proxy to the runtime process whose connections can be cut."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.scopes: list[trio.CancelScope] = []
        self.connections = 0

    async def handle(self, client: trio.SocketStream) -> None:
        async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
            async for data in source:
                await sink.send_all(data)

        self.connections += 1
        with trio.CancelScope() as scope:
            self.scopes.append(scope)
            server = await trio.open_tcp_stream("127.0.0.1", self.port)
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, server)
                nursery.start_soon(pump, server, client)

    def drop(self) -> int:
        """Cut every open connection; return how many there were."""
        scopes, self.scopes = self.scopes, []
        for scope in scopes:
            scope.cancel()
        return len(scopes)


class Lines:
    """A child's standard output, read one line at a time."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    async def until(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        """Read JSON lines up to the ``count``-th of type ``kind``."""
        items: list[dict[str, Any]] = []
        while count:
            items.append(json.loads(await self.next()))
            count -= items[-1]["type"] == kind
        return items


async def test_tail_follows_and_resumes_after_a_drop(config: Path) -> None:
    with trio.fail_after(60):
        async with open_runtime_process("--config", str(config)) as served:
            worker_id = await create(served.url, "--display-name", "Yoi")
            port = httpx.URL(served.url).port
            assert port is not None
            proxy = DroppingProxy(port)
            async with (
                httpx.AsyncClient(base_url=served.url) as http,
                trio.open_nursery() as nursery,
            ):
                [listener] = await nursery.start(
                    partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1")
                )
                proxy_url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}"
                tail = await trio.lowlevel.open_process(
                    [str(YOI), "tail", worker_id, "--json", "--after", "0"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=yoi_env(proxy_url),
                )
                assert tail.stdout is not None
                assert tail.stderr is not None
                lines = Lines(tail.stdout)
                items = await lines.until("worker.created")
                await http.post(f"/v1/workers/{worker_id}/input", json={"text": "a"})
                items += await lines.until("turn.completed")
                assert proxy.drop() >= 1  # the stream's connection, at least
                before = proxy.connections
                await http.post(f"/v1/workers/{worker_id}/input", json={"text": "b"})
                items += await lines.until("turn.completed")
                assert proxy.connections > before  # it came back on its own
                await http.post(f"/v1/workers/{worker_id}/stop", json={})
                items += await lines.until("worker.stopped")
                assert await tail.wait() == 0  # the Worker's stream ended
                assert await tail.stderr.receive_some() == b""
                nursery.cancel_scope.cancel()
            # Everything, in order, once: no gap and no duplicate across the drop.
            assert [item["seq"] for item in items] == list(range(1, len(items) + 1))
            texts = [i["data"]["text"] for i in items if i["type"] == "turn.text_delta"]
            assert texts == ["echo: a", "echo: b"]

            # For people: one line per event.
            done = await yoi("tail", worker_id, "--after", "0", url=served.url)
            assert done.returncode == 0, done.stderr
            lines_out = done.stdout.decode().splitlines()
            assert len(lines_out) == len(items)
            assert re.fullmatch(
                r"\d\d:\d\d:\d\d  #1 +worker\.created +Yoi profile=companion "
                r"engine=echo",
                lines_out[0],
            )
            assert any('t-2 "echo: b"' in line for line in lines_out)


async def test_errors_are_one_line_with_the_right_status(
    config: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with open_runtime_process(
            "--config", str(config), env={"YOI_RUNTIME_TOKEN": "right-token-123"}
        ) as served:
            url = served.url
            wrong = await yoi("workers", url=url, token="wrong-token")
            # Usage errors (status 2): no URL, a malformed one, bad arguments.
            no_url = await yoi("workers", url=None)
            bad_url = await yoi("--url", "localhost:80", "workers", url=None)
            no_command = await yoi(url=url)
            # The right token, from the environment or a file, works.
            right = await yoi("workers", url=url, token="right-token-123")
            token_file = tmp_path / "token"
            token_file.write_text("right-token-123\n")
            from_file = await yoi("--token-file", str(token_file), "workers", url=url)
            # Runtime errors (status 1) and a refused value (2).
            unknown = await yoi(
                "transcript", "w-nope", url=url, token="right-token-123"
            )
            engine = await yoi(
                "create", "--engine", "nope", url=url, token="right-token-123"
            )
        with socket.socket() as closed:  # a port where nothing listens
            closed.bind(("127.0.0.1", 0))
            gone = f"http://127.0.0.1:{closed.getsockname()[1]}"
            unreachable = await yoi("workers", url=gone)

    assert (right.returncode, from_file.returncode) == (0, 0)
    assert (
        right.stderr
        == from_file.stderr
        == b"no Workers (create one with 'yoi create')\n"
    )
    expected = [
        (
            wrong,
            1,
            f"yoi: {url} refused the token: check --token, --token-file or YOI_TOKEN",
        ),
        (no_url, 2, "yoi: no URL: pass --url http://HOST:PORT or set YOI_URL"),
        (bad_url, 2, "yoi: --url 'localhost:80' is not a yoi URL"),
        (no_command, 2, "yoi: the following arguments are required: COMMAND"),
        (unknown, 1, f"yoi: no worker 'w-nope' at {url} (see 'yoi workers')"),
        (engine, 2, "yoi: unknown engine 'nope'"),
        (unreachable, 1, f"yoi: {gone}: "),
    ]
    for done, status, start in expected:
        err = done.stderr.decode()
        assert (done.returncode, done.stdout) == (status, b""), err
        assert err.startswith(start), err
        assert err.count("\n") == 1, err
        assert "right-token-123" not in err
        assert "wrong-token" not in err
    assert "check --url or YOI_URL" in unreachable.stderr.decode()


def test_python_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yoi_runtime.client", "--version"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.startswith(b"yoi (yoi-runtime ")
