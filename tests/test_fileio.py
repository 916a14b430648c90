"""Atomic writes, their file mode, and the cleaning of temporaries left by killed runs."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ufo_nas.errors import UfoError
from ufo_nas.fileio import check_writable, remove_stale_temporaries, temporary_name, write_atomic


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def test_an_existing_file_names_the_overwrite_option(tmp_path):
    (tmp_path / "a.txt").write_text("keep")
    with pytest.raises(UfoError, match=r"a.txt already exists; .* pass --overwrite"):
        write_atomic(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"), overwrite=False)


def test_a_file_written_private_gets_the_usual_mode(tmp_path):
    def private(tmp: Path) -> None:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))

    path = write_atomic(tmp_path / "p.bin", private, overwrite=False)
    assert path.stat().st_mode & 0o777 == _umask_mode()


def _killed_child(code: str, *args: str) -> int:
    """Run `code` in a child until it prints `ready`, SIGKILL it; its pid."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    return child.pid


WRITER = """
import sys, time
from ufo_nas.fileio import write_atomic
def hang(tmp):
    tmp.write_text("half")
    print("ready", flush=True)
    time.sleep(600)
write_atomic(sys.argv[1], hang, overwrite=False)
"""


def test_a_killed_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    pid = _killed_child(WRITER, str(tmp_path / "r.json"))
    assert [p.name for p in tmp_path.iterdir()] == [f".r.json.tmp-{pid}"]
    write_atomic(tmp_path / "r.json", lambda tmp: tmp.write_text("{}"), overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    mine = tmp_path / temporary_name(".x")
    mine.mkdir()
    parent = tmp_path / f".y.tmp-{os.getppid()}"  # alive
    parent.write_text("")
    other = tmp_path / "plain.tmp-notapid"
    other.write_text("")
    assert remove_stale_temporaries(tmp_path) == []
    assert {p.name for p in tmp_path.iterdir()} == {mine.name, parent.name, other.name}


def test_an_unwritable_folder_is_one_line(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(UfoError, match=r"is not writable \(Permission denied\); choose another"):
        check_writable(tmp_path / "new" / "out")
