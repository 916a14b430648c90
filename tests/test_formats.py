"""The shared loader of versioned files: every bad file is one error of its format's class
that names the file."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from ufo_nas.accuracy.gpnas import GPNAS, PredictorError
from ufo_nas.checkpoint import META_KEY, load_supernet
from ufo_nas.errors import CheckpointError, UfoError
from ufo_nas.formats import non_finite_path, parse
from ufo_nas.latency.table import LatencyTable, LatencyTableError
from ufo_nas.search.report import SearchReport


def write_text_file(dump: Callable[[Any], str]) -> Callable[[Path, Any], None]:
    """A writer of a text format: bytes and str as they are, anything else dumped."""

    def write(path: Path, content: Any) -> None:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else dump(content))

    return write


def write_checkpoint(path: Path, content: Any) -> None:
    """Bytes as they are; else a safetensors file with `content` as its ufo-nas header."""
    if isinstance(content, bytes):
        path.write_bytes(content)
        return
    header = content if isinstance(content, str) else json.dumps(content)
    save_file({"w": torch.zeros(1)}, str(path), metadata={META_KEY: header})


@dataclass
class Case:
    """One format: its loader, a file that passes the shared checks, and how to break it."""

    name: str
    load: Callable[[Path], Any]
    error: type[UfoError]
    write: Callable[[Path, Any], None]
    good: dict[str, Any]  # passes the shared checks
    foreign: dict[str, Any]  # a mapping of another kind of file
    foreign_message: str
    schema_message: str
    bytes_message: str = "is not UTF-8 text; it is not a readable"
    malformed: str = "{not: [valid"
    malformed_message: str = "is not valid JSON at line 1, column 2"
    folder_message: str = "is a folder; it is not a readable"


CASES = [
    Case(
        "table.yaml",
        LatencyTable.load,
        LatencyTableError,
        write_text_file(yaml.safe_dump),
        {"schema": 1, "space": "s", "space_fingerprint": "f", "operators": []},
        {"schema": 1, "space": "s", "space_fingerprint": "f"},
        "is not a ufo-nas latency table (no 'operators')",
        "has table schema 7; this ufo-nas reads schema 1; run `ufo profile`",
        malformed="a: [1",
        malformed_message="is not valid YAML at line 1, column 6",
    ),
    Case(
        "predictor.json",
        GPNAS.load,
        PredictorError,
        write_text_file(json.dumps),
        {"format": "ufo-nas-gpnas", "schema": 1, "space": "ufo_vit_tiny", "space_fingerprint": ""},
        {"format": "ufo-nas-search", "schema": 1},
        "is not a ufo-nas GP-NAS predictor (format 'ufo-nas-search', not 'ufo-nas-gpnas')",
        "has predictor schema 7; this ufo-nas reads schema 1",
    ),
    Case(
        "super.safetensors",
        load_supernet,
        CheckpointError,
        write_checkpoint,
        {"schema": 1, "kind": "supernet", "space": {}, "fingerprint": ""},
        {"schema": 1, "kind": "subnet", "space": {}, "fingerprint": ""},
        "holds a subnet, not a supernet",
        "has checkpoint schema 7; this ufo-nas reads schema 1",
        bytes_message="is not a safetensors checkpoint",
        malformed_message="is not valid JSON at line 1, column 2",
    ),
    Case(
        "pareto.json",
        SearchReport.load,
        UfoError,
        write_text_file(json.dumps),
        {"format": "ufo-nas-search", "schema": 1},
        {"format": "ufo-nas-gpnas", "schema": 1},
        "is not a ufo-nas search result (format 'ufo-nas-gpnas', not 'ufo-nas-search')",
        "has result schema 7; this ufo-nas reads schema 1; run ufo-search",
        folder_message="pareto.json: it does not exist",  # it reads a folder's pareto.json
    ),
]


def refusal(case: Case, path: Path) -> str:
    """The one-line message of the error `case.load(path)` raises; it names the file."""
    with pytest.raises(case.error) as info:
        case.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request) -> Case:
    return request.param


# what is wrong with the file -> (its content, the message it gets) in a format
TROUBLES: dict[str, Callable[[Case], tuple[Any, str]]] = {
    "old or new schema": lambda c: ({**c.good, "schema": 7}, c.schema_message),
    "another kind of file": lambda c: (c.foreign, c.foreign_message),
    "not a mapping": lambda c: ([1, 2], "(not a mapping)"),
    "unreadable bytes": lambda c: (b"\xff\xfe\x00\x81" * 16, c.bytes_message),
    "malformed text": lambda c: (c.malformed, c.malformed_message),
}


@pytest.mark.parametrize("trouble", TROUBLES)
def test_bad_files_get_one_error_naming_them(case, trouble, tmp_path):
    content, message = TROUBLES[trouble](case)
    path = tmp_path / case.name
    case.write(path, content)
    assert message in refusal(case, path)


def test_missing_file_and_folder(case, tmp_path):
    missing = tmp_path / "missing" / case.name
    assert f"at {missing}: it does not exist" in refusal(case, missing)
    folder = tmp_path / case.name
    folder.mkdir()
    assert case.folder_message in refusal(case, folder)


def test_parse_says_where_text_is_malformed():
    assert parse('{"a": [1]}', "JSON") == {"a": [1]}
    assert parse("a: [1]", "YAML") == {"a": [1]}
    with pytest.raises(ValueError, match="^not valid JSON at line 2, column 1: Expecting value$"):
        parse('{"a":\n', "JSON")
    with pytest.raises(ValueError, match="^not valid YAML: month must be in 1..12"):
        parse("when: 2024-13-01", "YAML")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "a: 1\n\x00b: 2",
            "not valid YAML at line 2, column 1: control character 0x00 is not allowed",
        ),
        ("a: \x07", "not valid YAML at line 1, column 4: control character 0x07 is not allowed"),
        (
            "a: \ufffe",
            "not valid YAML at line 1, column 4: special character 0xfffe is not allowed",
        ),
    ],
)
def test_parse_names_a_character_yaml_does_not_allow_in_one_line(text, message):
    with pytest.raises(ValueError) as info:
        parse(text, "YAML")
    assert str(info.value) == message


def test_non_finite_path_names_the_first_nan_or_inf():
    assert non_finite_path({"a": [1, "x", {"b": 2.0}], "c": None}, "options") is None
    assert non_finite_path({"a": [1, {"b": float("inf")}]}, "options") == "options.a[1].b"
    assert non_finite_path(float("nan"), "x") == "x"
