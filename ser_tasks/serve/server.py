"""Serving the registered model to untrusted clients: MLflow's scoring server behind a guard.

``ser serve`` runs MLflow's own scoring app (:mod:`mlflow.pyfunc.scoring_server`: ``/invocations``,
``/ping``, ``/health``, ``/version``, the same request and response formats as ``mlflow models
serve``) under uvicorn, wrapped by :class:`Guard`, which checks every ``/invocations`` request before
the model sees it:

- the body is at most ``max_request_bytes`` (413 as soon as ``Content-Length`` says more, or once the
  body read so far is over it; the rest is never read);
- the body is JSON (``application/json``; ``NaN`` and ``Infinity`` literals refused) holding one
  ``dataframe_split`` or ``dataframe_records`` table of the columns the model takes
  (:data:`ser_tasks.serve.predict.INPUT_COLUMNS`), each cell text or null, 1 to ``max_rows`` rows, and
  known ``params`` of the right type;
- any error the client sees is ``{"error_code": ..., "message": <one sentence>}``: never a stack
  trace, never the request echoed back, never an internal message (those go to the server's log).

The model itself enforces the rest (:class:`ser_tasks.serve.predict.EmotionModel`): no path opened outside
``allowed_paths``, and per row the encoded bytes, decoded seconds and channels, each an error row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from pathlib import Path

from pydantic import BaseModel, Field

from ser_tasks.serve.predict import DEFAULT_LIMITS, INPUT_COLUMNS

_log = logging.getLogger(__name__)

#: Environment variable through which ``ser serve`` hands its :class:`ServeSettings` (JSON) to the
#: uvicorn workers it starts (each builds its app with :func:`create_app`).
SETTINGS_ENV = "SER_SERVE_SETTINGS"
#: Prediction parameters a request may send, with the JSON types each takes.
PARAMS = {"windows": (bool,), "per_window": (bool,), "window_seconds": (int, float), "hop_seconds": (int, float)}


class ServeSettings(BaseModel):
    """What ``ser serve`` serves and the limits it holds every request to.

    Attributes:
        model_dir: local folder of the logged model (``ser serve`` downloads a ``models:/`` URI once).
        allowed_paths: roots (absolute folders or URL prefixes) under which a request's ``path`` may
            be opened; empty (the default): none, every row must carry its audio.
        max_rows: rows per request (more: 413).
        max_seconds: decoded seconds per row (more: an error row; decoding stops at the limit).
        max_bytes: encoded bytes per row (more: an error row).
        max_channels: channels per row (more: an error row).
        max_request_bytes: bytes of one request body (more: 413, the rest unread).
        timeout_seconds: longest time one request may take (more: 504).
        threads: TensorFlow threads of each worker process (``ser serve`` gives each worker its share
            of the cores: the encoder runs one clip at a time per process, so processes, not threads,
            serve concurrent clients).
    """

    model_dir: str
    allowed_paths: list[str] = Field(default_factory=list)
    max_rows: int = Field(DEFAULT_LIMITS["max_rows"], gt=0)
    max_seconds: float = Field(DEFAULT_LIMITS["max_seconds"], gt=0)
    max_bytes: int = Field(DEFAULT_LIMITS["max_bytes"], gt=0)
    max_channels: int = Field(DEFAULT_LIMITS["max_channels"], gt=0)
    max_request_bytes: int = Field(64 * 2**20, gt=0)
    timeout_seconds: int = Field(60, gt=0)
    threads: int | None = Field(None, gt=0)

    def model_config_for_load(self) -> dict:
        """The ``model_config`` the model is loaded with: its allowed roots and limits."""
        return {"allowed_paths": list(self.allowed_paths), "max_rows": self.max_rows,
                "max_seconds": self.max_seconds, "max_bytes": self.max_bytes, "max_channels": self.max_channels}


class Refused(Exception):
    """A request the guard answers itself: an HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str, code: str = "BAD_REQUEST"):
        """``status``: the HTTP status; ``message``: one sentence; ``code``: MLflow-style error code."""
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _type_name(value) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), "a value")


