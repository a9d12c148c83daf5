"""Files the pipeline writes and reads: atomic writes, checked JSON, locks, one-line errors.

Torch-free on purpose: the report package renders from summary.json on a machine without torch.
Tensor files (`model.pt`, checkpoints) go through `minima.tensors`, which builds on this module.

- Writes are atomic: the bytes go to a temporary file beside the target, which is then renamed
  over it, so a reader or a resumed run never sees half a file.
- A full disk, a read-only directory or a missing permission is a `MinimaError` naming the path
  ("no space left on device: runs/ab12/model.pt"), never an OS traceback.
- JSON is checked on read: a file that is not a JSON object, or lacks a required field, is a
  `CorruptFile` (a `MinimaError`) naming the file, so a caller can move it aside and recompute.
- `locked` serializes work on one path across processes (flock on a lock file, removed when
  released), so two `make all` in one directory wait for each other instead of training every
  run twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from minima.interrupts import Terminated, held

_UMASK = os.umask(0)
os.umask(_UMASK)


class MinimaError(Exception):
    """An error the user can fix; the CLI prints its message on one line and exits 2."""


class CorruptFile(MinimaError):
    """A result file exists but cannot be used; `path` names it so it can be moved aside."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"corrupt file {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def os_error_message(exc: OSError, path: Path | str) -> str:
    """One line for an OS error on `path`, with the phrases users search for."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on device: {path}"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded: {path}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: {exc.strerror or 'permission denied'}"
    blocker = _file_in_the_way(Path(path)) if exc.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocker is not None:  # mkdir's own words were "File exists", naming neither file
        return f"cannot write {path}: {blocker} is a file, not a directory; move it away (or choose another ROOT)"
    return f"cannot write {path}: {exc.strerror or exc}"


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest directory of `path` that exists as something other than a directory."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _staged(path: Path, write: Callable[[Path], None]) -> Path:
    """A temporary file beside `path` holding what `write` put there (removed on any failure)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise MinimaError(os_error_message(exc, path)) from exc
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MinimaError(os_error_message(exc, path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    tmp = _staged(path, write)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MinimaError(os_error_message(exc, path)) from exc
    return path


def write_together(files: Mapping[Path, bytes | None]) -> None:
    """Replace several files as one (None: remove that file): every new file is staged beside
    its target first, then all are renamed into place with SIGINT and SIGTERM held back, so an
    interrupt leaves either all the old files or all the new ones (the report's md, tex and pdf
    once went out of step when LaTeX was interrupted)."""
    staged: dict[Path, Path] = {}
    try:
        for path, data in files.items():
            if data is not None:
                staged[Path(path)] = _staged(Path(path), lambda tmp, data=data: tmp.write_bytes(data))
        try:
            with held():
                for path, data in files.items():
                    target = Path(path)
                    try:
                        if data is None:
                            target.unlink(missing_ok=True)
                        else:
                            os.replace(staged.pop(target), target)
                    except OSError as exc:
                        raise MinimaError(os_error_message(exc, target)) from exc
        except (KeyboardInterrupt, Terminated) as exc:  # it arrived during the renames, and waited for them
            exc.written = True  # so the caller does not say the old files are still there
            raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically; non-finite floats must have been turned into null before."""
    try:
        text = json_text(obj)
    except ValueError as exc:  # allow_nan=False: a NaN would not be valid JSON
        raise ValueError(f"{path}: {exc}") from exc
    return write_text(path, text)


def read_json(path: Path, *, require: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object from `path`; missing file: MinimaError; anything else unusable: CorruptFile."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise MinimaError(f"missing file: {path}") from exc
    except IsADirectoryError as exc:
        raise MinimaError(f"{path} is a directory, not a JSON file") from exc
    except OSError as exc:
        raise MinimaError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptFile(path, "not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise CorruptFile(path, f"invalid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(value, dict):
        raise CorruptFile(path, f"expected a JSON object, got {type(value).__name__}")
    missing = [key for key in require if key not in value]
    if missing:
        raise CorruptFile(path, f"missing field {missing[0]!r}")
    return value


def read_json_or_none(path: Path, *, require: Iterable[str] = ()) -> dict[str, Any] | None:
    """The object, or None when the file is absent or corrupt (currency checks: recompute it)."""
    try:
        return read_json(path, require=require)
    except MinimaError:
        return None


def move_aside(path: Path) -> Path:
    """Rename a corrupt file to `<name>.corrupt` (kept for inspection) so it is recomputed."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the duration of the block; the lock file is removed
    when the lock is released (empty `.lock` files once stayed in every run directory).

    flock locks are released by the kernel when the process dies, so a killed run never leaves a
    stale lock behind (an empty file at most, which the next holder removes). Removing the file
    keeps mutual exclusion because the holder unlinks it while still holding the lock, and a
    process that waited on that file checks, once it holds the lock, that the path still names
    the very file it locked; if not, it opens the path again and waits on the new file. Without
    the check, a waiter holding the lock of the unlinked file and a newcomer locking a new file
    at the same path would both work at once. Shared file systems without flock support make
    this a no-op lock that leaves its file alone.
    """
    path = Path(path)
    handle, held_lock = _acquire(path)
    with handle:
        try:
            yield
        finally:
            if held_lock:
                try:
                    path.unlink()  # before unlocking: see the docstring
                except OSError:
                    pass  # a read-only directory: the empty file stays, harmless


def _acquire(path: Path) -> tuple[Any, bool]:
    """An open lock file at `path` that this process holds the flock of (False: no flock here)."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")
        except OSError as exc:
            raise MinimaError(os_error_message(exc, path)) from exc
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            except OSError:
                return handle, False  # file systems without locks: proceed unlocked rather than fail
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            handle.close()
            raise
        if same:
            return handle, True
        handle.close()  # its holder removed it after we opened it: wait on the path's new file


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null, recursively."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value
