"""The remote handle's failure cases: typed errors in bounded time, describe()
reporting ``unavailable`` with the cached summary, automatic recovery, and
never a URL or token in what it shows.

Faults: a refused connection (nothing listens), a timeout (a listener that
accepts and never answers), a refused token (a real process), HTTP 5xx (a
raw trio HTTP server), a process serving another Runtime, and a process that
goes away and comes back on the same port.
"""

from __future__ import annotations

import inspect
import json
import signal
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import pytest
import trio
from conformance.support import (
    api_operations,
    events_until,
    open_runtime_process,
    scripted_engines,
)
from workspace.handle_support import (
    REMOTE_ID,
    assert_hidden,
    free_port,
    runtime_config,
)

from yoi_runtime import (
    InternalError,
    InvalidInputError,
    RuntimeAPI,
    RuntimeUnavailableError,
    UnauthorizedError,
    WorkerNotFoundError,
    YoiRuntimeError,
    open_runtime,
)
from yoi_runtime._wire import converter
from yoi_workspace import RuntimeAdapter
from yoi_workspace._remote import (
    ReconnectingRuntime,
    RemoteRuntimeConfig,
    open_remote_handle,
)
from yoi_workspace._secrets import SecretRef


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def serve_silently(*, task_status: trio.TaskStatus[int]) -> None:
    """Accept connections on a free port and never answer."""

    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(hold, listeners)


async def serve_http(
    answers: dict[str, tuple[int, bytes]],
    fallback: tuple[int, bytes],
    *,
    task_status: trio.TaskStatus[int],
) -> None:
    """Answer each HTTP request by its path (``answers``, else ``fallback``)
    with a status and JSON body, closing the connection after each."""

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode().split("?")[0]
            status, body = answers.get(path, fallback)
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


async def summary_body(runtime_id: str = REMOTE_ID) -> bytes:
    """A real ``GET /v1/runtime`` body of a Runtime with this id."""
    async with open_runtime(scripted_engines(), runtime_id=runtime_id) as runtime:
        return json.dumps(converter.unstructure(await runtime.summary())).encode()


def test_config_is_validated_without_showing_the_url() -> None:
    url = "ftp://user:pw@example.invalid:21"
    with pytest.raises(InvalidInputError) as caught:
        RemoteRuntimeConfig(REMOTE_ID, url)
    assert caught.value.path == "url"
    assert_hidden([url, "example.invalid"], caught.value)
    with pytest.raises(InvalidInputError) as timeout:
        RemoteRuntimeConfig(REMOTE_ID, "http://127.0.0.1:1", connect_timeout=0)
    assert timeout.value.path == "connect_timeout"
    config = RemoteRuntimeConfig(
        REMOTE_ID, "http://secret-host.invalid:1", token=SecretRef(env="T")
    )
    assert_hidden(["secret-host"], config)


async def test_refused_connection_is_unavailable_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = RemoteRuntimeConfig(REMOTE_ID, url, connect_timeout=1.0)
    seen: list[object] = [config]
    with trio.fail_after(10):
        async with open_remote_handle(config) as handle:  # opening never fails
            seen.append(handle)
            for call in (
                handle.list_workers,
                partial(handle.get_worker, "w-1"),
                partial(handle.send_input, "w-1", "hi"),
                partial(handle.stop, "w-1"),
                partial(handle.cancel, "w-1"),
                partial(handle.transcript, "w-1"),
                handle.diagnostics,
                handle.create_worker,
            ):
                started = trio.current_time()
                with pytest.raises(RuntimeUnavailableError) as caught:
                    await call()
                assert trio.current_time() - started < 1.0
                assert caught.value.message.startswith(f"runtime {REMOTE_ID}: ")
                seen.append(caught.value)
            with pytest.raises(RuntimeUnavailableError) as stream:
                async with handle.subscribe():
                    pass
            seen.append(stream.value)
            view = await handle.describe()
            seen.append(view)
    assert (view.runtime_id, view.kind, view.status) == (
        REMOTE_ID,
        "remote",
        "unavailable",
    )
    assert view.error is not None
    assert "cannot reach" in view.error
    assert (view.version, view.capabilities, view.workers) == (None, None, {})
    assert_hidden([url, url.removeprefix("http://")], *seen)


async def test_silent_process_times_out_and_concurrent_calls_share_the_attempt() -> (
    None
):
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_silently)
            url = f"http://127.0.0.1:{port}"
            config = RemoteRuntimeConfig(REMOTE_ID, url, connect_timeout=0.5)
            errors: list[tuple[float, YoiRuntimeError]] = []
            async with open_remote_handle(config) as handle:
                started = trio.current_time()

                async def call(delay: float) -> None:
                    await trio.sleep(delay)
                    try:
                        await handle.list_workers()
                    except YoiRuntimeError as exc:
                        errors.append((trio.current_time() - started, exc))

                async with trio.open_nursery() as callers:
                    for delay in (0.0, 0.1, 0.2):
                        callers.start_soon(call, delay)
                view = await handle.describe()
            nursery.cancel_scope.cancel()
    # One attempt of connect_timeout (0.5 s), shared by the calls arriving
    # while it runs: attempts one after another would end at 1.0 and 1.5 s.
    assert len(errors) == 3
    for elapsed, exc in errors:
        assert isinstance(exc, RuntimeUnavailableError)
        assert "did not answer within 0.5 s" in exc.message
        assert 0.45 <= elapsed < 0.9
    assert view.status == "unavailable"
    assert view.error == errors[0][1].message
    assert_hidden([url, f"127.0.0.1:{port}"], view, *(exc for _, exc in errors))


