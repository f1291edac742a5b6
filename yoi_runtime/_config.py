"""The runtime process's settings: a TOML config file, flags, environment.

Config file (every key optional)::

    runtime_id = "rt-office"
    store = "sqlite:runtime.db"     # or "memory"; a path relative to this file
    default_engine = "local"
    enable_test_engines = false     # scripted engines are refused without it
    max_body_bytes = 1048576        # request bodies, in bytes
    heartbeat_interval = 15.0       # seconds without traffic before a heartbeat
    shutdown_timeout = 10.0         # seconds allowed for graceful shutdown
    allowed_hosts = ["rt.example"]  # Host names served besides loopback and
                                    # the bind address ("*": any); docs/security.md
    allowed_origins = []            # browser origins allowed (none by default)
    keep_alive_timeout = 5.0        # seconds an idle connection is kept
    max_connections = 1000          # open connections; more get a 503
    log_level = "info"              # or "debug", "warning", "error"
    log_format = "console"          # or "json" (one object a line)
    metrics = true                  # GET /metrics (Prometheus); false: none

    [limits]                        # the Runtime's bounds (docs/runtime.md,
    max_workers = 1000              # "Bounds"): any field of Limits
    max_input_chars = 100000

    [engines.local]
    kind = "openai-chat"
    base_url = "http://127.0.0.1:8080/v1"
    model = "smollm2"
    api_key_env = "OPENAI_API_KEY"  # or api_key_file = "key.txt"
    temperature = 0.7               # optional, like max_tokens,
                                    # connect_timeout and read_timeout
    context_tokens = 8192           # the model's context; the history sent
                                    # is trimmed to fit (docs/runtime.md)
    tokenizer = "llama.cpp"         # or "llama-cpp-python", "estimate"
    max_concurrent = 1              # turns at once; more wait in FIFO order
    retry_attempts = 4              # attempts per turn before the first token
    retry_timeout = 30.0            # seconds after which no retry is started
    retry_wait_max = 8.0            # longest backoff, in seconds

    [engines.demo]
    kind = "replay"
    recordings_dir = "recordings"   # relative to the config file
    recording = "openai-long_text"
    speed = 1.0

    [engines.echo]
    kind = "scripted"               # test engines only
    deltas = ["a ", "b "]           # none: echo the input
    delay = 0.05                    # seconds before each delta
    hang = false                    # wait for cancel after the deltas
    error_status = 503              # fail with this HTTP status
    finish_reason = "length"        # as reported; "" for none (incomplete)
    max_concurrent = 1

Without a config file the process has one engine, ``local``, an
``openai-chat`` engine at ``--model-url`` / ``YOI_MODEL_URL`` (default
``http://127.0.0.1:8080/v1``) asking for ``--model`` / ``YOI_MODEL`` (default
``smollm2``). Flags win over the file, the file over the defaults.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs

from ._config_errors import ConfigValueError, problems, shape_problems
from ._engines._base import Engine
from ._engines._openai_chat import OpenAIChatEngine
from ._engines._replay import ReplayEngine
from ._engines._scripted import ScriptedEngine, ScriptedReply
from ._errors import EngineStatusError
from ._wire import strict_converter
from ._worker import Limits

__all__ = [
    "ConfigError",
    "EngineConfig",
    "FileConfig",
    "config_converter",
    "load_config",
    "make_engines",
    "read_config_file",
    "structure_config",
]

T = TypeVar("T")

DEFAULT_MODEL_URL = "http://127.0.0.1:8080/v1"
DEFAULT_MODEL = "smollm2"


class ConfigError(Exception):
    """The config file is unreadable or invalid; the message says where."""


@attrs.frozen
class OpenAIChatConfig:
    base_url: str
    model: str
    kind: Literal["openai-chat"] = "openai-chat"
    api_key_env: str | None = None
    api_key_file: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    context_tokens: int | None = None
    tokenizer: Literal["estimate", "llama.cpp", "llama-cpp-python"] = "estimate"
    max_concurrent: int | None = None
    retry_attempts: int = 4
    retry_timeout: float = 30.0
    retry_wait_max: float = 8.0


@attrs.frozen
class ReplayConfig:
    recordings_dir: str
    recording: str
    kind: Literal["replay"] = "replay"
    speed: float = 1.0


@attrs.frozen
class ScriptedConfig:
    kind: Literal["scripted"] = "scripted"
    deltas: tuple[str, ...] | None = None
    delay: float = 0.0
    hang: bool = False
    error_status: int | None = None
    finish_reason: str = "stop"
    max_concurrent: int | None = None


#: One ``[engines.NAME]`` table, by its ``kind``.
EngineConfig = OpenAIChatConfig | ReplayConfig | ScriptedConfig


@attrs.frozen
class FileConfig:
    """The config file's contents (see the module docstring)."""

    runtime_id: str | None = None
    store: str | None = None
    default_engine: str | None = None
    enable_test_engines: bool = False
    max_body_bytes: int = 1024 * 1024
    heartbeat_interval: float = 15.0
    shutdown_timeout: float = 10.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    metrics: bool = True
    limits: Limits = Limits()
    engines: Mapping[str, EngineConfig] = attrs.field(factory=dict)


