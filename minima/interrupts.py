"""Interrupts end a process the way Ctrl-C does, and never in the middle of a group of writes.

Python's default SIGTERM kills the process on the spot: no `finally`, no `with` exit, so a
temporary directory (LaTeX's, half a megabyte) and a running child (latexmk) stayed behind.
`sigterm_raises` turns SIGTERM into a `Terminated` exception, which unwinds like
KeyboardInterrupt; the CLIs print one line for either and exit 130 (SIGINT) or 143 (SIGTERM).
`held` postpones both signals over a few renames that must happen together (minima.io's
`write_together`): they are delivered, and raise, right after the block.

Torch-free: the report uses it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt: `except Exception` lets it pass)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block (signal handlers live in the main thread only)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then take their usual course (raise, or end
    the process). Python runs signal handlers in the main thread whichever thread the kernel
    picks, so swapping the handlers holds them back where masking one thread would not."""
    if not _main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])
