"""The workspace backend's config file (TOML).

Every key is optional; without a file the backend has one embedded Runtime,
``embedded``, whose one engine ``local`` is the model server at
``YOI_MODEL_URL`` (as ``yoi-runtime`` without a config)::

    audit_log = "audit.jsonl"        # one JSON line per command; relative
                                     # paths start at this file's directory
    caller_header = "X-Yoi-Caller"   # set by the authenticating proxy
    roles_header = "X-Yoi-Roles"     # comma-separated roles, same proxy
    max_body_bytes = 65536           # request bodies, in bytes
    heartbeat_interval = 15.0        # seconds without events before a heartbeat
    shutdown_timeout = 10.0          # seconds allowed for graceful shutdown
    allowed_hosts = ["ws.example"]   # Host names besides loopback and the bind
                                     # address ("*": any); docs/security.md
    allowed_origins = []             # origins besides the backend's own
    cors_origins = []                # origins given CORS headers (none)
    keep_alive_timeout = 5.0         # seconds an idle connection is kept
    max_connections = 1000           # open connections; more get a 503
    log_level = "info"               # or "debug", "warning", "error"
    log_format = "console"           # or "json" (one object a line)
    metrics = true                   # GET /metrics (Prometheus); false: none
    workspace_id = "0192f0e8-..."    # default: {workspace_root}/.yoi/workspace.toml,
                                     # else derived from the yoi home or this file
    workspace_root = "/srv/project"  # only Pods of this workspace are shown

    [embedded]                       # the Runtime inside the backend process
    runtime_id = "embedded"
    enabled = true
    store = "sqlite:companion.db"    # or "memory" (the default)
    default_engine = "local"
    enable_test_engines = false      # scripted engines, as in yoi-runtime

    [embedded.engines.local]         # yoi-runtime's [engines.NAME] format
    kind = "openai-chat"
    base_url = "http://127.0.0.1:8080/v1"
    model = "smollm2"

    [[remote]]                       # a yoi-runtime process
    runtime_id = "rt-office"         # must be the id the process serves
    url = "http://10.0.0.5:8321"
    token_env = "YOI_OFFICE_TOKEN"   # or token_file = "office.token"
    connect_timeout = 2.0            # seconds (and request_timeout = 30.0,
    reconnect_timeout = 10.0         # reconnect_timeout = 10.0)

    [[compat]]                       # the Pods of a yoi installation
    runtime_id = "local-pod-runtime"
    yoi_home = "/home/u/.yoi"        # or data_dir / runtime_dir; none of the
                                     # three: found as yoi does (YOI_HOME, ...)

    [visibility]                     # HideWorkers; absent: everyone sees all
    hidden_runtimes = ["rt-lab"]
    hidden_profiles = ["reviewer"]
    exempt_roles = ["admin"]

    [auth]                           # docs/security.md; default mode "none"
    mode = "token"                   # "none" (loopback binds only), "token",
                                     # "proxy" (proxy_secret_env/_file,
                                     # trusted_proxies = ["10.0.0.2"])
    [[auth.tokens]]
    caller = "ada"
    roles = ["admin"]
    token_file = "ada.token"         # or token_env = "YOI_ADA_TOKEN"

Errors name the key (``config.remote[0].url``) and never quote a URL or a
secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

from yoi_runtime import Engine, InvalidInputError
from yoi_runtime.serving import (
    ConfigError,
    EngineConfig,
    FileConfig,
    check_id,
    config_converter,
    make_engines,
    parse_store_spec,
    read_config_file,
    structure_config,
)

from ._audit import JSONLinesAuditSink
from ._auth import AuthConfig
from ._identity import WorkspaceIdentity, resolve_identity
from ._policy import ALLOW_ALL, EVERYONE_SEES_ALL, HideWorkers
from ._registry import RuntimeRegistry
from ._remote import RemoteRuntimeConfig
from ._secrets import SecretRef
from ._yoi_home import YoiHome, resolve_yoi_home

__all__ = [
    "CompatConfig",
    "ConfigError",
    "EmbeddedConfig",
    "RemoteConfig",
    "VisibilityConfig",
    "WorkspaceConfig",
    "load_config",
]


@attrs.frozen
class EmbeddedConfig:
    """The Runtime inside the backend process."""

    runtime_id: str = "embedded"
    enabled: bool = True
    default_engine: str | None = None
    enable_test_engines: bool = False
    engines: Mapping[str, EngineConfig] = attrs.field(factory=dict)
    store: str = "memory"


@attrs.frozen
class RemoteConfig:
    """A ``yoi-runtime`` process (see :class:`RemoteRuntimeConfig`)."""

    runtime_id: str
    url: str = attrs.field(repr=False)
    token_env: str | None = None
    token_file: str | None = None
    connect_timeout: float = 2.0
    request_timeout: float = 30.0
    reconnect_timeout: float = 10.0


@attrs.frozen
class CompatConfig:
    """The Pods of a yoi installation (a ``LocalPodSource``).

    ``yoi_home`` sets both directories as ``YOI_HOME`` does; ``data_dir``
    and ``runtime_dir`` set (or override) one each; unset ones are found
    from the environment as yoi does.
    """

    runtime_id: str = "local-pod-runtime"
    yoi_home: str | None = attrs.field(default=None, repr=False)
    data_dir: str | None = attrs.field(default=None, repr=False)
    runtime_dir: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class VisibilityConfig:
    """A :class:`HideWorkers` policy (visibility and commands)."""

    hidden_runtimes: tuple[str, ...] = ()
    hidden_profiles: tuple[str, ...] = ()
    exempt_roles: tuple[str, ...] = ()


@attrs.frozen
class WorkspaceConfig:
    """The config file's contents (see the module docstring).

    Attributes:
        base_dir: Where relative paths in the file start (its directory).
    """

    embedded: EmbeddedConfig = EmbeddedConfig()
    remote: tuple[RemoteConfig, ...] = ()
    compat: tuple[CompatConfig, ...] = ()
    visibility: VisibilityConfig | None = None
    audit_log: str | None = None
    caller_header: str = "X-Yoi-Caller"
    roles_header: str = "X-Yoi-Roles"
    max_body_bytes: int = 64 * 1024
    heartbeat_interval: float = 15.0
    shutdown_timeout: float = 10.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    metrics: bool = True
    auth: AuthConfig = AuthConfig()
    workspace_id: str | None = None
    workspace_root: str | None = attrs.field(default=None, repr=False)
    base_dir: Path = attrs.field(factory=Path.cwd, repr=False)

    @property
    def runtime_ids(self) -> tuple[str, ...]:
        """Every Runtime and compat source id, embedded first."""
        embedded = (self.embedded.runtime_id,) if self.embedded.enabled else ()
        return (
            *embedded,
            *(r.runtime_id for r in self.remote),
            *(c.runtime_id for c in self.compat),
        )

    def _path(self, value: str) -> Path:
        return self.base_dir / Path(value).expanduser()

    def make_engines(
        self, *, model_url: str | None = None, model: str | None = None
    ) -> dict[str, Engine]:
        """The embedded Runtime's engines (yoi-runtime's ``make_engines``).

        Args:
            model_url: Overrides the default ``local`` engine's base URL.
            model: Overrides the default ``local`` engine's model.

        Raises:
            ConfigError: An engine its class refuses, a scripted engine
                without ``enable_test_engines``, or a ``default_engine``
                that is not configured.
        """
        embedded = self.embedded
        file = FileConfig(
            default_engine=embedded.default_engine,
            enable_test_engines=embedded.enable_test_engines,
            engines=embedded.engines,
        )
        engines = make_engines(file, self.base_dir, model_url=model_url, model=model)
        default = embedded.default_engine
        if default is not None and default not in engines:
            raise ConfigError(
                f"config.embedded.default_engine: {default!r} is not configured"
            )
        return engines

    def remote_configs(self) -> tuple[RemoteRuntimeConfig, ...]:
        """The remote handles' configs (token files resolved from base_dir)."""
        return tuple(_remote(self, index) for index in range(len(self.remote)))

    def compat_homes(self) -> dict[str, YoiHome]:
        """Each compat source's yoi installation, by ``runtime_id``."""
        homes = {}
        for compat in self.compat:
            found = resolve_yoi_home()
            if compat.yoi_home is not None:
                found = YoiHome.at(self._path(compat.yoi_home))
            data, run = found.data_dir, found.runtime_dir
            if compat.data_dir is not None:
                data = self._path(compat.data_dir)
            if compat.runtime_dir is not None:
                run = self._path(compat.runtime_dir)
            homes[compat.runtime_id] = YoiHome(data, run)
        return homes

    def embedded_store(self) -> str:
        """The embedded Runtime's store: ``"memory"`` or ``"sqlite:PATH"``
        with a relative PATH resolved from the file's directory."""
        path = parse_store_spec(self.embedded.store)
        return "memory" if path is None else f"sqlite:{self._path(str(path))}"

    def identity(self) -> WorkspaceIdentity:
        """The workspace served (blocking: may read
        ``{workspace_root}/.yoi/workspace.toml``).

        The id is ``workspace_id``, else that file's, else derived from the
        first compat source's data directory, else from the config file's
        directory.
        """
        homes = [h.data_dir for h in self.compat_homes().values() if h.data_dir]
        source = str(homes[0]) if homes else str(self.base_dir)
        root = self.workspace_root
        return resolve_identity(
            workspace_id=self.workspace_id,
            root=None if root is None else str(self._path(root)),
            derive_from=source,
            store="memory" if self.embedded.store == "memory" else "sqlite",
        )

    def make_registry(self) -> RuntimeRegistry:
        """An empty registry with the configured policies and audit log."""
        policy = self.visibility
        hide = None
        if policy is not None:
            hide = HideWorkers(
                frozenset(policy.hidden_runtimes),
                frozenset(policy.hidden_profiles),
                frozenset(policy.exempt_roles),
            )
        audit = None if self.audit_log is None else self._path(self.audit_log)
        return RuntimeRegistry(
            visibility=EVERYONE_SEES_ALL if hide is None else hide,
            commands=ALLOW_ALL if hide is None else hide,
            audit=None if audit is None else JSONLinesAuditSink(audit),
        )