@pytest.mark.parametrize(
    ("status", "probe_fails", "expected"),
    [
        (500, False, InternalError),
        (503, False, RuntimeUnavailableError),
        (502, True, RuntimeUnavailableError),
        (500, True, InternalError),
    ],
)
async def test_http_5xx_becomes_a_typed_error(
    status: int, probe_fails: bool, expected: type[YoiRuntimeError]
) -> None:
    body = b"<html>the proxy broke</html>"
    with trio.fail_after(10):
        summary = await summary_body()
        answers = {} if probe_fails else {"/v1/runtime": (200, summary)}
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, answers, (status, body))
            url = f"http://127.0.0.1:{port}"
            config = RemoteRuntimeConfig(REMOTE_ID, url, connect_timeout=1.0)
            async with open_remote_handle(config) as handle:
                with pytest.raises(expected) as caught:
                    await handle.get_worker("w-1")
                assert type(caught.value) is expected
                assert f"HTTP {status}" in caught.value.message
                view = await handle.describe()
            nursery.cancel_scope.cancel()
    assert view.status == ("unavailable" if probe_fails else "serving")
    assert_hidden([url, f"127.0.0.1:{port}"], caught.value, view)


async def test_wrong_token_wrong_runtime_and_unreadable_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-token-0123456789"
    monkeypatch.setenv("YOI_TEST_WRONG_TOKEN", wrong)
    monkeypatch.delenv("YOI_TEST_UNSET_TOKEN", raising=False)
    token_file = str(tmp_path / "runtime-token")
    seen: list[object] = []
    with trio.fail_after(20):
        config_file = runtime_config(tmp_path)
        async with open_runtime_process(tmp_path, config=config_file) as server:
            refused = "runtime rt-remote refused the configured token"
            for token in (SecretRef(env="YOI_TEST_WRONG_TOKEN"), None):
                config = RemoteRuntimeConfig(REMOTE_ID, server.url, token=token)
                async with open_remote_handle(config) as handle:
                    with pytest.raises(UnauthorizedError) as caught:
                        await handle.list_workers()
                    assert caught.value.message == refused
                    with pytest.raises(UnauthorizedError):
                        async with handle.subscribe():
                            pass
                    view = await handle.describe()
                    assert (view.status, view.error) == ("unavailable", refused)
                    seen += [caught.value, view, handle]

            elsewhere = RemoteRuntimeConfig(
                "rt-elsewhere", server.url, token=SecretRef(file=token_file)
            )
            async with open_remote_handle(elsewhere) as handle:
                with pytest.raises(RuntimeUnavailableError) as other:
                    await handle.get_worker("w-1")
                assert "serves runtime 'rt-remote' instead" in other.value.message
                view = await handle.describe()
                assert (view.status, view.error) == ("unavailable", other.value.message)
                seen += [other.value, view]

            unset = RemoteRuntimeConfig(
                REMOTE_ID, server.url, token=SecretRef(env="YOI_TEST_UNSET_TOKEN")
            )
            async with open_remote_handle(unset) as handle:
                with pytest.raises(RuntimeUnavailableError) as unreadable:
                    await handle.list_workers()
                assert "YOI_TEST_UNSET_TOKEN is not set" in unreadable.value.message
                assert (await handle.describe()).status == "unavailable"
                seen.append(unreadable.value)

            right = RemoteRuntimeConfig(
                REMOTE_ID, server.url, token=SecretRef(file=token_file)
            )
            async with open_remote_handle(right) as handle:
                with pytest.raises(WorkerNotFoundError) as missing:
                    await handle.get_worker("w-1")
                view = await handle.describe()
                assert (view.status, view.error) == ("serving", None)
                seen += [missing.value, view, handle]
    assert_hidden([server.url, server.token, wrong], *seen)


