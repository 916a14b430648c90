"""Shared by the benchmark scripts: write a Markdown results table and echo it."""

from __future__ import annotations

import argparse
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


def p1_runs_and_out(description: str, out: str) -> tuple[list[Path], Path]:
    """A tool that scores committed P1 runs again: the `tools/bench_latency.py` JSON files its
    command line names (default: every committed one) and `--out` (default `out`, under
    tools/results)."""
    results = Path(__file__).resolve().parent / "results"
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("results", nargs="*", help="bench_latency JSON files")
    parser.add_argument("--out", default=str(results / out))
    args = parser.parse_args()
    files = [Path(f) for f in args.results] or sorted(results.glob("bench_latency-*.json"))
    for path in files:
        if (
            not path.is_file()
            or not path.name.startswith("bench_latency-")
            or path.suffix != ".json"
        ):
            parser.error(
                f"{path}: not a tools/bench_latency.py result (bench_latency-SPACE-*.json)"
            )
    return files, Path(args.out)