def _remote(config: WorkspaceConfig, index: int) -> RemoteRuntimeConfig:
    remote = config.remote[index]
    token = None
    try:
        if remote.token_env is not None or remote.token_file is not None:
            file = remote.token_file
            token = SecretRef(
                env=remote.token_env,
                file=None if file is None else str(config._path(file)),
            )
        return RemoteRuntimeConfig(
            runtime_id=remote.runtime_id,
            url=remote.url,
            token=token,
            connect_timeout=remote.connect_timeout,
            request_timeout=remote.request_timeout,
            reconnect_timeout=remote.reconnect_timeout,
        )
    except InvalidInputError as exc:
        key = "token_env or token_file" if exc.path == "token" else exc.path
        raise ConfigError(f"config.remote[{index}].{key}: {exc.message}") from None


_converter = config_converter()


def load_config(path: str | os.PathLike[str] | None) -> WorkspaceConfig:
    """Read and validate a config file (None: the defaults).

    Raises:
        ConfigError: Unreadable file, bad TOML, wrong keys or types, a
            malformed or duplicate ``runtime_id``, or a bad remote entry;
            the message names each bad key's path.
    """
    if path is None:
        return WorkspaceConfig()
    file = Path(path)
    data = read_config_file(file)
    if "base_dir" in data:  # a field, but the file's own directory
        raise ConfigError(f"invalid config file {file}: config.base_dir is not a key")
    config = structure_config(_converter, data, WorkspaceConfig, file)
    config = attrs.evolve(config, base_dir=file.resolve().parent)
    _check(config)
    return config


