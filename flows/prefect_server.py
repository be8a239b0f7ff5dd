"""One Prefect API for the flow's process and every Dask worker process it starts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Environment variables that choose Prefect's flow-run heartbeat interval (the second is legacy).
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Make the Prefect API URL visible to child processes; start a temporary server if none is set.

    Prefect's ephemeral mode keeps the temporary server's URL in in-process settings, so worker
    processes spawned by a LocalCluster would each start a server of their own (seconds per worker,
    and their task runs land on the wrong server). This starts one server, exports
    ``PREFECT_API_URL`` for the workers to inherit, and stops the server on exit. A configured URL
    (``prefect config set PREFECT_API_URL=...``, the environment, or a test harness) is reused.

    Flow-run heartbeats are off inside, unless ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is set. Prefect
    3.8 sends them by default (every 180 s) from a thread that sleeps in 1 s steps, and every flow
    run joins that thread on exit: 0 to 1 s added to each run, half of a 2 s run with nothing new
    to extract (measured on RAVDESS). They serve the server's zombie-flow automations for
    deployments: the runs that ``ser deploy`` serves do not pass through here and keep Prefect's
    default. For the ``ser`` commands' own runs, set the variable (>= 30 s) to send them.

    Yields:
        The API URL in use.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    configured = PREFECT_API_URL.value()
    previous = os.environ.get("PREFECT_API_URL")
    with contextlib.ExitStack() as stack:
        if not any(os.environ.get(name) for name in HEARTBEAT_VARIABLES):
            stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        if configured:
            os.environ["PREFECT_API_URL"] = configured
            stack.callback(_restore, previous)
            yield configured
            return
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        server.start()
        os.environ["PREFECT_API_URL"] = server.api_url
        stack.callback(server.stop)  # callbacks run last-in first-out: drain, restore, then stop
        stack.callback(_restore, previous)
        stack.callback(_drain_prefect_workers)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
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
