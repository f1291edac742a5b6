"""Start-up and usage errors of ``yoi-runtime``: one line on stderr saying
what to fix, and the exit status (2 for usage and config errors), from the
real command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import startup_support
import trio
from startup_support import busy_port, closed_port, lines_until_warning

from yoi_runtime import __version__

PROG = "yoi-runtime"
MODULE = "yoi_runtime"


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtime.toml"
    path.write_text(text)
    return path


def test_version() -> None:
    assert run("--version") == (0, f"{PROG} {__version__}\n", "")


def test_help_lists_the_environment() -> None:
    status, out, _ = run("--help")
    assert status == 0
    environment = out.split("environment variables:\n")[1]
    for name in ("YOI_RUNTIME_TOKEN", "YOI_MODEL_URL", "YOI_MODEL", "api_key_env"):
        assert re.search(rf"^  \(?{name}\)? ", environment, re.MULTILINE), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "nowhere"],
         "argument --bind: expected HOST:PORT, e.g. 127.0.0.1:8321 (see --help)"),
        (["--bind", "127.0.0.1:0", "--bogus"],
         "unrecognized arguments: --bogus (see --help)"),
        ([], "the following arguments are required: --bind (see --help)"),
        (["--bind", "127.0.0.1:0", "--runtime-id", "bad id!"],
         "--runtime-id must be 1-128 characters of A-Z a-z 0-9 . _ : -, starting "
         "with a letter or digit"),
        (["--bind", "nohost.invalid:8000", "--token-file", "TOKEN"],
         "cannot listen on nohost.invalid:8000: unknown host nohost.invalid "
         "(fix --bind)"),
        (["--bind", "192.0.2.1:8000", "--token-file", "TOKEN"],
         "cannot listen on 192.0.2.1:8000: 192.0.2.1 is not an address of this "
         "machine (fix --bind)"),
    ],
)  # fmt: skip
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    args = [str(token) if a == "TOKEN" else a for a in args]
    assert run(*args) == (2, "", f"{PROG}: {message}\n")


def run(*args: str) -> tuple[int, str, str]:
    return startup_support.run(MODULE, *args)


def test_port_in_use() -> None:
    with busy_port() as port:
        where = f"127.0.0.1:{port}"
        status = run("--bind", where)
    assert status == (
        1,
        "",
        f"{PROG}: cannot listen on {where}: the address is already in use (stop "
        "the other process or choose another port with --bind)\n",
    )


ENGINE = '[engines.x]\nkind = "openai-chat"\nbase_url = "http://127.0.0.1:9/v1"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[engines.x]\nkind = "openai-chta"\n',
         'config.engines.x: kind must be one of "openai-chat", "replay", '
         '"scripted" (not "openai-chta")'),
        ('[engines.x]\nbase_url = "u"\n',
         'config.engines.x: kind must be one of "openai-chat", "replay", '
         '"scripted" (missing)'),
        (ENGINE + "model = 7\n", "config.engines.x.model must be a string"),
        ('[engines.x]\nkind = "openai-chat"\nmodel = "m"\n',
         "config.engines.x.base_url is required"),
        (ENGINE + 'model = "m"\nmodle = "m"\n',
         "config.engines.x has an unknown key: modle"),
        ('max_body_bytes = "1 MiB"\n', "config.max_body_bytes must be an integer"),
        ("heartbeat_interval = true\n", "config.heartbeat_interval must be a number"),
        ('allowed_hosts = "rt.example"\n',
         "config.allowed_hosts must be an array of strings"),
        ("engines = 3\n", "config.engines must be a table ([engines])"),
        ("[engines]\nx = 3\n", "config.engines.x must be a table"),
        ("limits = 3\n", "config.limits must be a table ([limits])"),
        ('[limits]\nmax_workers = "many"\n',
         "config.limits.max_workers must be an integer"),
        ("enable_test_engine = true\n",
         "config has an unknown key: enable_test_engine"),
        (ENGINE + 'model = "m"\ntokenizer = "tiktoken"\n',
         'config.engines.x.tokenizer must be one of "estimate", "llama.cpp", '
         '"llama-cpp-python"'),
    ],
)  # fmt: skip
def test_config_errors_name_the_key_and_type(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = config(tmp_path, text)
    assert run("--bind", "127.0.0.1:0", "--config", str(path)) == (
        2,
        "",
        f"{PROG}: invalid config file {path}: {problem}\n",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('runtime_id = "no spaces"\n',
         "config.runtime_id must be 1-128 characters of A-Z a-z 0-9 . _ : -, "
         "starting with a letter or digit"),
        (ENGINE + 'model = "m"\napi_key_env = "YOI_TEST_UNSET_KEY"\n',
         "config.engines.x.api_key_env: environment variable YOI_TEST_UNSET_KEY "
         "is not set (set it, or use api_key_file)"),
    ],
)  # fmt: skip
def test_checked_at_start(tmp_path: Path, text: str, message: str) -> None:
    path = config(tmp_path, text)
    assert run("--bind", "127.0.0.1:0", "--config", str(path)) == (
        2,
        "",
        f"{PROG}: {message}\n",
    )


async def test_an_engine_that_does_not_answer_is_a_warning(tmp_path: Path) -> None:
    with closed_port() as port:
        await check_probe_warning(tmp_path, port)


async def check_probe_warning(tmp_path: Path, closed_port: int) -> None:
    path = config(
        tmp_path,
        "[engines.gone]\n"
        'kind = "openai-chat"\n'
        f'base_url = "http://127.0.0.1:{closed_port}/v1"\n'
        'model = "m"\n',
    )
    warning = (
        "engine 'gone' (openai-chat) did not answer at start (cannot connect); "
        "its turns will fail until it does"
    )
    with trio.fail_after(30):
        lines = await lines_until_warning(
            [sys.executable, "-m", MODULE, "--bind", "127.0.0.1:0", "--config",
             str(path)],
            warning,
            "/v1/health",
        )  # fmt: skip
    (found,) = [line for line in lines if warning in line]
    assert found.endswith(warning)
    assert "127.0.0.1" not in found  # the engine is named, never its URL
