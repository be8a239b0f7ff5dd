"""One Prefect API for the flow's process and every Dask worker process it starts."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: Environment variables that choose Prefect's flow-run heartbeat interval (the second is legacy).
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


class TemporaryServer:
    """A Prefect API server in a child process on a free loopback port, started without waiting for it.

    The command line is Prefect 3.8's own for its temporary server
    (``prefect.server.api.server.SubprocessASGIServer._run_uvicorn_command``: uvicorn on
    ``prefect.server.api.server:create_app``, UI off, the ephemeral flags). Prefect's class is not
    used because importing its module costs the calling process the whole server application
    (3 s of imports, measured), work the child does anyway; and because its ``start()`` blocks
    until the server answers (4.5 s), while this one lets the caller import and plan meanwhile.

    Attributes:
        port: the TCP port on 127.0.0.1.
        process: the uvicorn child process.
    """

    def __init__(self) -> None:
        """Start the child process; returns at once (see :meth:`wait`)."""
        self.port = _free_port()
        self.process = self._spawn()

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT/api``."""
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen:
        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent  # without importing prefect
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        return subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
                                 "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                                 "--port", str(self.port), "--log-level", "error", "--lifespan", "on"], env=env)

    def wait(self, timeout: float = 60.0) -> str:
        """Block until the server answers ``/health``; returns :attr:`api_url`.

        Raises:
            RuntimeError: the server exited, or did not answer within ``timeout`` seconds.
        """
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code == 3:  # uvicorn: the port was taken between choosing and binding it
                    self.port = _free_port()
                    self.process = self._spawn()
                elif code is not None:
                    raise RuntimeError(f"the temporary Prefect server exited with code {code} before answering")
                try:
                    if client.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                        return self.api_url
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the temporary Prefect server on port {self.port} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Terminate the server (killed after 5 s, as Prefect does)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The server prefect_api(ready=False) started and nobody has waited for yet.
_PENDING: list[TemporaryServer] = []
# The server an enclosing early_server() spawned and no prefect_api block has taken yet.
_EARLY: list[TemporaryServer] = []


@contextlib.contextmanager
def early_server() -> Iterator[None]:
    """Spawn the temporary server at once, for a :func:`prefect_api` block that may follow inside.

    For a command that decides only after some work whether it runs a flow at all (``ser extract``
    first checks whether the store is already complete): the server's start (mostly its own
    imports, on the critical path of a command that runs a flow) then overlaps that work too. The
    first ``prefect_api`` block inside takes the server; one nobody took is stopped on exit, before
    it has answered (a no-op command pays its spawn and a signal, not its start). Nothing is
    spawned when ``PREFECT_API_URL`` is in the environment; a profile that configures a server is
    read only by ``prefect_api``, which then stops this one unused, as with ``ready=False``.
    """
    server = None if os.environ.get("PREFECT_API_URL") else TemporaryServer()
    if server is not None:
        _EARLY.append(server)
    try:
        yield
    finally:
        if server is not None:
            if server in _EARLY:
                _EARLY.remove(server)
            server.stop()


def await_api() -> None:
    """Wait for the temporary server of an enclosing ``prefect_api(ready=False)``; no-op otherwise.

    Call it before the first flow run in that block.

    Raises:
        RuntimeError: the server did not start (see :meth:`TemporaryServer.wait`).
    """
    while _PENDING:
        _PENDING[-1].wait()
        _PENDING.pop()


@contextlib.contextmanager
def prefect_api(ready: bool = True) -> Iterator[str]:
    """Make the Prefect API URL visible to child processes; start a temporary server if none is set.

    Prefect's ephemeral mode keeps the temporary server's URL in in-process settings, so worker
    processes spawned by a LocalCluster would each start a server of their own (seconds per worker,
    and their task runs land on the wrong server). This starts one server, exports
    ``PREFECT_API_URL`` for the workers to inherit, and stops the server on exit. A configured URL
    (``prefect config set PREFECT_API_URL=...``, the environment, or a test harness) is reused.

    With ``ready=False`` the block starts while the server is still starting (4.5 s, most of it
    the server's imports), so the command's own imports and planning overlap it on another core;
    :func:`await_api` must then run before the first flow run. Inside :func:`early_server`, the
    block takes the server that spawned, in either mode.

    Flow-run heartbeats are off inside, unless ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is set. Prefect
    3.8 sends them by default (every 180 s) from a thread that sleeps in 1 s steps, and every flow
    run joins that thread on exit: 0 to 1 s added to each run, half of a 2 s run with nothing new
    to extract (measured on RAVDESS). They serve the server's zombie-flow automations for
    deployments: the runs that ``ser deploy`` serves do not pass through here and keep Prefect's
    default. For the ``ser`` commands' own runs, set the variable (>= 30 s) to send them.

    Args:
        ready: wait for a temporary server before the block starts.

    Yields:
        The API URL in use.

    Raises:
        RuntimeError: the temporary server did not start.
    """
    previous = os.environ.get("PREFECT_API_URL")
    with contextlib.ExitStack() as stack:
        # With ready=False (or early_server) the server is spawned before Prefect's settings are
        # imported (slow), on the bet that none is configured; a profile that configures one stops it at once.
        server = None
        if not previous:
            server = _EARLY.pop() if _EARLY else (TemporaryServer() if not ready else None)
        if server is not None:
            stack.callback(server.stop)
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        configured = PREFECT_API_URL.value()
        if not any(os.environ.get(name) for name in HEARTBEAT_VARIABLES):
            stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        if configured:
            if server is not None:
                server.stop()
            os.environ["PREFECT_API_URL"] = configured
            stack.callback(_restore, previous)
            yield configured
            return
        if server is None:
            server = TemporaryServer()
            stack.callback(server.stop)
        os.environ["PREFECT_API_URL"] = server.api_url
        # callbacks run last-in first-out: forget, drain, restore, then stop
        stack.callback(_restore, previous)
        stack.callback(_drain_prefect_workers)
        stack.callback(_PENDING.clear)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        if ready:
            server.wait()
        else:
            _PENDING.append(server)
        yield server.api_url


def _drain_prefect_workers(timeout: float = 15.0) -> None:
    """Send the logs and events still queued for the API before the server goes away.

    Otherwise Prefect's log worker retries against the stopped server at interpreter exit for
    about a minute ("Error logging to API: All connection attempts failed"), measured as 69 s
    between the flow's end and the process's exit.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout)


def _restore(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = previous
