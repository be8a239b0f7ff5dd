"""One writer at a time per store group: a lease object in the store, created atomically.

Two overlapping extractions into one group (scheduled runs, a user's command beside a deployment)
would each plan the rows the group lacks and append them at the same offsets, overwriting each
other. A writer therefore first creates ``<store>/.ser-leases/<group>.json`` with an exclusive
create: ``open(..., "xb")`` (``O_EXCL``) on a local or mounted disk, a conditional PUT
(``If-None-Match: *``) on S3 (s3fs's ``"xb"`` mode; AWS S3 since 2024, MinIO, moto). Whoever creates
it owns the group until it deletes it. The lease names its owner (host, process, a random tag) and
an expiry; a thread renews it every third of its time to live, so a writer that died (killed, its
machine gone) leaves a lease that expires, and the next writer breaks it and logs that it did.

The expiry is wall-clock time of the writer's machine: keep the time to live well above the clock
skew between machines that share a store. Breaking an expired lease is a delete then a fresh
exclusive create, so of two writers that break it at once only one gets the new lease.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import fsspec

from ser_tasks.errors import StoreBusyError
from ser_tasks.remote import fs_options, is_remote, redact_url

LEASE_DIR = ".ser-leases"
log = logging.getLogger(__name__)


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds")


class WriterLease:
    """The write lease on one group of a store (a context manager: acquired on entry, released on exit).

    Args:
        url: the store's path or URL.
        group: the group's name (``extract-<fingerprint>``).
        storage_options: fsspec options for a remote store.
        ttl_seconds: time to live of the lease; renewed every ``ttl_seconds / 3`` s while held.
        wait_seconds: how long :meth:`acquire` waits for another writer's lease before it gives up
            (0: give up at once).
        poll_seconds: how often a waiting writer looks again.
        on_wait: called once, with the holder's lease (a dict), when :meth:`acquire` starts waiting.

    Attributes:
        path: the lease object's path on its filesystem.
        owner: ``host:pid:tag`` of this writer.
        lost: set when a renewal found the lease gone or owned by another writer (this writer was
            presumed dead); :meth:`check` then raises.
    """

    def __init__(self, url: str, group: str, storage_options: dict | None = None, ttl_seconds: float = 120.0,
                 wait_seconds: float = 600.0, poll_seconds: float = 2.0,
                 on_wait: Callable[[dict], None] | None = None):
        """Name the lease (nothing is created before :meth:`acquire`)."""
        self.url, self.group = url, group
        self.fs, root = fsspec.core.url_to_fs(url, **fs_options(url, storage_options))
        self.path = f"{root.rstrip('/')}/{LEASE_DIR}/{group}.json"
        self.ttl, self.wait, self.poll, self.on_wait = ttl_seconds, wait_seconds, poll_seconds, on_wait
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the lease object ----------------------------------------------------------------------
    def _body(self, acquired: float) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "group": self.group, "acquired": _iso(acquired),
                           "renewed": _iso(now), "expires": now + self.ttl, "expires_at": _iso(now + self.ttl),
                           "ttl_seconds": self.ttl}).encode()

    def holder(self) -> dict | None:
        """The lease as stored (``owner``, ``acquired``, ``expires`` in Unix seconds ...), or ``None`` if there is none.

        A lease that cannot be parsed (caught mid-write) reads as held until its file is older
        than the time to live.
        """
        try:
            raw = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            try:
                modified = self.fs.modified(self.path).timestamp()
            except (FileNotFoundError, NotImplementedError):
                modified = time.time()
            return {"owner": "unknown (unreadable lease)", "expires": modified + self.ttl,
                    "expires_at": _iso(modified + self.ttl)}

    def _create(self) -> bool:
        """Create the lease object if there is none; whether this writer now holds it."""
        if not is_remote(self.url):
            self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self.fs.open(self.path, "xb") as fh:
                fh.write(self._body(time.time()))
        except FileExistsError:
            return False
        self._acquired = time.time()
        return True

    # -- acquiring, renewing, releasing --------------------------------------------------------
    def acquire(self) -> WriterLease:
        """Take the lease: at once if free or expired, else after waiting up to ``wait_seconds``.

        Returns:
            ``self``, holding the lease and renewing it in a background thread.

        Raises:
            StoreBusyError: another writer still held it after ``wait_seconds``; the message names
                it, since when it holds the lease and when that lease expires.
        """
        deadline = time.monotonic() + self.wait
        waited = False
        while not self._create():
            held = self.holder()
            if held is None:  # released between our create and our read
                continue
            if held.get("expires", 0) < time.time():
                log.warning("%s: breaking the expired write lease of %s on group %s (expired %s)",
                            redact_url(self.url), held.get("owner"), self.group, held.get("expires_at"))
                self._break(held)
                continue
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"{redact_url(self.url)}: group {self.group} is being written by {held.get('owner')} "
                    f"(since {held.get('acquired', '?')}; its lease expires at {held.get('expires_at', '?')} unless "
                    f"renewed). Wait for it to finish, raise extract.lease_wait_seconds, or, if that writer is "
                    f"gone, delete {self.path}")
            if not waited and self.on_wait is not None:
                self.on_wait(held)
            waited = True
            time.sleep(max(0.0, min(self.poll, deadline - time.monotonic())))
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.group}", daemon=True)
        self._thread.start()
        return self

    def _break(self, held: dict) -> None:
        """Delete an expired lease, unless it changed since it was read (renewed, or already replaced)."""
        if self.holder() == held:
            try:
                self.fs.rm_file(self.path)
            except FileNotFoundError:
                pass

    def renew(self) -> None:
        """Push the expiry ``ttl_seconds`` ahead; sets :attr:`lost` if the lease is no longer this writer's."""
        held = self.holder()
        if held is None or held.get("owner") != self.owner:
            self.lost = True
            log.error("%s: lost the write lease on group %s (now %s)", redact_url(self.url), self.group,
                      held.get("owner") if held else "nobody")
            return
        self.fs.pipe_file(self.path, self._body(self._acquired))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except OSError as exc:  # a transient store error: the next renewal may succeed
                log.warning("%s: renewing the write lease failed: %s", redact_url(self.url), exc)
            if self.lost:
                return

    def check(self) -> None:
        """Raise if this writer lost its lease (call before committing the group's state).

        Raises:
            StoreBusyError: the lease expired while this writer was paused, and another took it.
        """
        if self.lost:
            raise StoreBusyError(f"{redact_url(self.url)}: lost the write lease on group {self.group} "
                                 f"(held longer than {self.ttl:.0f} s without renewal); rerun to resume")

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this writer's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        held = self.holder()
        if held is not None and held.get("owner") == self.owner:
            try:
                self.fs.rm_file(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> WriterLease:
        """:meth:`acquire`."""
        return self.acquire()

    def __exit__(self, *exc) -> None:
        """:meth:`release`, whether or not the block raised."""
        self.release()
