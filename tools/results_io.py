"""Shared by the benchmark scripts: write a Markdown results table and echo it."""

from __future__ import annotations

from pathlib import Path


def write_results(lines: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
