"""Opening what a config file lists: the Runtimes, handles and registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

from yoi_runtime import Engine, Runtime, open_runtime

from ._compat import LocalPodSource
from ._config import WorkspaceConfig
from ._handle import EmbeddedRuntimeHandle
from ._registry import RuntimeRegistry
from ._remote import open_remote_handle

__all__ = ["Workspace", "open_workspace"]


@attrs.frozen
class Workspace:
    """What :func:`open_workspace` opened.

    Attributes:
        registry: Every configured Runtime and compat source, registered.
        runtime: The embedded Runtime, or None when it is disabled.
    """

    registry: RuntimeRegistry
    runtime: Runtime | None


@asynccontextmanager
async def open_workspace(
    config: WorkspaceConfig, *, engines: Mapping[str, Engine] | None = None
) -> AsyncIterator[Workspace]:
    """Open the embedded Runtime and every handle the config lists.

    Opening connects to nothing: a remote Runtime that is down is registered
    all the same (and listed as ``unavailable``). The embedded Runtime uses
    ``[embedded] store`` (``sqlite:PATH`` makes it durable); compat sources
    show only the Pods of ``workspace_root`` when it is set.

    Args:
        config: From :func:`~yoi_workspace._config.load_config`.
        engines: The embedded Runtime's engines; None builds them from the
            config (:meth:`WorkspaceConfig.make_engines`).

    Yields:
        The :class:`Workspace`. On exit the handles are closed and the
        embedded Runtime drains (its Workers are stopped).

    Raises:
        ConfigError: ``engines`` is None and the config's are misconfigured.
    """
    registry = config.make_registry()
    async with AsyncExitStack() as stack:
        runtime = None
        if config.embedded.enabled:
            runtime = await stack.enter_async_context(
                open_runtime(
                    config.make_engines() if engines is None else engines,
                    default_engine=config.embedded.default_engine,
                    runtime_id=config.embedded.runtime_id,
                    store=config.embedded_store(),
                )
            )
            registry.add(EmbeddedRuntimeHandle(runtime))
        for remote in config.remote_configs():
            registry.add(await stack.enter_async_context(open_remote_handle(remote)))
        root = (await trio.to_thread.run_sync(config.identity)).root
        for runtime_id, home in config.compat_homes().items():
            source = LocalPodSource(runtime_id, home, workspace_root=root)
            stack.push_async_callback(source.aclose)
            registry.add(source)
        yield Workspace(registry, runtime)
