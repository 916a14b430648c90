"""The arguments several commands share, each with one meaning and one help text."""

from __future__ import annotations

import argparse
import inspect
import math
import re
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from ufo_nas.backends import PRECISIONS
from ufo_nas.errors import UfoError

DEFAULT_SPACE = "ufo_vit_base"
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
_LEGACY_SPACE = "legacy_space"  # dest of the deprecated positional SPACE
_ARCH_HELP = (
    "an arch string (see `ufo sample`), a CVPR'22 competition string, 'largest' or 'smallest'"
)

Handler = Callable[[argparse.Namespace], None]
# argparse takes "-5M" or "-inf" for an option unless it looks like a negative number; this
# (Python 3.13's own pattern) lets every value starting "-<digit>" or "-." reach its type,
# which refuses it with a message of its own
_NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def add_command(
    subparsers: argparse._SubParsersAction, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    """A subcommand running `handler`; `help` is its one line in `ufo --help`, and the
    handler's docstring its description (an `examples:` section of it, the epilog)."""
    doc, _, examples = inspect.getdoc(handler).partition("\nexamples:\n")
    description = " ".join(doc.split())
    if not examples:
        parser = subparsers.add_parser(name, help=help, description=description)
    else:
        parser = subparsers.add_parser(
            name,
            help=help,
            description=textwrap.fill(description, 80),
            epilog=f"examples:\n{examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    parser.set_defaults(func=handler)
    return parser


def _help(text: str, note: str) -> str:
    return f"{text}; {note}" if note else text


def add_space(parser: argparse.ArgumentParser, note: str = "", legacy: bool = False) -> None:
    """--space NAME; `legacy` also accepts the deprecated positional SPACE (see settle_space)."""
    text = "a shipped space name (ufo_vit_base, ufo_vit_tiny) or a YAML path"
    parser.add_argument(
        "--space", metavar="NAME", help=_help(f"{text} (default {DEFAULT_SPACE})", note)
    )
    if legacy:
        parser.add_argument(_LEGACY_SPACE, nargs="?", metavar="SPACE", help=argparse.SUPPRESS)


def settle_space(args: argparse.Namespace, prog: str) -> None:
    """Give --space its default, or the deprecated positional SPACE with a note on stderr
    that names the command as `prog`."""
    legacy = getattr(args, _LEGACY_SPACE, None)
    if legacy is not None:
        if args.space is not None:
            raise UfoError(f"give the space once: --space {args.space} or {legacy}, not both")
        print(
            f"{prog}: note: the positional SPACE is deprecated, write --space {legacy} "
            "(accepted until 0.3)",
            file=sys.stderr,
        )
        args.space = legacy
    if "space" in args and args.space is None:
        args.space = DEFAULT_SPACE


def names(text: str) -> tuple[str, ...]:
    """An argument type: a comma-separated list of distinct names, blanks dropped; an
    empty list is refused (leave the option out to get its default)."""
    out = tuple(t.strip() for t in text.split(",") if t.strip())
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give at least one name")
    twice = sorted({t for t in out if out.count(t) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} names {twice[0]!r} twice")
    return out


def add_task(parser: argparse.ArgumentParser, several: bool = True, required: bool = False) -> None:
    """--task: one task, or (`several`) comma-separated tasks served by one trunk."""
    if not several:
        parser.add_argument("--task", required=required, help="the task")
        return
    parser.add_argument(
        "--task",
        type=names,
        required=required,
        help="task(s) served by one trunk, comma-separated"
        + ("" if required else " (default: all)"),
    )


def add_arch(
    parser: argparse.ArgumentParser, several: bool = False, required: bool = True, note: str = ""
) -> None:
    """--arch: an arch as `ufo_nas.cvpr22.parse_arch` reads it, or (`several`) one or more."""
    parser.add_argument(
        "--arch",
        required=required,
        nargs="+" if several else None,
        help=_help(("one or more, each " if several else "") + _ARCH_HELP, note),
    )


def add_device(
    parser: argparse.ArgumentParser, several: bool = False, required: bool = False, note: str = ""
) -> None:
    """--device: a hardware profile, or (`several`) comma-separated profile names."""
    if several:
        text = "hardware profile name(s), comma-separated"
    else:
        text = "hardware profile: a name in hardware_profiles/ or a YAML path"
    parser.add_argument(
        "--device", type=names if several else None, required=required, help=_help(text, note)
    )


def add_out(
    parser: argparse.ArgumentParser, what: str, default: str = "", required: bool = False
) -> None:
    """--out: where the command writes `what`, with its default (or what it must not hold)."""
    parser.add_argument(
        "--out", required=required, help=what + (f" (default: {default})" if default else "")
    )


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """--overwrite: replace `what` where it exists already."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_precision(parser: argparse.ArgumentParser, note: str = "") -> None:
    """--precision, one of ufo_nas.backends.PRECISIONS."""
    parser.add_argument("--precision", choices=PRECISIONS, help=_help("numeric precision", note))


def _number(text: str, kind: type, minimum: float, strict: bool) -> Any:
    what = "an integer" if kind is int else "a number"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {what}; expected {what} {bound}"
        ) from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected {what} {bound}")
    return value


def positive_int(text: str) -> int:
    """An argument type: an integer >= 1."""
    return _number(text, int, 1, strict=False)


def non_negative_int(text: str) -> int:
    """An argument type: an integer >= 0."""
    return _number(text, int, 0, strict=False)


def positive_float(text: str) -> float:
    """An argument type: a finite number > 0."""
    return _number(text, float, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    """An argument type: a finite number >= 0."""
    return _number(text, float, 0.0, strict=False)


def add_number(
    parser: argparse.ArgumentParser,
    flag: str,
    default: float,
    help: str,
    kind: Callable[[str], Any] | None = None,
) -> None:
    """An option of type `kind` (default: the type of `default`), its default in its help."""
    parser.add_argument(
        flag, type=kind or type(default), default=default, help=f"{help} (default {default:g})"
    )


def add_seed(parser: argparse.ArgumentParser, what: str = "random seed") -> None:
    """--seed (default 0), an integer >= 0."""
    add_number(parser, "--seed", 0, what, non_negative_int)


def add_opset(parser: argparse.ArgumentParser) -> None:
    """--opset of the ONNX export."""
    add_number(parser, "--opset", 18, "ONNX opset, >= 17")


def count(text: str) -> float:
    """An argument type: a positive count, '25M', '300k', '1.2G' or a plain number."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        value = float(number) * scale
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive count; write e.g. 25M, 300k or 25000000"
        )
    return value
