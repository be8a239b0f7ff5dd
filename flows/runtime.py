"""One Prefect API for the flow's process and every Dask worker process it starts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Make the Prefect API URL visible to child processes; start a temporary server if none is set.

    Prefect's ephemeral mode keeps the temporary server's URL in in-process settings, so worker
    processes spawned by a LocalCluster would each start a server of their own (seconds per worker,
    and their task runs land on the wrong server). This starts one server, exports
    ``PREFECT_API_URL`` for the workers to inherit, and stops the server on exit. A configured URL
    (``prefect config set PREFECT_API_URL=...``, the environment, or a test harness) is reused.

    Yields:
        The API URL in use.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    previous = os.environ.get("PREFECT_API_URL")
    if configured:
        os.environ["PREFECT_API_URL"] = configured
        try:
            yield configured
        finally:
            _restore(previous)
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_prefect_workers()
        _restore(previous)
        server.stop()


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
