"""Atomic writes, one-line errors for a full disk or a read-only directory, checked JSON, locks."""

import errno
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from minima import io


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = io.write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", full)
    with pytest.raises(io.MinimaError, match=r"^no space left on device: .*model\.json$"):
        io.write_json(tmp_path / "model.json", {"x": 1})
    monkeypatch.undo()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the temporary file is gone


def test_a_read_only_directory_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere: simulate with a path whose parent is a file
        (tmp_path / "file").write_text("x")
        with pytest.raises(io.MinimaError, match="cannot write"):
            io.write_text(tmp_path / "file" / "out.txt", "y")
        return
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(io.MinimaError, match="cannot write"):
        io.write_text(tmp_path / "ro" / "out.txt", "y")


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe not text", "not UTF-8 text"),
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"a": 1}', "missing field 'status'"),
])
def test_unusable_json_is_a_corrupt_file_naming_why(tmp_path, payload, reason):
    path = tmp_path / "metrics.json"
    path.write_bytes(payload)
    with pytest.raises(io.CorruptFile) as info:
        io.read_json(path, require=("status",))
    assert reason in str(info.value) and info.value.path == path and "\n" not in str(info.value)
    assert io.read_json_or_none(path, require=("status",)) is None


def test_a_missing_file_is_not_corrupt(tmp_path):
    with pytest.raises(io.MinimaError, match="missing file") as info:
        io.read_json(tmp_path / "nowhere.json")
    assert not isinstance(info.value, io.CorruptFile)


def test_move_aside_keeps_the_bytes(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"junk")
    moved = io.move_aside(path)
    assert moved.name == "x.json.corrupt" and moved.read_bytes() == b"junk" and not path.exists()


def test_finite_or_none_replaces_nan_and_infinity_recursively():
    assert io.finite_or_none({"a": [1.0, float("nan")], "b": (float("inf"),), "c": "s"}) == {"a": [1.0, None], "b": [None], "c": "s"}


def _hold(path, seconds, started):
    with io.locked(path):
        started.set()
        time.sleep(seconds)


def test_a_lock_makes_a_second_process_wait(tmp_path):
    lock = tmp_path / ".lock"
    started = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(lock, 1.0, started))
    holder.start()
    assert started.wait(10)
    begin = time.monotonic()
    with io.locked(lock):
        waited = time.monotonic() - begin
    holder.join()
    assert waited > 0.5  # it waited for the holder to let go


def _contend(lock: Path, marker: Path, rounds: int, overlaps) -> None:
    for _ in range(rounds):
        with io.locked(lock):
            try:  # nobody else may be inside: the marker must not exist
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                with overlaps.get_lock():
                    overlaps.value += 1
                continue
            os.close(fd)
            time.sleep(0.0005)
            os.unlink(marker)


def test_lock_files_are_removed_and_exclusion_holds_while_they_come_and_go(tmp_path):
    """Empty .lock files once stayed in every run directory. Removing one on release must not
    let two processes in at once: one that waited on the removed file, and one that created a
    new file at the same path (the holder unlinks while locked; a waiter re-checks the path)."""
    lock, marker = tmp_path / "run" / ".lock", tmp_path / "inside"
    with io.locked(lock):
        assert lock.exists()
    assert not lock.exists() and not lock.parent.joinpath(".lock").exists()
    context = multiprocessing.get_context("fork")
    overlaps = context.Value("i", 0)
    workers = [context.Process(target=_contend, args=(lock, marker, 150, overlaps)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert overlaps.value == 0 and not lock.exists() and not marker.exists()


def test_a_file_where_a_directory_belongs_is_named(tmp_path):
    """`build` being a file once gave "cannot write build/plan.json: File exists"."""
    (tmp_path / "build").write_text("")
    for target in (tmp_path / "build" / "plan.json", tmp_path / "build" / "figures" / "a.png"):
        with pytest.raises(io.MinimaError) as info:
            io.write_text(target, "x")
        assert str(info.value) == (f"cannot write {target}: {tmp_path / 'build'} is a file, not a directory; "
                                   "move it away (or choose another ROOT)")
    with pytest.raises(io.MinimaError, match="build is a file, not a directory"):
        with io.locked(tmp_path / "build" / ".lock"):
            pass


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in a fresh process (importing dask_jobqueue, as the
    executor tests do, replaces the handler for the rest of the session)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_files_written_together_all_change_or_none(tmp_path, ctrl_c_raises):
    """report.md, .tex and .pdf once went out of step when LaTeX was interrupted: an interrupt
    during the renames waits for them, and a failure while staging changes nothing."""
    import signal

    from minima.interrupts import held

    files = {tmp_path / name: f"new {name}".encode() for name in ("a.md", "a.tex")}
    (tmp_path / "a.pdf").write_bytes(b"old pdf")
    with pytest.raises(KeyboardInterrupt):
        with held():
            signal.raise_signal(signal.SIGINT)  # arrives before the commit is done: delivered after it
            io.write_together({**files, tmp_path / "a.pdf": None})
            assert not (tmp_path / "a.pdf").exists()
    assert all(path.read_bytes() == data for path, data in files.items())
    (tmp_path / "blocked").write_text("a file where a directory belongs")
    with pytest.raises(io.MinimaError):
        io.write_together({tmp_path / "a.md": b"newer", tmp_path / "blocked" / "x": b"x"})
    assert (tmp_path / "a.md").read_bytes() == b"new a.md" and not list(tmp_path.glob(".*.tmp"))


def test_an_interrupt_between_two_renames_waits_for_the_second(tmp_path, monkeypatch, ctrl_c_raises):
    import signal

    replace = os.replace

    def replace_then_interrupt(src, dst):
        replace(src, dst)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the first rename

    monkeypatch.setattr(io.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt) as info:
        io.write_together({tmp_path / "a.md": b"new md", tmp_path / "a.tex": b"new tex"})
    assert info.value.written  # the caller says the new files are in place, not the old ones
    assert (tmp_path / "a.md").read_bytes() == b"new md" and (tmp_path / "a.tex").read_bytes() == b"new tex"
