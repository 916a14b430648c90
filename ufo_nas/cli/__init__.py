"""The `ufo` command: thin subcommands that parse, call the library and print.

One module per command group holds its parsers beside their handlers; `args` holds the
arguments they share. `ufo-eval`, `ufo-profile`, `ufo-search`, `ufo-plot`, `ufo-export` and
`ufo-train` are aliases of one command each.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from ufo_nas.cli import accuracy, export, latency, search, space, train
from ufo_nas.cli.args import EXIT_INTERRUPTED, settle_space
from ufo_nas.errors import InterruptReported, UfoError, UfoWarning

COMMAND_GROUPS = (space, accuracy, latency, search, export, train)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `cmd | head` in C tools


class _CommandsFormatter(argparse.HelpFormatter):
    """Measures command names with their indent (as Python 3.13 does), so that each command
    in `ufo --help` takes one line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS:
            for sub in self._iter_indented_subactions(action):
                length = len(self._format_action_invocation(sub)) + self._current_indent
                self._action_max_length = max(self._action_max_length, length)


def build_parser(alias: str | None = None) -> argparse.ArgumentParser:
    """The `ufo` parser; with `alias`, that command reads `ufo-<alias>` in usage and errors."""
    parser = argparse.ArgumentParser(
        prog="ufo",
        description="ufo-nas: hardware-aware search for UFO multi-task vision transformers.",
        formatter_class=_CommandsFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    for name, command in subparsers.choices.items():
        if name == alias:
            command.prog = f"ufo-{alias}"
        command.set_defaults(command_parser=command)
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command, so that an alias names itself
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    prog = args.command_parser.prog
    with warnings.catch_warnings():
        warnings.simplefilter("once", UfoWarning)
        warnings.showwarning = _one_line_warning(prog)
        try:
            settle_space(args, prog)
            args.func(args)
            sys.stdout.flush()  # a reader gone (`ufo space | head`) is seen here, not at exit
        except UfoError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            _discard_stdout()
            return EXIT_BROKEN_PIPE
        except KeyboardInterrupt as exc:  # Ctrl-C: one line, not a traceback
            if not isinstance(exc, InterruptReported):  # else a child process said it
                print(f"\n{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit raises nothing
    (the recipe of the `signal` module's documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _one_line_warning(prog: str):
    """A `warnings.showwarning` that prints a UfoWarning as `prog: warning: message`."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, UfoWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ufo COMMAND ...`; 0 on success, 2 with a one-line error on stderr."""
    return _run(build_parser(), argv)


def _alias(command: str) -> int:
    return _run(build_parser(alias=command), [command, *sys.argv[1:]])


def eval_main() -> int:
    """`ufo-eval`: the alias of `ufo eval`."""
    return _alias("eval")


def profile_main() -> int:
    """`ufo-profile`: the alias of `ufo profile`."""
    return _alias("profile")


def search_main() -> int:
    """`ufo-search`: the alias of `ufo search`."""
    return _alias("search")


def plot_main() -> int:
    """`ufo-plot`: the alias of `ufo plot`."""
    return _alias("plot")


def export_main() -> int:
    """`ufo-export`: the alias of `ufo export`."""
    return _alias("export")


def train_main() -> int:
    """`ufo-train`: the alias of `ufo train`."""
    return _alias("train")
