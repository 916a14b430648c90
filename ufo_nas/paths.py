"""Where the shipped search spaces, hardware profiles and latency tables live."""

from __future__ import annotations

import os
from pathlib import Path

from ufo_nas.errors import UfoError


def project_root() -> Path:
    """The folder holding `search_spaces/` etc.: $UFO_NAS_HOME, else the source checkout."""
    home = os.environ.get("UFO_NAS_HOME")
    return Path(home) if home else Path(__file__).resolve().parent.parent


def resolve_named_file(name_or_path: str | os.PathLike, folder: str, what: str) -> Path:
    """A path as given if it exists, else `<root>/<folder>/<name>.yaml`.

    Raises UfoError naming the shipped choices when neither exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = project_root() / folder
    candidate = shipped / f"{path.name}.yaml"
    if path.suffix == "" and candidate.is_file():
        return candidate
    names = sorted(p.stem for p in shipped.glob("*.yaml"))
    raise UfoError(
        f"unknown {what} '{name_or_path}': not a file, and not one of the shipped "
        f"{what}s in {shipped}: {', '.join(names) or '(none)'}"
    )
