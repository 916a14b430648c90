"""Writing result files safely: never clobber what exists, never leave half a file.

Every temporary is named `<stem>.tmp-<pid>` after the process that made it, so a later run
can tell one left by a killed process (its pid is dead) from one still being written, and
`remove_stale_temporaries` removes the first kind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ufo_nas.errors import UfoError

TMP_MARK = ".tmp-"


def temporary_name(stem: str) -> str:
    """`<stem>.tmp-<pid of this process>`: a temporary that a later run can clean up."""
    return f"{stem}{TMP_MARK}{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(
    folder: str | os.PathLike, pattern: str = f".*{TMP_MARK}*"
) -> list[Path]:
    """Remove the temporaries (files or folders) in `folder` matching `pattern` whose
    process is dead; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(pattern):
        pid = path.name.rpartition(TMP_MARK)[2]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _default_mode() -> int:
    """The mode `open()` gives a new file: 0o666 less the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool) -> Path:
    """Call `write(tmp)` then move tmp onto `path`; refuse an existing path unless allowed.
    The file gets the usual mode (0644 under umask 022) whatever `write` created it with."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UfoError(f"{path} already exists; choose another path or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, f".{path.name}{TMP_MARK}*")
    tmp = path.with_name(temporary_name(f".{path.name}"))
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_empty_folder(folder: str | os.PathLike) -> Path:
    """Refuse a file, or a folder that holds anything: nothing is overwritten."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UfoError(f"{folder} already exists as a file, not a folder; choose another --out")
    if folder.exists() and any(folder.iterdir()):
        raise UfoError(f"{folder} already exists and is not empty; choose another --out")
    return folder


def check_writable(folder: str | os.PathLike) -> Path:
    """Refuse a folder this process cannot create files in (tried, not guessed from the
    mode bits: root ignores them, read-only mounts do not); a missing folder is judged by
    its nearest existing parent."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    probe = existing / temporary_name(".ufo-write-probe")
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UfoError(
            f"{existing} is not writable ({exc.strerror or exc}); choose another --out"
        ) from None
    return folder
