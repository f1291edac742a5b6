"""Secret references: read when resolved, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoi_runtime import InvalidInputError
from yoi_workspace._secrets import SecretRef

VALUE = "s3cret-VALUE-0123456789"


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef(env="YOI_TEST_SECRET")
    monkeypatch.setenv("YOI_TEST_SECRET", VALUE + "\n")
    assert ref.resolve() == VALUE
    assert ref.kind == "env"
    assert VALUE not in repr(ref)
    monkeypatch.delenv("YOI_TEST_SECRET")
    with pytest.raises(InvalidInputError, match="YOI_TEST_SECRET is not set"):
        ref.resolve()
    monkeypatch.setenv("YOI_TEST_SECRET", " \n")
    with pytest.raises(InvalidInputError, match="YOI_TEST_SECRET is empty"):
        ref.resolve()


def test_file_reference(tmp_path: Path) -> None:
    path = tmp_path / "token"
    ref = SecretRef(file=str(path))
    assert ref.kind == "file"
    with pytest.raises(InvalidInputError) as missing:
        ref.resolve()
    assert str(path) in missing.value.message
    path.write_text(VALUE + "\n")
    assert ref.resolve() == VALUE
    assert VALUE not in repr(ref)
    path.write_bytes(b"\xff" + VALUE.encode())
    with pytest.raises(InvalidInputError) as binary:
        ref.resolve()
    assert binary.value.message == f"secret file {path} is not UTF-8 text"
    assert binary.value.__cause__ is None
    assert binary.value.__suppress_context__


@pytest.mark.parametrize(
    "fields", [{}, {"env": "A", "file": "b"}, {"env": ""}, {"file": ""}]
)
def test_exactly_one_non_empty_reference(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SecretRef(**fields)
    assert caught.value.path == "token"


def test_references_are_values() -> None:
    assert SecretRef(env="A") == SecretRef(env="A")
    assert hash(SecretRef(file="x")) == hash(SecretRef(file="x"))
    assert repr(SecretRef(env="A")) == "SecretRef(env='A', file=None)"
