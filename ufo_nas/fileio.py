"""Writing result files safely: never clobber what exists, never leave half a file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ufo_nas.errors import UfoError


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool) -> Path:
    """Call `write(tmp)` then move tmp onto `path`; refuse an existing path unless allowed."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UfoError(f"{path} already exists; choose another path or pass overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
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
    """Refuse a folder (or file) that exists and holds anything: nothing is overwritten."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UfoError(f"{folder} already exists and is not empty; choose another --out")
    return folder