def check_request(body: bytes, max_rows: int) -> bytes:
    """Check an ``/invocations`` body against what the model takes, before the model sees it.

    Args:
        body: the request body (UTF-8 JSON).
        max_rows: most rows a request may hold.

    Returns:
        The body to pass on: ``body`` itself, or re-encoded with a null ``audio`` cell as ``""``
        (MLflow's binary column cannot hold null; the model reads both as "no audio").

    Raises:
        Refused: 400 (not JSON, not one table, unknown column, a cell that is not text or null, no
            rows, a bad parameter) or 413 (more than ``max_rows`` rows); the message is one sentence.
    """
    try:
        doc = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Refused(400, "the request body is not valid UTF-8 JSON") from None
    tables = ("dataframe_split", "dataframe_records")
    if not isinstance(doc, dict) or sorted(set(doc) - {"params"}) not in ([t] for t in tables):
        raise Refused(400, "the request body must be a JSON object with one of dataframe_split or "
                           "dataframe_records, and optional params")
    if "dataframe_split" in doc:
        table = doc["dataframe_split"]
        if (not isinstance(table, dict) or not isinstance(table.get("columns"), list)
                or not isinstance(table.get("data"), list) or set(table) - {"columns", "data", "index"}):
            raise Refused(400, "dataframe_split must be an object with a columns list and a data list")
        columns, data = table["columns"], table["data"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise Refused(400, "dataframe_split columns must be distinct strings")
        if not all(isinstance(row, list) and len(row) == len(columns) for row in data):
            raise Refused(400, "every row of dataframe_split data must be a list as long as its columns")
        rows = [dict(zip(columns, row)) for row in data] if len(data) <= max_rows else []
    else:
        data = doc["dataframe_records"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise Refused(400, "dataframe_records must be a list of objects")
        rows = data if len(data) <= max_rows else []
        columns = sorted({c for r in rows for c in r})
    if not data:
        raise Refused(400, "the request has no rows")
    if len(data) > max_rows:
        raise Refused(413, f"{len(data)} rows, over the limit of {max_rows} per request", "RESOURCE_LIMIT_EXCEEDED")
    unknown = [c for c in columns if c not in INPUT_COLUMNS]
    if unknown:
        raise Refused(400, f"unknown column {unknown[0][:64]!r}; the model takes {', '.join(INPUT_COLUMNS)}")
    if not {"path", "audio"} & set(columns):
        raise Refused(400, "the request needs a path or an audio column")
    null_audio = False
    for i, row in enumerate(rows):
        for column, value in row.items():
            if value is not None and not isinstance(value, str):
                raise Refused(400, f"row {i}: the {column} column holds {_type_name(value)}, not text or null")
            null_audio |= column == "audio" and value is None
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise Refused(400, "params must be a JSON object")
    for key, value in params.items():
        if key not in PARAMS:
            raise Refused(400, f"unknown parameter {key[:64]!r}; the model takes {', '.join(PARAMS)}")
        if not isinstance(value, PARAMS[key]) or (bool in PARAMS[key]) != isinstance(value, bool):
            raise Refused(400, f"parameter {key} must be {'a boolean' if bool in PARAMS[key] else 'a number'}")
        if key.endswith("_seconds") and not (value == 0 or (math.isfinite(value) and 0 < value <= 3600)):
            raise Refused(400, f"parameter {key} must be 0 (the default) or in (0, 3600] seconds")
    if not null_audio:
        return body
    if "dataframe_split" in doc:
        at = columns.index("audio")
        for row in data:
            row[at] = "" if row[at] is None else row[at]
    else:
        for row in data:
            if "audio" in row and row["audio"] is None:
                row["audio"] = ""
    return json.dumps(doc).encode()


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


class Guard:
    """ASGI middleware in front of MLflow's scoring app (see the module docstring).

    Args:
        app: the scoring app (``mlflow.pyfunc.scoring_server.init(model)``).
        settings: the limits.
    """

    def __init__(self, app, settings: ServeSettings):
        """Wrap ``app``; hold its requests to ``settings``."""
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        """Check an ``/invocations`` request, pass it on, and make any error answer one sentence."""
        if scope["type"] != "http" or scope["path"].rstrip("/") != "/invocations":
            return await self.app(scope, receive, send)
        try:
            if scope["method"] != "POST":
                raise Refused(405, "/invocations takes POST", "METHOD_NOT_ALLOWED")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                raise Refused(415, "the server takes application/json", "UNSUPPORTED_MEDIA_TYPE")
            body = await self._body(receive, headers)
            body = await asyncio.to_thread(check_request, body, self.settings.max_rows)
        except Refused as exc:
            return await self._answer(send, exc.status, _error_body(exc.code, exc.message))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, if the client goes

        start, original = {}, []

        async def sanitised(message):
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] < 400:
                    await send(message)
                return
            if start.get("status", 200) < 400:
                return await send(message)
            original.append(message.get("body", b""))
            if message.get("more_body"):
                return  # an error body is replaced whole once it ends
            status = start["status"]
            # the operator's log gets what the scoring app said (without the stack trace); the client one sentence
            try:
                said = json.loads(b"".join(original)).get("message", "")
            except (ValueError, AttributeError):
                said = b"".join(original).decode("utf-8", "replace")
            _log.warning("scoring app answered %d: %s", status, str(said)[:1000])
            if status == 504:
                reply = ("REQUEST_TIMEOUT", f"the request took longer than {self.settings.timeout_seconds} s")
            elif status < 500:
                reply = ("BAD_REQUEST", "the request could not be scored")
            else:
                reply = ("INTERNAL_ERROR", "the server could not score the request")
            await self._answer(send, status, _error_body(*reply))

        return await self.app(scope, replay, sanitised)

    async def _body(self, receive, headers: dict) -> bytes:
        """The request body, refused (413) as soon as it is known to exceed ``max_request_bytes``."""
        limit = self.settings.max_request_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise Refused(413, f"the request body is over the limit of {limit} bytes", "RESOURCE_LIMIT_EXCEEDED")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"the request body is over the limit of {limit} bytes", "RESOURCE_LIMIT_EXCEEDED")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _answer(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


#: ``mallopt`` parameter number of glibc's ``M_ARENA_MAX`` (malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas of this process at ``arenas`` (``mallopt(M_ARENA_MAX)``).

    The scoring app runs each request in a pool thread, and glibc gives each thread an arena of its
    own (up to 8 per core) that keeps its freed memory: a served worker's RSS crept up request after
    request (docs/decisions.md, D17: 6.7 % over 900 requests after warm-up with
    glibc's default, 3.7 % with two arenas). Returns ``False`` where there is no glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def create_app():
    """The guarded ASGI app of one uvicorn worker, from :data:`SETTINGS_ENV` (uvicorn's factory).

    Raises:
        KeyError: :data:`SETTINGS_ENV` is not set (``ser serve`` sets it).
    """
    import mlflow
    from mlflow.pyfunc import scoring_server

    from ser_tasks.learn.jobs import limit_threads

    limit_malloc_arenas()  # before the model's threads allocate anything
    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(settings.timeout_seconds)
    limit_threads(settings.threads)
    model = mlflow.pyfunc.load_model(settings.model_dir, model_config=settings.model_config_for_load())
    return Guard(scoring_server.init(model), settings)


def serve(model_uri: str, settings: dict, host: str = "127.0.0.1", port: int = 5001, workers: int = 1,
          work_dir: str | Path | None = None) -> None:
    """Download the model once and serve it with ``workers`` uvicorn processes until interrupted.

    Args:
        model_uri: MLflow model URI (``models:/ser-emotion@champion``, ``runs:/...``, a folder).
        settings: :class:`ServeSettings` fields other than ``model_dir``.
        host: interface to listen on (loopback by default; a public one is the operator's choice).
        port: TCP port.
        workers: uvicorn worker processes, each with its own copy of the model and, unless
            ``settings`` says, an equal share of the cores as TensorFlow threads.
        work_dir: where the model is downloaded [default: a temporary folder].

    Raises:
        InputError: the model cannot be downloaded, or a setting is invalid.
    """
    import tempfile

    import mlflow
    import uvicorn
    from pydantic import ValidationError

    from ser_tasks.errors import InputError

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)
        except mlflow.exceptions.MlflowException as exc:
            raise InputError(f"cannot load model {model_uri}: {exc.message}") from exc
        try:
            resolved = ServeSettings(model_dir=local, **{
                "threads": max(1, (os.cpu_count() or 1) // workers), **settings})
        except ValidationError as exc:
            raise InputError(f"serve settings: {exc.errors()[0]['loc'][0]} {exc.errors()[0]['msg']}") from exc
        from ser_tasks.serve.predict import allowed_roots

        allowed_roots(resolved.allowed_paths)  # a relative root fails here, not in every worker
        os.environ[SETTINGS_ENV] = resolved.model_dump_json()
        uvicorn.run("ser_tasks.serve.server:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="info", timeout_graceful_shutdown=10)