def _check(config: WorkspaceConfig) -> None:
    """Refuse malformed and duplicate ids, and bad remote entries."""
    keys = ["config.embedded.runtime_id"] if config.embedded.enabled else []
    keys += [f"config.remote[{i}].runtime_id" for i in range(len(config.remote))]
    keys += [f"config.compat[{i}].runtime_id" for i in range(len(config.compat))]
    seen: dict[str, str] = {}
    for key, runtime_id in zip(keys, config.runtime_ids, strict=True):
        try:
            check_id(runtime_id, key)
        except InvalidInputError as exc:
            raise ConfigError(exc.message) from None  # it names the key
        if runtime_id in seen:
            raise ConfigError(f"{key}: {runtime_id!r} is also {seen[runtime_id]}")
        seen[runtime_id] = key
    for name in (
        "max_body_bytes",
        "heartbeat_interval",
        "shutdown_timeout",
        "keep_alive_timeout",
        "max_connections",
    ):
        if not getattr(config, name) > 0:
            raise ConfigError(f"config.{name} must be positive")
    try:
        parse_store_spec(config.embedded.store)
    except InvalidInputError:
        raise ConfigError(
            "config.embedded.store: use 'memory' or 'sqlite:PATH'"
        ) from None
    if config.workspace_id is not None:
        try:
            check_id(config.workspace_id, "config.workspace_id")
        except InvalidInputError as exc:
            raise ConfigError(exc.message) from None
    config.remote_configs()
