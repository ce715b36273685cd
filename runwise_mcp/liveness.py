"""Cancellation of a tool call's work, and long work shared by concurrent calls.

The server runs each tool in a worker thread and sets ``CANCEL`` there to an event it sets when
the client cancels the call (``notifications/cancelled``, or the client giving up). Long work
calls ``checkpoint()`` at safe points: where nothing shared is half updated, e.g. between
records of a log decoded into a private object. There it raises ``Cancelled``, which unwinds the
call without an answer; it is a BaseException, like asyncio's CancelledError, so the
``except Exception`` that keeps a reader bug from taking a call down never swallows it, and it
is never reported as an error.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar


class Cancelled(BaseException):
    """The call this work belongs to was cancelled; raised at its next checkpoint."""


CANCEL: ContextVar[threading.Event | None] = ContextVar("runwise_cancel", default=None)


def checkpoint() -> None:
    """Raise Cancelled if the current call was cancelled (a no-op outside a tool call)."""
    ev = CANCEL.get()
    if ev is not None and ev.is_set():
        raise Cancelled()


class Flight:
    """One piece of long work (a log decode) in flight, which concurrent calls wait for instead
    of doing it again. ``ok`` is False when it ended without its result (its call was cancelled,
    or it failed): a waiting call then does the work itself."""

    def __init__(self, total: int = 1) -> None:
        self.finished = threading.Event()
        self.ok = False
        self.done = 0  # bytes read so far, for the waiters' progress
        self.total = max(total, 1)
