"""Every example runs, so none can rot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def run_example(name: str, *args: str, stdin: bytes = b"") -> str:
    with trio.fail_after(300):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / name), *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()[-3000:]
    return output


@pytest.mark.llm
async def test_companion_embedded() -> None:
    output = await run_example("companion_embedded.py")
    assert "[turn.completed]" in output
    assert "[busy: turn t-" in output
    assert "[cancel -> cancelled (turn.cancelled)" in output
    assert "[worker is idle after 2 turns]" in output


@pytest.mark.llm
async def test_companion_chat_reads_lines_and_remembers(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path}/chat/companion.db"
    output = await run_example(
        "companion_chat.py", "--store", store, stdin=b"Hello!\nName a fruit.\n"
    )
    assert "(0 earlier turns)" in output
    assert "you> Hello!" in output
    assert "you> Name a fruit." in output
    assert output.count("yoi> ") == 2
    assert "Bye (2 turns)." in output
    # Run again on the same store: the same Companion, its turns counted on.
    output = await run_example(
        "companion_chat.py", "--store", store, stdin=b"And a colour?\n"
    )
    assert "Companion companion is ready (2 earlier turns)" in output
    assert "Bye (3 turns)." in output


@pytest.mark.llm
async def test_companion_remote() -> None:
    output = await run_example("companion_remote.py")
    assert "(process)" in output
    assert "[turn.completed]" in output
    assert "[busy: turn t-" in output
    assert "[cancel -> cancelled (turn.cancelled)" in output
    assert "[worker is idle after 2 turns]" in output
