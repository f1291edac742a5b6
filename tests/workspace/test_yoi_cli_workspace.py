"""The ``yoi`` command, run as a subprocess against a real ``yoi-workspace``.

The workspace runs with an embedded Runtime (``emb``) of scripted engines, in
``none`` and in ``token`` mode; ``yoi`` finds out it is a workspace by itself
and addresses Workers as ``emb/WORKER_ID``. Every wait is capped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from workspace.workspace_support import open_workspace_process, write_config

from yoi_runtime import WorkerSummary

YOI = Path(sys.executable).parent / "yoi"
TOKEN = "ada-token-0123456789"

CONFIG = """
heartbeat_interval = 0.2
[embedded]
runtime_id = "emb"
enable_test_engines = true
default_engine = "echo"
[embedded.engines.echo]
kind = "scripted"            # answers "echo: <input>"
[embedded.engines.slow]
kind = "scripted"
deltas = [{ticks}]
delay = 0.15                 # seconds before each delta: about 3 s an answer
"""

TOKEN_MODE = """
[auth]
mode = "token"
[[auth.tokens]]
caller = "ada"
token_file = "ada.token"
"""


def config(tmp_path: Path, *, token_mode: bool = False) -> Path:
    text = CONFIG.format(ticks=", ".join(['"tick "'] * 20))
    if token_mode:
        (tmp_path / "ada.token").write_text(TOKEN + "\n")
        text += TOKEN_MODE
    return write_config(tmp_path, text)


def yoi_env(url: str, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOI_")}
    env["YOI_URL"] = url
    if token is not None:
        env["YOI_TOKEN"] = token
    return env


async def yoi(
    *args: str, url: str, stdin: bytes = b"", token: str | None = None
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


#: The ``yoi`` processes a test started in the background, killed at its end.
RUNNING: list[trio.Process] = []


async def started(
    *args: str, url: str, token: str | None, stdin: bool = False
) -> trio.Process:
    """Start ``yoi ARGS`` with piped output (and input)."""
    process = await trio.lowlevel.open_process(
        [str(YOI), *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=yoi_env(url, token),
    )
    RUNNING.append(process)
    return process


@pytest.fixture(autouse=True)
async def kill_leftovers() -> AsyncIterator[None]:
    """Kill the background ``yoi`` processes a failed test left running."""
    yield
    while RUNNING:
        process = RUNNING.pop()
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(10, shield=True):
            await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


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

    async def until(self, kind: str) -> list[dict[str, Any]]:
        """Read JSON lines up to the first of type ``kind``."""
        items = [json.loads(await self.next())]
        while items[-1]["type"] != kind:
            items.append(json.loads(await self.next()))
        return items

    async def until_text(self, text: bytes) -> None:
        """Read until ``text`` has arrived (not split into lines)."""
        while text not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk


async def scenario(url: str, token: str | None, headers: dict[str, str]) -> None:
    """Every command against the workspace at ``url``."""
    done = await yoi("workers", url=url, token=token)
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert done.stderr == b"no Workers (create one with 'yoi create')\n"

    done = await yoi("create", "--display-name", "Yoi", url=url, token=token)
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(
        rb"emb/(w-\S+)  \(profile companion, engine echo\)\n", done.stdout
    )
    assert match is not None, done.stdout
    yoi_id = match.group(1).decode()
    address = f"emb/{yoi_id}"
    done = await yoi(
        "create", "--runtime", "emb", "--engine", "slow", "--json", url=url,
        token=token,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [slow] = json_lines(done.stdout)
    # The runtime process's WorkerSummary shape, exactly.
    assert set(slow) == {field.name for field in attrs.fields(WorkerSummary)}
    assert (slow["runtime_id"], slow["status"]) == ("emb", "idle")
    assert slow["engine"]["name"] == "slow"

    done = await yoi("workers", url=url, token=token)
    rows = [line.split() for line in done.stdout.decode().splitlines()]
    assert rows == [
        ["WORKER", "STATUS", "PROFILE", "ENGINE", "TURNS", "NAME"],
        [address, "idle", "companion", "echo", "0", "Yoi"],
        [f"emb/{slow['worker_id']}", "idle", "companion", "slow", "0"],
    ]
    done = await yoi("workers", "--json", url=url, token=token)
    listed = json_lines(done.stdout)
    assert [(w["runtime_id"], w["worker_id"]) for w in listed] == [
        ("emb", yoi_id),
        ("emb", slow["worker_id"]),
    ]

    # Chat with piped input; a bare id is found in the only Runtime having it.
    done = await yoi("chat", address, url=url, token=token, stdin=b"hello\n\n")
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert done.stdout == b"echo: hello\n"
    done = await yoi("chat", yoi_id, url=url, token=token, stdin=b"what?\n")
    assert (done.returncode, done.stdout) == (0, b"echo: what?\n"), done.stderr
    done = await yoi("chat", address, "--json", url=url, token=token, stdin=b"j\n")
    events = json_lines(done.stdout)
    assert [e["type"] for e in events] == [
        "turn.accepted",
        "turn.started",
        "turn.text_delta",
        "turn.completed",
    ]
    assert {(e["runtime_id"], e["worker_id"]) for e in events} == {("emb", yoi_id)}

    done = await yoi("transcript", address, url=url, token=token)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "you> hello",
        "Yoi> echo: hello",
        "you> what?",
        "Yoi> echo: what?",
        "you> j",
        "Yoi> echo: j",
    ]
    done = await yoi("transcript", address, "--json", url=url, token=token)
    entries = json_lines(done.stdout)
    assert [e["kind"] for e in entries] == ["user", "assistant"] * 3
    assert entries[1]["status"] == "completed"

    # Ctrl-C during an answer cancels that turn; the chat goes on.
    chat = await started(
        "chat", f"emb/{slow['worker_id']}", url=url, token=token, stdin=True
    )
    assert chat.stdin is not None
    assert chat.stdout is not None
    assert chat.stderr is not None
    answer = Lines(chat.stdout)
    await chat.stdin.send_all(b"first\n")
    await answer.until_text(b"tick")
    chat.send_signal(signal.SIGINT)
    line = await answer.next()
    assert line.startswith(b"tick "), line
    assert line.endswith(b" [cancelled]"), line
    await chat.stdin.aclose()
    assert await chat.wait() == 0
    assert await chat.stderr.receive_some() == b""
    done = await yoi("transcript", f"emb/{slow['worker_id']}", "--json", url=url,
                     token=token)  # fmt: skip
    assert json_lines(done.stdout)[1]["status"] == "cancelled"

    # Tail follows one Worker live until it stops; then for people.
    tail = await started("tail", address, "--json", "--after", "0", url=url,
                         token=token)  # fmt: skip
    assert tail.stdout is not None
    assert tail.stderr is not None
    lines = Lines(tail.stdout)
    items = await lines.until("worker.created")
    items += await lines.until("worker.status")
    done = await yoi("chat", address, url=url, token=token, stdin=b"live\n")
    assert done.returncode == 0, done.stderr
    while not any(i["data"].get("text") == "echo: live" for i in items):
        items += await lines.until("turn.completed")
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        stopped = await http.post(f"/api/runtimes/emb/workers/{yoi_id}/stop", json={})
        assert stopped.status_code == 200, stopped.text
    items += await lines.until("worker.stopped")
    assert await tail.wait() == 0
    assert await tail.stderr.receive_some() == b""
    assert [item["seq"] for item in items] == list(range(1, len(items) + 1))

    done = await yoi("tail", address, "--after", "0", url=url, token=token)
    assert done.returncode == 0, done.stderr
    people = done.stdout.decode().splitlines()
    assert len(people) == len(items)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d  #1 +worker\.created +Yoi profile=companion engine=echo",
        people[0],
    )
    assert any('"echo: live"' in line for line in people)

    # Mistakes: one line each, with the status that says whose.
    expected = [
        (("tail",), 2, "yoi: name the Worker to follow (RUNTIME_ID/WORKER_ID)"),
        (("chat", "nope/w-1"), 2, "yoi: no runtime 'nope' (see 'yoi workers')"),
        (("transcript", "emb/w-nope"), 1, f"yoi: no worker 'emb/w-nope' at {url}"),
        (("transcript", "w-nope"), 1, f"yoi: no worker 'w-nope' at {url}"),
        (("create", "--engine", "nope"), 2, "yoi: unknown engine 'nope'"),
    ]
    for args, status, start in expected:
        done = await yoi(*args, url=url, token=token)
        err = done.stderr.decode()
        assert (done.returncode, done.stdout) == (status, b""), err
        assert err.startswith(start), err
        assert err.count("\n") == 1, err


async def test_every_command_in_none_mode(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_workspace_process("--config", str(config(tmp_path))) as w:
            await scenario(w.url, None, {})


async def test_every_command_in_token_mode(tmp_path: Path) -> None:
    path = config(tmp_path, token_mode=True)
    with trio.fail_after(90):
        async with open_workspace_process("--config", str(path)) as w:
            url = w.url
            wrong = await yoi("workers", url=url, token="wrong-token")
            missing = await yoi("create", url=url)
            token_file = tmp_path / "token"
            token_file.write_text(TOKEN + "\n")
            from_file = await yoi("--token-file", str(token_file), "workers", url=url)
            assert from_file.returncode == 0, from_file.stderr
            await scenario(url, TOKEN, {"Authorization": f"Bearer {TOKEN}"})
    refused = f"yoi: {url} refused the token: check --token, --token-file or YOI_TOKEN"
    for done in (wrong, missing):
        err = done.stderr.decode()
        assert (done.returncode, done.stdout, err) == (1, b"", refused + "\n")
        assert TOKEN not in err
