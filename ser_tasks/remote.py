"""fsspec storage options for remote corpora and feature stores (S3 through s3fs), secrets sealed.

Credentials reach s3fs either through the standard AWS chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE`` / instance roles; botocore also reads
``AWS_ENDPOINT_URL_S3``) or through ``--storage-options`` JSON. Options given on the command line
travel as flow and task arguments, so their secret values are wrapped in
:class:`pydantic.SecretStr` by :func:`seal`: Prefect stores flow-run parameters through a JSON
encoder that writes ``**********`` for them, ``repr`` hides them, and only :func:`fs_options`, at
the moment a filesystem is opened, unwraps them.
"""

from __future__ import annotations

import json
from typing import Any

from fsspec.utils import get_protocol
from pydantic import SecretStr

from ser_tasks.errors import InputError

# Option names whose values are credentials, in the spellings s3fs, gcsfs, adlfs and botocore use.
SECRET_KEYS = frozenset({
    "key", "secret", "token", "password", "session_token", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "account_key", "sas_token", "client_secret", "connection_string", "credentials",
})
LOCAL_PROTOCOLS = frozenset({"file", "local"})


def is_remote(url: str) -> bool:
    """``True`` for URLs fsspec opens with a non-local filesystem (``s3://``, ``gs://``, ``memory://``...)."""
    return get_protocol(str(url)) not in LOCAL_PROTOCOLS


def seal(options: dict | None) -> dict | None:
    """A copy of ``options`` with every credential value (any depth) wrapped in ``SecretStr``.

    Example: ``{"key": "AKIA..", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}`` ->
    ``{"key": SecretStr('**********'), "client_kwargs": {...}}``.
    """
    if options is None:
        return None

    def _seal(value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            return {k: _seal(v, str(k)) for k, v in value.items()}
        if name.lower() in SECRET_KEYS and isinstance(value, str):
            return SecretStr(value)
        return value

    return _seal(options)


def secret_keys(options: dict | None, prefix: str = "") -> list[str]:
    """Dotted names of the credential options in ``options`` (any depth), e.g. ``["key", "secret"]``."""
    found = []
    for key, value in (options or {}).items():
        if isinstance(value, dict):
            found += secret_keys(value, f"{prefix}{key}.")
        elif str(key).lower() in SECRET_KEYS:
            found.append(prefix + str(key))
    return found


def reveal(options: dict | None) -> dict:
    """``options`` with ``SecretStr`` values unwrapped, ready for an fsspec filesystem (``{}`` for ``None``)."""

    def _reveal(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _reveal(v) for k, v in value.items()}
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return value

    return _reveal(options or {})


def fs_options(url: str, options: dict | None) -> dict:
    """The keyword arguments to open ``url`` with: the revealed options for a remote URL, ``{}`` for a local path.

    This keeps S3 options given for the store from reaching a local corpus folder.
    """
    return reveal(options) if options and is_remote(url) else {}


def redacted(options: dict | None) -> dict:
    """``options`` fit to print or log: credential values replaced by ``"***"``."""

    def _red(value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            return {k: _red(v, str(k)) for k, v in value.items()}
        if isinstance(value, SecretStr) or name.lower() in SECRET_KEYS:
            return "***"
        return value

    return _red(options or {})


def redact_url(url: str) -> str:
    """A store URL fit to log: any ``user:password@`` part removed."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def parse_options(text: str | None, endpoint_url: str | None = None) -> dict | None:
    """Storage options from ``--storage-options`` JSON plus ``--endpoint-url``, sealed.

    Args:
        text: a JSON object, e.g. ``'{"key": "...", "secret": "..."}'``, or ``None``.
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, moto), e.g. ``http://127.0.0.1:9000``;
            set as s3fs's ``endpoint_url``.

    Raises:
        InputError: ``text`` is not JSON, or not a JSON object.
    """
    options: dict = {}
    if text:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--storage-options is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InputError("--storage-options must be a JSON object")
        options.update(value)
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return seal(options) if options else None
