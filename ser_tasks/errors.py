"""The project's exceptions, under one root, :class:`SerError`.

The command line reports any :class:`SerError` as one line naming the file or setting and the
reason, and exits with status 2; anything else is a bug and keeps its traceback. Each exception also
derives from the built-in one it replaced (``ValueError`` or ``RuntimeError``), so callers that
caught those keep working.
"""

from __future__ import annotations


class SerError(Exception):
    """Root of the pipeline's own exceptions: an input or a state the user can correct."""


class InputError(SerError, ValueError):
    """An argument, file, folder or store that the pipeline cannot use; the message says which and why."""


class ParseError(SerError, ValueError):
    """A file name does not follow a corpus's naming scheme; the message says which field and why."""


class AudioError(SerError, ValueError):
    """A clip could not be decoded or is unusable; the message names the file and the reason."""


class LeakageError(SerError, ValueError):
    """A speaker or a source clip would sit in two splits."""


class StoreConflictError(SerError, RuntimeError):
    """The store already holds a group for this config that was planned from different rows."""


class StoreBusyError(SerError, RuntimeError):
    """Another writer holds the store group's lease; the message names it and when its lease expires."""
