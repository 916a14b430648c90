"""Reading ufo-nas's versioned files: one parser and one schema check for all of them.

A `VersionedFormat` describes one kind of file (latency table, GP-NAS predictor, checkpoint
header, search result): what it is called, its schema, the error it raises, and the `format`
value or keys it must hold. Every failure, from a missing file to a schema of another
version, is one error of that class naming the file.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ufo_nas.errors import UfoError

Syntax = Literal["JSON", "YAML"]


def parse(text: str, syntax: Syntax) -> Any:
    """JSON or YAML text -> data; a one-line ValueError says where and why it is malformed."""
    where: tuple[int, int] | None = None
    try:
        return json.loads(text) if syntax == "JSON" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where, problem = (exc.lineno, exc.colno), exc.msg
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = (mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or "malformed YAML"
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        start = text.rfind("\n", 0, exc.position) + 1
        where = (text.count("\n", 0, exc.position) + 1, exc.position - start + 1)
        kind = "control" if unicodedata.category(chr(exc.character)) == "Cc" else "special"
        problem = f"{kind} character {exc.character:#04x} is not allowed"
    except (yaml.YAMLError, ValueError) as exc:  # e.g. a YAML date that is no date
        problem = str(exc)
    at = f" at line {where[0]}, column {where[1]}" if where else ""
    raise ValueError(f"not valid {syntax}{at}: {' '.join(problem.split())}") from None


def non_finite_path(value: Any, where: str) -> str | None:
    """`where` plus the key path of the first NaN or infinite float in nested plain data
    (`options.tvm_target.mattr[0]`), else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{k}]", item) for k, item in enumerate(value))
    else:
        return None
    return next((found for path, item in items if (found := non_finite_path(item, path))), None)


def read_text(path: Path, what: str, error: type[UfoError]) -> str:
    """The UTF-8 text of `path`; an unreadable file is one `error` naming it and `what` it
    should be (e.g. "a search space is a YAML file")."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class VersionedFormat:
    """One kind of versioned file: a mapping with a `schema` key and maybe a `format` key."""

    what: str  # "latency table": "no latency table at ...", "... has table schema 0"
    schema: int
    error: type[UfoError]
    syntax: Syntax = "JSON"
    format: str | None = None  # the value its "format" key must have, where it has one
    required: tuple[str, ...] = ()  # keys without which it is not this kind of file
    remedy: str = ""  # how to get a good file, added to the missing and old-schema errors

    def _with_remedy(self, message: str) -> UfoError:
        return self.error(f"{message}; {self.remedy}" if self.remedy else message)

    def _unreadable(self, source: str | Path, detail: str) -> UfoError:
        return self.error(f"{source} is {detail}; it is not a readable {self.what}")

    def file(self, path: str | os.PathLike) -> Path:
        """`path`, refused unless it is an existing file."""
        path = Path(path)
        if path.is_dir():
            raise self._unreadable(path, "a folder")
        if not path.is_file():
            raise self._with_remedy(f"no {self.what} at {path}: it does not exist")
        return path

    def parse(self, text: str, source: str) -> Any:
        """The data in `text` (read from `source`), unchecked."""
        try:
            return parse(text, self.syntax)
        except ValueError as exc:
            raise self._unreadable(source, str(exc)) from None

    def load(self, path: str | os.PathLike) -> Any:
        """The data in the file at `path`, unchecked."""
        path = self.file(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise self._unreadable(path, "not UTF-8 text") from None
        except OSError as exc:
            raise self._unreadable(path, f"inaccessible ({exc.strerror})") from None
        return self.parse(text, str(path))

    def check(self, data: Any, source: str, kind: str | None = None) -> dict[str, Any]:
        """`data` as a mapping of this format and schema (and `kind`, if given)."""
        if not isinstance(data, dict):
            raise self.error(f"{source} is not a ufo-nas {self.what} (not a mapping)")
        if self.format is not None and data.get("format") != self.format:
            raise self.error(
                f"{source} is not a ufo-nas {self.what} "
                f"(format {data.get('format')!r}, not {self.format!r})"
            )
        missing = [key for key in self.required if key not in data]
        if missing:
            raise self.error(f"{source} is not a ufo-nas {self.what} (no '{missing[0]}')")
        if data.get("schema") != self.schema:
            noun = self.what.split()[-1]  # "table schema 1", "predictor schema 1"
            raise self._with_remedy(
                f"{source} has {noun} schema {data.get('schema')}; "
                f"this ufo-nas reads schema {self.schema}"
            )
        if kind is not None and data.get("kind") != kind:
            raise self.error(f"{source} holds a {data.get('kind')}, not a {kind}")
        return data

    def read(self, path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
        """The checked mapping in the file at `path`."""
        return self.check(self.load(path), str(Path(path)), kind)
