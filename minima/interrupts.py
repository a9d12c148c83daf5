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
    """SIGINT and SIGTERM wait until the block ends (then their handlers run, and may raise)."""
    if not _main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
