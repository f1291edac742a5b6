"""The wheel: it builds, installs into a fresh environment, and the core
works without the server extra (no Quart, no Hypercorn)."""

from __future__ import annotations

import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import sys, trio
from yoi_runtime import Event, ScriptedEngine, open_runtime

async def main():
    async with open_runtime({"s": ScriptedEngine()}) as runtime:
        worker = await runtime.create_worker()
        async with runtime.subscribe(worker.worker_id) as events:
            await runtime.send_input(worker.worker_id, "hi")
            async for item in events:
                if isinstance(item, Event) and item.type == "turn.completed":
                    break
    loaded = {"quart", "quart_trio", "hypercorn", "trio_websocket"} & set(sys.modules)
    print("ok", sorted(loaded))

trio.run(main)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("yoi_runtime-*.whl")
    return built


def test_core_installs_and_runs_without_the_server_extra(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    smoke = subprocess.run(
        [str(python), "-c", SMOKE], check=True, capture_output=True, text=True
    )
    assert smoke.stdout.strip() == "ok []"
    # The console script exists and says which extra it needs.
    command = subprocess.run(
        [str(env_dir / "bin" / "yoi-runtime"), "--bind", "127.0.0.1:0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert command.returncode == 2
    assert "pip install 'yoi-runtime[server]'" in command.stderr
    # So does the terminal client, in one line, without a traceback.
    client = subprocess.run(
        [str(env_dir / "bin" / "yoi"), "workers"], capture_output=True, text=True
    )
    assert client.returncode == 2
    assert client.stderr.count("\n") == 1
    assert 'pip install "yoi-runtime[client]"' in client.stderr
    # The wheel ships the type marker.
    listing = subprocess.run(
        [str(python), "-c", "import importlib.resources as r; "
         "print(r.files('yoi_runtime').joinpath('py.typed').is_file())"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert listing.stdout.strip() == "True"
    # With the server extra, the console script serves.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[server]"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        [str(env_dir / "bin" / "yoi-runtime"), "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("yoi-runtime listening on http://")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert server.stdout is not None
        server.stdout.close()