def config_converter() -> cattrs.Converter:
    """A strict converter (no extra keys, exact types) for config files.

    It also structures an ``[engines.NAME]`` table (:data:`EngineConfig`)
    as the class its ``kind`` names, so another config file can embed that
    format.
    """
    converter = strict_converter()
    classes: dict[str, type[EngineConfig]] = {
        "openai-chat": OpenAIChatConfig,
        "replay": ReplayConfig,
        "scripted": ScriptedConfig,
    }

    def structure_engine(value: object, _: object) -> EngineConfig:
        if not isinstance(value, dict):
            raise TypeError("an engine must be a table")
        kind = value.get("kind")
        if kind not in classes:
            known = ", ".join(f'"{name}"' for name in classes)
            given = "missing" if kind is None else f"not {json.dumps(kind)}"
            raise ConfigValueError(f"kind must be one of {known} ({given})")
        return converter.structure(value, classes[kind])

    converter.register_structure_hook(EngineConfig, structure_engine)
    return converter


_converter = config_converter()


def read_config_file(file: Path) -> dict[str, Any]:
    """Read a TOML config file.

    Returns:
        Its top-level table.

    Raises:
        ConfigError: The file is unreadable or not valid TOML.
    """
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None


def structure_config(
    converter: cattrs.Converter, data: dict[str, Any], cls: type[T], file: Path
) -> T:
    """Validate a config file's table as ``cls``.

    Args:
        converter: Usually one from :func:`config_converter`.
        data: From :func:`read_config_file`.
        cls: The attrs class of the whole file.
        file: The file, for the message.

    Raises:
        ConfigError: Wrong keys or types; the message names each bad key's
            path (``config.engines.local.model``).
    """
    try:
        found = shape_problems(data, cls) if attrs.has(cls) else []
        if not found:
            return converter.structure(data, cls)
    except Exception as exc:
        found = problems(exc)
    raise ConfigError(f"invalid config file {file}: {'; '.join(found)}")


def load_config(path: str | os.PathLike[str] | None) -> tuple[FileConfig, Path]:
    """Read and validate a config file.

    Args:
        path: The TOML file, or None for the built-in defaults.

    Returns:
        The config and the directory relative paths in it are resolved from.

    Raises:
        ConfigError: Unreadable file, bad TOML, or wrong keys or types (the
            message names each bad key's path).
    """
    if path is None:
        return FileConfig(), Path.cwd()
    file = Path(path)
    data = read_config_file(file)
    config = structure_config(_converter, data, FileConfig, file)
    return config, file.resolve().parent


def make_engines(
    config: FileConfig,
    base_dir: Path,
    *,
    model_url: str | None = None,
    model: str | None = None,
) -> dict[str, Engine]:
    """Build the engines a config names (or the default ``local`` one).

    Args:
        config: From :func:`load_config`.
        base_dir: Where relative ``recordings_dir`` paths start.
        model_url: Overrides ``base_url`` of the default engine (flag).
        model: Overrides ``model`` of the default engine (flag).

    Raises:
        ConfigError: A scripted engine without ``enable_test_engines``, or an
            engine its class refuses (bad URL, missing recording, ...).
    """
    specs = dict(config.engines)
    if not specs:
        specs["local"] = OpenAIChatConfig(
            base_url=model_url or os.environ.get("YOI_MODEL_URL") or DEFAULT_MODEL_URL,
            model=model or os.environ.get("YOI_MODEL") or DEFAULT_MODEL,
        )
    engines: dict[str, Engine] = {}
    for name, spec in specs.items():
        try:
            engines[name] = _make_engine(spec, base_dir, config.enable_test_engines)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"engine {name!r}: {exc}") from None
    return engines


def _make_engine(spec: EngineConfig, base_dir: Path, test_engines: bool) -> Engine:
    if isinstance(spec, OpenAIChatConfig):
        return OpenAIChatEngine(
            base_url=spec.base_url,
            model=spec.model,
            api_key_env=spec.api_key_env,
            api_key_file=spec.api_key_file,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            connect_timeout=spec.connect_timeout,
            read_timeout=spec.read_timeout,
            context_tokens=spec.context_tokens,
            tokenizer=spec.tokenizer,
            max_concurrent=spec.max_concurrent,
            retry_attempts=spec.retry_attempts,
            retry_timeout=spec.retry_timeout,
            retry_wait_max=spec.retry_wait_max,
        )
    if isinstance(spec, ReplayConfig):
        return ReplayEngine(base_dir / spec.recordings_dir, spec.recording, spec.speed)
    if not test_engines:
        raise ValueError("scripted engines need enable_test_engines = true")
    if (
        spec.deltas is None
        and spec.error_status is None
        and not spec.hang
        and spec.finish_reason == "stop"
    ):
        return ScriptedEngine(max_concurrent=spec.max_concurrent)
    error = None
    if spec.error_status is not None:
        error = EngineStatusError(
            f"the model server answered HTTP {spec.error_status}",
            status_code=spec.error_status,
        )
    reply = ScriptedReply(
        deltas=spec.deltas or (),
        delay=spec.delay,
        hang=spec.hang,
        error=error,
        finish_reason=spec.finish_reason or None,
    )
    return ScriptedEngine([reply], max_concurrent=spec.max_concurrent)
