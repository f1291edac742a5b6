"""Config file errors in words: the key's path and what it must be.

Both commands validate their TOML file with cattrs (``_config.py``). A
failure becomes one line per problem, each naming the key's path as TOML
spells it (``config.engines.local.model``, ``config.remote[0].url``) and
what the key must be in words ("must be a string", "must be an array of
tables ([[remote]])"), never a Python class name or an internal error such
as "'str' object has no attribute 'keys'". Values are never quoted: a
misplaced key may hold a secret.

Tables and arrays of tables are checked first (:func:`shape_problems`), so
``[remote]`` written for ``[[remote]]`` is reported at ``config.remote``
rather than as an error about each of its keys; everything else is
cattrs' :func:`cattrs.transform_error` with :func:`describe` as its
formatter.
"""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

__all__ = ["ConfigValueError", "describe", "problems", "shape_problems", "words"]


class ConfigValueError(ValueError):
    """A value a structure hook refuses; its message is shown as written
    (after the key's path)."""


def _options(hint: Any) -> list[Any]:
    """The members of a union, without None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return [hint]


def _item(hint: Any) -> Any | None:
    """The item type of a homogeneous array type, or None."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin in (list, collections.abc.Sequence):
        return args[0]
    return None


def _is_table(hint: Any) -> bool:
    options = _options(hint)
    return all(
        attrs.has(o)
        or typing.get_origin(o) in (dict, collections.abc.Mapping)
        or o in (dict,)
        for o in options
    )


def _toml_key(path: str) -> str:
    """``config.auth.tokens`` -> ``auth.tokens`` (indices dropped)."""
    return re.sub(r"\[[^\]]*\]", "", path).removeprefix("config.")


def words(hint: Any, path: str = "") -> str:
    """What a value of type ``hint`` is, in words ("a string")."""
    options = _options(hint)
    if len(options) > 1:
        if _is_table(hint):
            return "a table"
        return " or ".join(words(o, path) for o in options)
    hint = options[0]
    if typing.get_origin(hint) is Literal:
        values = [f'"{v}"' if isinstance(v, str) else str(v) for v in hint.__args__]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    item = _item(hint)
    if item is not None:
        if _is_table(item):
            return f"an array of tables ([[{_toml_key(path)}]])"
        return f"an array of {_plural(words(item))}"
    if _is_table(hint):
        bare = not path or path.endswith("]")  # an entry of an array
        return "a table" if bare else f"a table ([{_toml_key(path)}])"
    simple = {
        str: "a string",
        bool: "true or false",
        int: "an integer",
        float: "a number",
        Path: "a string",
    }
    return simple.get(hint, "a valid value")


def _plural(phrase: str) -> str:
    """``"a string"`` -> ``"strings"``."""
    for article in ("an ", "a "):
        if phrase.startswith(article):
            return phrase.removeprefix(article) + "s"
    return phrase


def describe(exc: BaseException, hint: Any | None) -> str:
    """What is wrong with one key, in words (after its path).

    Returns:
        The text following the path: ``" is required"``, ``" has an
        unknown key: modle"``, ``": kind must be one of ..."``; for a value
        of the wrong type, ``" must be "`` and a ``{words}`` placeholder
        that :func:`problems` fills in once the path is known.
    """
    if isinstance(exc, ConfigValueError):
        return f": {exc}"
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = sorted(exc.extra_fields)
        noun = "an unknown key" if len(keys) == 1 else "unknown keys"
        return f" has {noun}: {', '.join(keys)}"
    if isinstance(exc, KeyError):
        return " is required"
    if hint is not None:
        return " must be {words}"
    return " is not valid"


def _path(cattrs_path: str) -> str:
    """``config.engines['local'].model`` -> ``config.engines.local.model``."""
    return re.sub(r"\['([A-Za-z0-9_-]+)'\]", r".\1", cattrs_path)


def problems(exc: Exception) -> list[str]:
    """Each problem of a failed ``structure(data, cls)``, one line each."""
    hints: list[Any] = []

    def formatted(error: BaseException, hint: Any | None) -> str:
        hints.append(hint)
        return f"{len(hints) - 1}|{describe(error, hint)}"

    lines = []
    for line in cattrs.transform_error(exc, path="config", format_exception=formatted):
        message, _, where = line.rpartition(" @ ")
        index, _, message = message.partition("|")
        where = _path(where)
        message = message.replace("{words}", words(hints[int(index)], where))
        lines.append(where + message)
    return lines


def shape_problems(data: Any, cls: type, path: str = "config") -> list[str]:
    """Tables and arrays of tables given as something else, before cattrs
    sees them (see the module docstring)."""
    if not isinstance(data, dict):
        return [f"{path} must be {words(cls, path)}"]
    found: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if field.name not in data:
            continue
        value, key = data[field.name], f"{path}.{field.name}"
        hint = _options(hints[field.name])
        target = hint[0] if len(hint) == 1 else None
        item = None if target is None else _item(target)
        if target is not None and attrs.has(target):
            found += shape_problems(value, target, key)
        elif item is not None and attrs.has(item):
            if not isinstance(value, list):
                found.append(f"{key} must be {words(target, key)}")
                continue
            for index, entry in enumerate(value):
                found += shape_problems(entry, item, f"{key}[{index}]")
        elif item is not None and not isinstance(value, list):
            found.append(f"{key} must be {words(target, key)}")
        elif _is_table(hints[field.name]) and not isinstance(value, dict):
            found.append(f"{key} must be {words(hints[field.name], key)}")
    return found
