"""Start-up and usage errors of ``yoi-workspace``: one line on stderr saying
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

PROG = "yoi-workspace"
MODULE = "yoi_workspace"


def run(*args: str) -> tuple[int, str, str]:
    return startup_support.run(MODULE, *args)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workspace.toml"
    path.write_text(text)
    return path


def test_version() -> None:
    assert run("--version") == (0, f"{PROG} {__version__}\n", "")


def test_help_lists_the_environment() -> None:
    status, out, _ = run("--help")
    assert status == 0
    environment = out.split("environment variables:\n")[1]
    for name in ("YOI_MODEL_URL", "YOI_MODEL", "YOI_HOME", "token_env", "api_key_env"):
        assert re.search(rf"^  \(?{name}\)? ", environment, re.MULTILINE), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "nowhere"],
         "argument --bind: expected HOST:PORT, e.g. 127.0.0.1:8321 (see --help)"),
        (["--bind", "127.0.0.1:0", "--bogus"],
         "unrecognized arguments: --bogus (see --help)"),
        (["--bind", "nohost.invalid:8000"],
         "refusing to serve on nohost.invalid without authentication: set [auth] "
         'mode = "token" or "proxy", or bind a loopback address'),
    ],
)  # fmt: skip
def test_usage_errors(args: list[str], message: str) -> None:
    assert run(*args) == (2, "", f"{PROG}: {message}\n")


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


REMOTE = '[[remote]]\nruntime_id = "rt-a"\nurl = "http://127.0.0.1:9"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[remote]\nruntime_id = "rt-a"\nurl = "http://127.0.0.1:9"\n',
         "config.remote must be an array of tables ([[remote]])"),
        ('remote = "rt-a"\n', "config.remote must be an array of tables ([[remote]])"),
        ("[[remote]]\nurl = 3\n",
         "config.remote[0].runtime_id is required; config.remote[0].url must be "
         "a string"),
        ("compat = [1]\n", "config.compat[0] must be a table"),
        ("embedded = 1\n", "config.embedded must be a table ([embedded])"),
        ('[embedded.engines.x]\nkind = "openai-chta"\n',
         'config.embedded.engines.x: kind must be one of "openai-chat", "replay", '
         '"scripted" (not "openai-chta")'),
        ('[auth]\nmode = "tokens"\n',
         'config.auth.mode must be one of "none", "token", "proxy"'),
        ("[[auth.tokens]]\ncaller = 1\n",
         "config.auth.tokens[0].caller must be a string"),
        (REMOTE + "connect_timeout = \"2s\"\n",
         "config.remote[0].connect_timeout must be a number"),
        (REMOTE + "tokn_env = \"X\"\n",
         "config.remote[0] has an unknown key: tokn_env"),
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
        ('[embedded]\nruntime_id = "no spaces"\n',
         "config.embedded.runtime_id must be 1-128 characters of A-Z a-z 0-9 . _ "
         ": -, starting with a letter or digit"),
        (REMOTE + 'token_env = "YOI_TEST_UNSET_TOKEN"\n',
         "config.remote[0].token_env: environment variable YOI_TEST_UNSET_TOKEN is "
         "not set (set it, or use token_file)"),
        ('[embedded.engines.x]\nkind = "openai-chat"\nbase_url = "http://127.0.0.1:9"'
         '\nmodel = "m"\napi_key_env = "YOI_TEST_UNSET_KEY"\n',
         "config.embedded.engines.x.api_key_env: environment variable "
         "YOI_TEST_UNSET_KEY is not set (set it, or use api_key_file)"),
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
    warning = (
        "engine 'gone' (openai-chat) did not answer at start (cannot connect); "
        "its turns will fail until it does"
    )
    with closed_port() as port:
        path = config(
            tmp_path,
            "[embedded.engines.gone]\n"
            'kind = "openai-chat"\n'
            f'base_url = "http://127.0.0.1:{port}/v1"\n'
            'model = "m"\n',
        )
        command = [sys.executable, "-m", MODULE, "--bind", "127.0.0.1:0"]
        with trio.fail_after(30):
            lines = await lines_until_warning(
                [*command, "--config", str(path)], warning, "/api/health"
            )
    (found,) = [line for line in lines if warning in line]
    assert found.endswith(warning)
    assert "127.0.0.1" not in found  # the engine is named, never its URL
