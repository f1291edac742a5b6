"""The config's durable embedded Runtime and the workspace's identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio
from workspace.handle_support import WORKSPACE_ROOT, write_pod
from workspace.workspace_support import write_config

from yoi_runtime._config import ConfigError
from yoi_workspace import ANONYMOUS
from yoi_workspace._config import load_config
from yoi_workspace._workspace import open_workspace
from yoi_workspace._yoi_home import derive_workspace_id

FIXTURE = Path(__file__).parents[3] / "shared" / "fixtures" / "yoi-local-pods"

ECHO = """
[embedded]
runtime_id = "emb"
enable_test_engines = true
default_engine = "echo"
store = "sqlite:state/companion.db"
[embedded.engines.echo]
kind = "scripted"
"""


async def test_the_embedded_runtime_remembers_across_restarts(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    config = load_config(write_config(tmp_path, ECHO))
    assert config.embedded_store() == f"sqlite:{tmp_path / 'state' / 'companion.db'}"
    with trio.fail_after(30):
        async with open_workspace(config) as workspace:
            made = await workspace.registry.create_worker(
                ANONYMOUS, "emb", display_name="Keep me", worker_id="w-keep"
            )
        async with open_workspace(config) as workspace:
            again = await workspace.registry.get_worker(ANONYMOUS, "emb", "w-keep")
    assert (again.worker_id, again.display_name) == (made.worker_id, "Keep me")
    assert (tmp_path / "state" / "companion.db").exists()
    assert config.identity().store == "sqlite"


@pytest.mark.parametrize("store", ["postgres://x", "sqlite:", "disk"])
def test_an_unknown_store_is_a_config_error(tmp_path: Path, store: str) -> None:
    path = write_config(tmp_path, f'[embedded]\nstore = "{store}"\n')
    with pytest.raises(ConfigError, match=r"config\.embedded\.store"):
        load_config(path)


def test_the_workspace_id_is_configured_found_or_derived(tmp_path: Path) -> None:
    named = load_config(write_config(tmp_path, 'workspace_id = "ws-a"\n'))
    assert named.identity().workspace_id == "ws-a"
    # The original's own file in the workspace root.
    root = tmp_path / "project"
    (root / ".yoi").mkdir(parents=True)
    (root / ".yoi" / "workspace.toml").write_text(
        'workspace_id = "0192f0e8-4d84-7d6e-a000-000000000009"\n'
    )
    found = load_config(write_config(tmp_path, f'workspace_root = "{root}"\n'))
    identity = found.identity()
    assert identity.workspace_id == "0192f0e8-4d84-7d6e-a000-000000000009"
    assert (identity.display_name, identity.root) == ("project", str(root))
    # Derived from the yoi home of the first compat source, stably.
    home = tmp_path / "yoi-home"
    text = f'[[compat]]\nyoi_home = "{home}"\n'
    derived = load_config(write_config(tmp_path, text)).identity()
    assert derived.workspace_id == derive_workspace_id(str(home))
    assert (
        derived.workspace_id
        == load_config(tmp_path / "workspace.toml").identity().workspace_id
    )
    assert str(home) not in derived.workspace_id
    with pytest.raises(ConfigError, match=r"config\.workspace_id"):
        load_config(write_config(tmp_path, 'workspace_id = "../x"\n'))


async def test_the_workspace_root_scopes_the_pods(tmp_path: Path) -> None:
    home = tmp_path / "yoi-home"
    shutil.copytree(FIXTURE / "yoi-home", home)
    write_pod(home, "elsewhere", workspace_root="/workspace/other/")
    text = (
        f'workspace_root = "{WORKSPACE_ROOT}/"\n[embedded]\nenabled = false\n'
        f'[[compat]]\nyoi_home = "{home}"\n'
    )
    config = load_config(write_config(tmp_path, text))
    with trio.fail_after(30):
        async with open_workspace(config) as workspace:
            listing = await workspace.registry.list_all_workers(ANONYMOUS)
    names = [w.display_name for w in listing.workers]
    assert names == ["alpha", "beta", "delta", "gamma", "zeta"]
    assert [w.runtime_id for w in listing.workers] == ["local-pod-runtime"] * 5
