"""Shared by the benchmark scripts: write a Markdown results table and echo it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from ufo_nas.errors import UfoError


def write_results(lines: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def rows_per_device(devices: str, rows_of: Callable[[str], list[str]]) -> list[str]:
    """The table rows of each comma-separated device in turn; a one-line error exits."""
    lines: list[str] = []
    try:
        for device in devices.split(","):
            lines += rows_of(device)
    except UfoError as exc:
        sys.exit(f"error: {exc}")
    return lines


def command_line(script: str) -> str:
    """The command that ran `script` (tools/NAME.py) with this process's arguments."""
    return shlex.join(["python", script, *sys.argv[1:]])
