"""The main job (``bash .ci/dev chat``, ``examples/companion_chat.py``) on the
real local model: Ctrl-C in a terminal cancels only the answer, a cut-off
answer is marked, and a long conversation on a durable store keeps working.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
import trio

pytestmark = pytest.mark.llm

CHAT = Path(__file__).resolve().parents[1] / "examples" / "companion_chat.py"
TRUNCATED = b"[... cut off: the answer reached the token limit]"


class Terminal:
    """The master side of a pseudo-terminal: what a person types and sees."""

    def __init__(self, master: int) -> None:
        self._stream = trio.lowlevel.FdStream(master)
        self.seen = b""
        self._read = 0

    async def expect(self, pattern: bytes) -> bytes:
        """Read until ``pattern`` appears after what earlier calls consumed;
        return the output up to and including it."""
        while (at := self.seen.find(pattern, self._read)) < 0:
            try:
                chunk = await self._stream.receive_some()
            except trio.BrokenResourceError:  # EIO: the child closed the pty
                chunk = b""
            if not chunk:
                raise AssertionError(f"no {pattern!r} in:\n{self.seen.decode()}")
            self.seen += chunk
        start, self._read = self._read, at + len(pattern)
        return self.seen[start : self._read]

    async def expect_text(self, at_least: int) -> None:
        """Read until ``at_least`` more visible characters arrived."""
        start = self._read
        while len(self.seen[start:].strip()) < at_least:
            self.seen += await self._stream.receive_some()
        self._read = len(self.seen)

    async def type(self, line: str) -> None:
        await self._stream.send_all(line.encode() + b"\n")

    async def aclose(self) -> None:
        await self._stream.aclose()


async def end(chat: trio.Process) -> None:
    """End the chat as a closing terminal would (SIGTERM: it stops its model
    server), so a failed test leaves no server behind; SIGKILL after 30 s."""
    if chat.returncode is None:
        chat.terminate()
        with trio.move_on_after(30, shield=True):
            await chat.wait()
    if chat.returncode is None:
        chat.kill()
        with trio.CancelScope(shield=True):
            await chat.wait()


async def test_ctrl_c_during_an_answer_cancels_only_that_turn(tmp_path: Path) -> None:
    master, child_side = os.openpty()
    command = [sys.executable, str(CHAT), "--store", f"sqlite:{tmp_path}/chat.db"]
    with trio.fail_after(600):
        chat = await trio.lowlevel.open_process(
            command,
            stdin=child_side,
            stdout=child_side,
            stderr=child_side,
            start_new_session=True,  # its own process group, as a shell job
        )
        os.close(child_side)
        terminal = Terminal(master)
        try:
            await terminal.expect(b"(0 earlier turns). /quit leaves.")
            await terminal.expect(b"you> ")
            await terminal.type("Write a long story about a lighthouse keeper.")
            await terminal.expect(b"yoi> ")
            await terminal.expect_text(at_least=20)
            # What a terminal does on Ctrl-C: SIGINT to the foreground group.
            os.killpg(chat.pid, signal.SIGINT)
            await terminal.expect(b"[cancelled]")
            await terminal.expect(b"you> ")
            # The model server did not see the Ctrl-C: the next line is
            # answered.
            await terminal.type("Say hi.")
            await terminal.expect(b"yoi> ")
            answer = await terminal.expect(b"you> ")
            assert b"[turn failed" not in answer, answer
            assert answer.strip(b" \r\nyou>")
            await terminal.type("/quit")
            await terminal.expect(b"Bye (2 turns).")
            assert await chat.wait() == 0
        finally:
            await end(chat)
            await terminal.aclose()


def children(pid: int) -> list[tuple[int, str]]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), command.decode(errors="replace")))
    return found


def exists(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_closing_the_terminal_stops_the_model_server_too(
    tmp_path: Path,
) -> None:
    master, child_side = os.openpty()
    command = [sys.executable, str(CHAT), "--store", f"sqlite:{tmp_path}/chat.db"]
    with trio.fail_after(300):
        chat = await trio.lowlevel.open_process(
            command,
            stdin=child_side,
            stdout=child_side,
            stderr=child_side,
            start_new_session=True,
        )
        os.close(child_side)
        terminal = Terminal(master)
        try:
            await terminal.expect(b"/quit leaves.")
            servers = [
                pid for pid, line in children(chat.pid) if "llama_cpp.server" in line
            ]
            assert len(servers) == 1
            # Its own session: the terminal's signals never reach it...
            assert os.getpgid(servers[0]) != os.getpgid(chat.pid)
            # ...so when the terminal closes, the chat stops it.
            os.killpg(chat.pid, signal.SIGHUP)
            assert await chat.wait() == 0
            assert not exists(servers[0])
        finally:
            await end(chat)
            await terminal.aclose()


async def run_chat(*args: str, stdin: bytes) -> str:
    done = await trio.run_process(
        [sys.executable, str(CHAT), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()[-3000:]
    return output


async def test_a_cut_off_answer_is_marked() -> None:
    with trio.fail_after(600):
        output = await run_chat(
            "--store",
            "memory",
            "--max-tokens",
            "8",
            stdin=b"Write a long story about a lighthouse keeper.\n",
        )
    assert TRUNCATED.decode() in output
    assert "[turn failed" not in output


async def test_thirty_long_turns_in_a_row_on_a_durable_store(tmp_path: Path) -> None:
    """The conversation outgrows the model's context many times over; the
    history sent is trimmed to it, and no turn fails.

    A 512-token context and 128-token answers make the history outgrow the
    context after a few turns, as 2,048 and 256 (the defaults) do after about
    eight, at a quarter of the time per turn.
    """
    topics = [f"a lighthouse keeper's day number {n}" for n in range(1, 31)]
    lines = "".join(f"Write a long story about {topic}.\n" for topic in topics)
    args = ("--store", f"sqlite:{tmp_path}/chat.db", "--n-ctx", "512")
    with trio.fail_after(3600):
        output = await run_chat(*args, "--max-tokens", "128", stdin=lines.encode())
    assert "(0 earlier turns)" in output
    assert output.count("yoi> ") == 30
    assert "[turn failed" not in output, output[-3000:]
    assert "Bye (30 turns)." in output
    # Each answer is there, cut off or finished, none empty.
    answers = re.findall(r"yoi> (.*?)\n\n(?:you> |Bye)", output, re.S)
    assert len(answers) == 30
    assert all(answer.strip() for answer in answers)