async def test_recovers_when_the_process_comes_back(tmp_path: Path) -> None:
    config_file = runtime_config(tmp_path)
    token = SecretRef(file=str(tmp_path / "runtime-token"))
    seen: list[object] = []
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            async with open_runtime_process(tmp_path, config=config_file) as first:
                url = first.url
                config = RemoteRuntimeConfig(
                    REMOTE_ID,
                    url,
                    token=token,
                    connect_timeout=1.0,
                    reconnect_timeout=1.0,
                )
                handle = await stack.enter_async_context(open_remote_handle(config))
                worker = await handle.create_worker(display_name="Ada")
                serving = await handle.describe()
                assert serving.status == "serving"
                async with handle.subscribe() as everything:
                    first.process.send_signal(signal.SIGTERM)
                    await first.process.wait()
                    # The Runtime stream reconnects for reconnect_timeout, then
                    # gives up with a typed error (naming neither URL nor port).
                    with pytest.raises(RuntimeUnavailableError) as lost:
                        await events_until(everything, "never.happens")
                    seen.append(lost.value)
            assert first.process.returncode == 0

            down = await handle.describe()
            assert down.status == "unavailable"
            assert down.error is not None
            # The cached summary: what the Runtime was when last seen.
            assert down.capabilities == serving.capabilities
            assert (down.version, down.protocol_version) == (
                serving.version,
                serving.protocol_version,
            )
            assert down.workers == serving.workers
            started = trio.current_time()
            with pytest.raises(RuntimeUnavailableError) as unavailable:
                await handle.get_worker(worker.worker_id)
            assert trio.current_time() - started < 1.0
            seen += [down, unavailable.value]

            # Same port, a fresh process (and a fresh token in the same file).
            again = open_runtime_process(
                tmp_path,
                config=config_file,
                args=("--bind", f"127.0.0.1:{port_of(url)}"),
            )
            async with again as second:
                assert second.url == url
                back = await handle.describe()
                assert (back.status, back.error) == ("serving", None)
                # The process keeps Workers in memory: the old one is gone.
                with pytest.raises(WorkerNotFoundError):
                    await handle.get_worker(worker.worker_id)
                created = await handle.create_worker(display_name="Bo")
                assert (await handle.list_workers()).items == (created,)
                seen += [back, handle]
    assert second.process.returncode == 0
    assert_hidden([url, url.removeprefix("http://"), first.token, second.token], *seen)


async def test_a_refused_token_is_read_again_and_retried_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process restarted with a new token in the token file is used by the
    very next call and the very next stream opening: the refused one reads
    the token again and is retried once. A token still wrong then raises
    ``UnauthorizedError``."""
    reads: list[str] = []
    resolve = SecretRef.resolve

    def counted(ref: SecretRef) -> str:
        reads.append(ref.kind)
        return resolve(ref)

    monkeypatch.setattr(SecretRef, "resolve", counted)
    config_file = runtime_config(tmp_path)
    token_file = tmp_path / "runtime-token"
    wrong = "wrong-token-0123456789"
    tokens: list[str] = []
    seen: list[object] = []
    with trio.fail_after(90):
        async with AsyncExitStack() as stack:
            async with open_runtime_process(tmp_path, config=config_file) as first:
                url = first.url
                tokens.append(first.token)
                config = RemoteRuntimeConfig(
                    REMOTE_ID, url, token=SecretRef(file=str(token_file))
                )
                handle = await stack.enter_async_context(open_remote_handle(config))
                assert (await handle.list_workers()).items == ()
                assert len(reads) == 1
            # Each restart (same port) writes a new token to the same file;
            # the handle still holds a client sending the old one.
            restarted = partial(
                open_runtime_process,
                tmp_path,
                config=config_file,
                args=("--bind", f"127.0.0.1:{port_of(url)}"),
            )

            async with restarted() as second:
                tokens.append(second.token)
                created = await handle.create_worker(display_name="Ada")
                assert created.display_name == "Ada"
                assert len(reads) == 2  # refused once, read again, retried

            async with restarted() as third:
                tokens.append(third.token)
                # after=0: the WebSocket handshake is the first request.
                async with handle.subscribe(after=0) as stream:
                    assert len(reads) == 3
                    made = await handle.create_worker(display_name="Bo")
                    events = await events_until(stream, "worker.created")
                assert events[-1].worker_id == made.worker_id

            async with restarted() as fourth:
                tokens.append(fourth.token)
                token_file.write_text(wrong + "\n")
                refused = "runtime rt-remote refused the configured token"
                with pytest.raises(UnauthorizedError) as call:
                    await handle.list_workers()
                assert type(call.value) is UnauthorizedError
                assert call.value.message == refused
                # Read again once (for the retry), refused again: raised.
                assert len(reads) == 4
                with pytest.raises(UnauthorizedError) as opening:
                    async with handle.subscribe(after=0):
                        pass
                assert opening.value.message == refused
                assert len(reads) == 6  # a fresh connect, then its retry
                view = await handle.describe()
                assert (view.status, view.error) == ("unavailable", refused)
                # Put right, the file is read at the next call.
                token_file.write_text(fourth.token + "\n")
                assert (await handle.list_workers()).items == ()
                assert len(reads) == 9
                seen += [call.value, opening.value, view, handle]
    assert set(reads) == {"file"}
    assert_hidden([url, url.removeprefix("http://"), wrong, *tokens], *seen)


def test_the_wrappers_have_the_api_signatures() -> None:
    """The reconnecting client passes every operation on with the Runtime
    API's own signature; the handle adapter with its parameters."""
    for name in api_operations():
        api = inspect.signature(getattr(RuntimeAPI, name))
        assert inspect.signature(getattr(ReconnectingRuntime, name)) == api, name
        if hasattr(RuntimeAdapter, name):
            handle = inspect.signature(getattr(RuntimeAdapter, name))
            assert list(handle.parameters) == list(api.parameters), name
