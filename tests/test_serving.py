"""What the serving layer changed in issue 13, tested without the apps.

- A request body of the wrong shape names its field as the embedded Runtime
  does (``text``, ``a.b``, ``a[0]``), never as a JSON path (``$.text``).
- ``yoi-runtime``'s token is read through a :class:`SecretRef`, as the
  workspace backend reads its secrets: a bad token file is one config error
  naming the file, never the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from quart_trio import QuartTrio

from yoi_runtime import InvalidInputError
from yoi_runtime._server._serve import settings_from_args
from yoi_runtime.serving import (
    ConfigError,
    InputBody,
    error_response,
    parse_json,
    read_body,
)


@attrs.frozen
class Inner:
    b: int


@attrs.frozen
class Nested:
    a: list[Inner]
    c: Inner | None = None


def _app(cls: type[Any]) -> QuartTrio:
    app = QuartTrio(__name__)
    app.register_error_handler(InvalidInputError, error_response)

    @app.post("/body")
    async def body() -> dict[str, str]:
        await read_body(cls)
        return {"ok": "yes"}

    return app


async def _error_of(cls: type[Any], body: bytes) -> dict[str, Any]:
    client = _app(cls).test_client()
    with trio.fail_after(10):
        response = await client.post(
            "/body", data=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    error: dict[str, Any] = (await response.get_json())["error"]
    assert error["code"] == "invalid_input"
    return error


@pytest.mark.parametrize(
    ("cls", "body", "path"),
    [
        (InputBody, b"{}", "text"),
        (InputBody, b'{"text": 42}', "text"),
        (InputBody, b'{"text": "hi", "input_id": 5}', "input_id"),
        (Nested, b'{"a": [{"b": "x"}]}', "a[0].b"),
        (Nested, b'{"a": [], "c": {"b": "x"}}', "c.b"),
        (InputBody, b"[]", "$"),
    ],
)
async def test_body_errors_name_fields_as_the_library_does(
    cls: type[Any], body: bytes, path: str
) -> None:
    error = await _error_of(cls, body)
    assert error["details"]["path"] == path
    assert "$." not in error["message"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('{"text": "\\ud800"}', "text"),
        ('{"a": {"b": ["ok", "\\udfff"]}}', "a.b[1]"),
        ('{"a b": {"c": "\\ud800"}}', "$['a b'].c"),
    ],
)
def test_lone_surrogates_name_their_field(body: str, path: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_json(body)
    assert caught.value.details()["path"] == path


def _settings_error(tmp_path: Path, content: bytes | None) -> str:
    token = tmp_path / "token"
    if content is not None:
        token.write_bytes(content)
    args = ["--bind", "127.0.0.1:0", "--token-file", str(token)]
    with pytest.raises(ConfigError) as caught:
        settings_from_args(args)
    return str(caught.value)


def test_a_bad_token_file_is_one_config_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    assert _settings_error(tmp_path, None).startswith(
        f"the token: cannot read secret file {token}: "
    )
    assert _settings_error(tmp_path, b" \n") == (
        f"the token: secret file {token} is empty"
    )
    message = _settings_error(tmp_path, b"\xff\xfe-secret-\xff")
    assert message == f"the token: secret file {token} is not UTF-8 text"
    assert "secret" not in message.replace("secret file", "")


def test_the_token_is_read_from_its_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("  t0ken-from-file  \n", encoding="utf-8")
    monkeypatch.setenv("YOI_RUNTIME_TOKEN", "t0ken-from-env")
    bind = ["--bind", "127.0.0.1:0"]
    from_file = settings_from_args([*bind, "--token-file", str(token)])
    assert from_file.token == "t0ken-from-file"
    assert settings_from_args(bind).token == "t0ken-from-env"
    monkeypatch.setenv("YOI_RUNTIME_TOKEN", "")
    assert settings_from_args(bind).token is None
    monkeypatch.setenv("YOI_RUNTIME_TOKEN", "   ")
    with pytest.raises(ConfigError) as caught:
        settings_from_args(bind)
    assert str(caught.value) == (
        "the token: environment variable YOI_RUNTIME_TOKEN is empty"
    )
