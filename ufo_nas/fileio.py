"""Writing result files safely: never clobber what exists, never leave half a file."""

from __future__ import annotations

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
