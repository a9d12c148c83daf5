"""Atomic writes, one-line errors for a full disk or a read-only directory, checked JSON, locks."""

import errno
import json
import multiprocessing
import os
import time

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


def test_files_written_together_all_change_or_none(tmp_path):
    """report.md, .tex and .pdf once went out of step when LaTeX was interrupted: an interrupt
    during the renames waits for them, and a failure while staging changes nothing."""
    import signal

    from minima.interrupts import held

    files = {tmp_path / name: f"new {name}".encode() for name in ("a.md", "a.tex")}
    (tmp_path / "a.pdf").write_bytes(b"old pdf")
    with pytest.raises(KeyboardInterrupt):
        with held():
            signal.raise_signal(signal.SIGINT)  # arrives mid-commit: delivered once it is done
            io.write_together({**files, tmp_path / "a.pdf": None})
            assert not (tmp_path / "a.pdf").exists()
    assert all(path.read_bytes() == data for path, data in files.items())
    (tmp_path / "blocked").write_text("a file where a directory belongs")
    with pytest.raises(io.MinimaError):
        io.write_together({tmp_path / "a.md": b"newer", tmp_path / "blocked" / "x": b"x"})
    assert (tmp_path / "a.md").read_bytes() == b"new a.md" and not list(tmp_path.glob(".*.tmp"))
