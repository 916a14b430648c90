"""Fuzz every ufo-nas file loader with corrupted copies of real files.

Each loader starts from a real file (a shipped space, hardware profile, latency table and
predictor; a pareto.json from a short search; a checkpoint of a small space; the first rows
of the shipped accuracy table) and gets mutated copies: a random truncation, random byte
flips, or a value swap (parse, replace one random leaf with another type, NaN, inf, a huge
or negative number or an empty string, or drop a key, and re-serialise). The property:

    the loader (and a use of what it loaded) gives the same result as for the original,
    or a different but finite one, or raises one UfoError with a one-line message;
    never another exception, never NaN or inf in its output.

`tests/test_fuzz_loaders.py` runs a few dozen mutations per loader through hypothesis; this
script runs many (seeded, reproducible) and writes a Markdown report:

    python tools/fuzz_loaders.py [--examples 2000] [--out tools/results/fuzz_loaders.md]

The manifest.json of `ufo-export` has no loader in ufo_nas (nothing reads it back), so it is
not fuzzed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import re
import shutil
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufo_nas.errors import UfoError

ROOT = Path(__file__).resolve().parents[1]
Kind = str  # "yaml", "json", "csv" or "safetensors": how value swaps parse the file

# outcomes: the first three satisfy the property
SAME, CHANGED, UFO_ERROR = "same result", "different finite result", "UfoError"
OTHER, MULTILINE, NON_FINITE = "other exception", "multi-line UfoError", "NaN/inf in output"
SLOW = "slow (> 30 s)"
OUTCOMES = (SAME, CHANGED, UFO_ERROR, OTHER, MULTILINE, NON_FINITE, SLOW)
FAILURES = (OTHER, MULTILINE, NON_FINITE, SLOW)
SLOW_S = 30.0  # a seed file loads in well under 0.1 s (on a busy machine, a second)


@dataclass
class Loader:
    """One loader under test: its seed file and `load(path) -> summary` (plain data of what
    it loaded, including a use of it, e.g. a prediction)."""

    name: str
    kind: Kind
    filename: str
    seed: bytes
    load: Callable[[Path], Any]
    original: Any = None  # summary of the unmutated seed


# --- the loaders ---------------------------------------------------------------------------------
def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _space_summary(path: Path) -> Any:
    from ufo_nas.cost import CostModel
    from ufo_nas.space import load_space

    space = load_space(path)
    cost = CostModel(space)
    archs = [space.smallest(), space.largest()]
    tasks = list(space.tasks)
    return {
        "spec": space.spec.to_dict(),
        "size": str(space.size()),
        "params": _floats(cost.params(archs, tasks)),
        "macs": _floats(cost.macs(archs, tasks)),
    }


def _tiny() -> Any:
    from ufo_nas.space import load_space

    return load_space(ROOT / "search_spaces" / "ufo_vit_tiny.yaml")


def _profile_summary(path: Path) -> Any:
    from ufo_nas.hardware import load_profile
    from ufo_nas.latency.predictor import LatencyPredictor
    from ufo_nas.latency.roofline import roofline_table

    profile = load_profile(path)
    space = _tiny()
    predictor = LatencyPredictor(space, roofline_table(space, profile))
    archs = [space.smallest(), space.largest()]
    summary = profile.__dict__.copy()
    summary.pop("source", None)
    summary["latency_ms"] = _floats(predictor.latency_ms(archs, list(space.tasks)))
    return summary


def _latency_table_summary(path: Path) -> Any:
    from dataclasses import asdict

    from ufo_nas.latency.predictor import LatencyPredictor
    from ufo_nas.latency.table import LatencyTable

    space = _tiny()
    table = LatencyTable.load(path, space)
    predictor = LatencyPredictor(space, table)
    archs = [space.smallest(), space.largest(), space.sample(np.random.default_rng(0))]
    return {
        "table": asdict(table),
        "latency_ms": _floats(predictor.latency_ms(archs, list(space.tasks))),
    }


def _predictor_summary(path: Path) -> Any:
    from ufo_nas.accuracy import GPNAS
    from ufo_nas.space import load_space

    space = load_space("ufo_vit_base")
    model = GPNAS.load(path, space)
    probe = space.sample_genes(np.random.default_rng(0), 8)
    mean, std = model.predict(probe)
    return {
        "task": model.task,
        "target": model.target,
        "mean": _floats(mean),
        "std": _floats(std),
        "noise_std": float(model.noise_std),
    }


def _accuracy_summary(path: Path) -> Any:
    from ufo_nas.accuracy import AccuracyTable
    from ufo_nas.space import load_space

    space = load_space("ufo_vit_base")
    table = AccuracyTable(path, space)
    out = {}
    for task in space.tasks:
        targets = table.targets(task)
        out[task] = ([a.to_string() for a in targets.archs], _floats(targets.y))
    return out


def _report_summary(path: Path) -> Any:
    from ufo_nas.search.report import SearchReport

    report = SearchReport.load(path)
    return {
        "data": report.to_dict(),
        "csv": report.csv_rows(),
        "text": [report.format_front(front) for front in report.fronts],
    }


def _checkpoint_summary(path: Path) -> Any:
    from ufo_nas.checkpoint import load_supernet, read_metadata

    meta = read_metadata(path, "supernet")
    supernet = load_supernet(path)
    state = supernet.state_dict()
    return {
        "meta": meta,
        "tensors": {k: float(v.double().sum()) for k, v in state.items()},
    }


# --- seed files ----------------------------------------------------------------------------------
SMALL_SPACE = """\
# ufo_vit_tiny made smaller still, so that a fuzzed checkpoint loads in milliseconds
name: ufo_vit_fuzz
backbone:
  image_size: 16
  patch_size: 8
  in_chans: 3
  embed_dim: 24
  head_dim: 12
  qkv_bias: true
  drop_path_rate: 0.0
  depth: [1, 2]
  num_heads: [1, 2]
  mlp_ratio: [1.0, 2.0]
tasks:
  face:
    kind: face_verification
    embed_dim: 8
    paths: [shared, task, mix]
"""


def _pareto_json(workdir: Path) -> bytes:
    from ufo_nas.search.engine import SearchSettings
    from ufo_nas.search.run import prepare, search_devices
    from ufo_nas.space import load_space

    space = load_space("ufo_vit_base")
    settings = SearchSettings(population=8, generations=3, seed=0)
    report = search_devices(prepare(space, ["face", "person"], ["cpu-onnxruntime"]), settings)
    report.write(workdir / "search")
    return (workdir / "search" / "pareto.json").read_bytes()


def _checkpoint(workdir: Path) -> bytes:
    import torch

    from ufo_nas.checkpoint import save_supernet
    from ufo_nas.spec import space_spec_from_yaml
    from ufo_nas.supernet import SuperViT

    torch.manual_seed(0)
    supernet = SuperViT(space_spec_from_yaml(SMALL_SPACE, "ufo_vit_fuzz.yaml")).eval()
    return save_supernet(supernet, workdir / "seed.safetensors").read_bytes()


def _accuracy_rows(rows: int = 48) -> bytes:
    """The header and first rows (6 archs x 8 benchmarks) of the shipped base table."""
    lines = (ROOT / "search_spaces" / "ufo_vit_base.accuracy.csv").read_bytes().splitlines(True)
    return b"".join(lines[: rows + 1])


def build_loaders(workdir: Path) -> list[Loader]:
    """Every loader with its seed file and the summary of the unmutated seed."""
    workdir.mkdir(parents=True, exist_ok=True)
    shipped = ROOT
    loaders = [
        Loader(
            "space YAML (load_space)",
            "yaml",
            "space.yaml",
            (shipped / "search_spaces" / "ufo_vit_tiny.yaml").read_bytes(),
            _space_summary,
        ),
        Loader(
            "hardware profile YAML (load_profile)",
            "yaml",
            "profile.yaml",
            (shipped / "hardware_profiles" / "rpi4.yaml").read_bytes(),
            _profile_summary,
        ),
        Loader(
            "latency table (LatencyTable.load)",
            "yaml",
            "table.yaml",
            (shipped / "latency_tables" / "cpu-onnxruntime" / "ufo_vit_tiny.yaml").read_bytes(),
            _latency_table_summary,
        ),
        Loader(
            "predictor JSON (GPNAS.load)",
            "json",
            "predictor.json",
            _trimmed_predictor(shipped / "predictors" / "ufo_vit_base" / "face.json"),
            _predictor_summary,
        ),
        Loader(
            "accuracy CSV (AccuracyTable.targets)",
            "csv",
            "accuracy.csv",
            _accuracy_rows(),
            _accuracy_summary,
        ),
        Loader(
            "pareto.json (SearchReport.load)",
            "json",
            "pareto.json",
            _pareto_json(workdir),
            _report_summary,
        ),
        Loader(
            "checkpoint (read_metadata + load_supernet)",
            "safetensors",
            "supernet.safetensors",
            _checkpoint(workdir),
            _checkpoint_summary,
        ),
    ]
    for loader in loaders:
        path = workdir / loader.name.split()[0] / loader.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(loader.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loader.original = loader.load(path)
        assert not _non_finite(loader.original), f"{loader.name}: seed output is not finite"
    return loaders


def _trimmed_predictor(path: Path, keep: int = 40) -> bytes:
    """The shipped predictor with its first `keep` training archs (loads 10x faster)."""
    data = json.loads(path.read_text())
    data["training_set"] = data["training_set"][:keep]
    return (json.dumps(data, indent=1) + "\n").encode()


# --- mutations -----------------------------------------------------------------------------------
REPLACEMENTS: tuple[Any, ...] = (
    None,
    "",
    "x",
    "nan",
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    10**30,
    -1,
    0,
    -0.5,
    1e-300,
    True,
    False,
    [],
    {},
    [1, "a"],
    {"a": 1},
)
CSV_REPLACEMENTS = (
    "",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-1",
    "0",
    "abc",
    "true",
    "false",
    "1e-320",
    '"',
    "d99-h1-m1",
    "face",
    "x" * 200,
)
SPECIAL_BYTES = b"\x00\xff\n\r\t :-[]{}\",#&*!|>'%@`\\.0123456789e"


@dataclass
class Mutation:
    """A mutated file and how it was made (the reproduction of a failure)."""

    data: bytes
    how: str


def truncate(data: bytes, rng: random.Random) -> Mutation:
    cut = rng.randrange(len(data))
    return Mutation(data[:cut], f"truncated to {cut} of {len(data)} bytes")


def flip(data: bytes, rng: random.Random, header: int | None = None) -> Mutation:
    """Flip bits or set bytes at a few positions (within the first `header` bytes mostly)."""
    out = bytearray(data)
    notes = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        span = header if header and rng.random() < 0.9 else len(out)
        k = rng.randrange(span)
        old = out[k]
        out[k] = old ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.choice(SPECIAL_BYTES)
        notes.append(f"byte {k}: {old:#04x}->{out[k]:#04x}")
    return Mutation(bytes(out), "flipped " + ", ".join(notes))


def _leaves(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every value (leaves and containers) below the root."""
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        found.append((*path, key))
        if isinstance(value, (dict, list)) and value:
            found += _leaves(value, (*path, key))
    return found


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def swap_in(data: Any, rng: random.Random) -> str:
    """Replace (or delete) one random value of parsed `data` in place; says what it did."""
    paths = _leaves(data)
    if not paths:
        return "nothing to swap"
    path = rng.choice(paths)
    parent, key = _get(data, path[:-1]), path[-1]
    where = "".join(f"[{k!r}]" for k in path)
    roll = rng.random()
    if roll < 0.1:
        del parent[key]
        return f"deleted {where}"
    if roll < 0.25:
        other = _get(data, rng.choice(paths))
        value = json.loads(json.dumps(other))  # a copy of another value of the file
    elif roll < 0.35 and _is_number(parent[key]):
        # at most 1e4 times larger: a space of 5e6 layers takes gigabytes before it fails
        value = -parent[key] if rng.random() < 0.5 else parent[key] * 10 ** rng.randint(2, 4)
    else:
        value = rng.choice(REPLACEMENTS)
    parent[key] = value
    return f"set {where} = {_short(value)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def swap(data: bytes, kind: Kind, rng: random.Random) -> Mutation:
    """A structured value swap, re-serialised in the file's own syntax."""
    if kind == "yaml":
        doc = yaml.safe_load(data)
        how = swap_in(doc, rng)
        return Mutation(yaml.safe_dump(doc, sort_keys=False).encode(), how)
    if kind == "json":
        doc = json.loads(data)
        how = swap_in(doc, rng)
        return Mutation((json.dumps(doc, indent=1) + "\n").encode(), how)
    if kind == "csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        r = 0 if rng.random() < 0.05 else rng.randrange(1, len(rows))
        c = rng.randrange(len(rows[r]))
        other = rng.choice(rows[1:])
        value = rng.choice(CSV_REPLACEMENTS) if rng.random() < 0.8 else rng.choice(other)
        rows[r][c] = value
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return Mutation(buffer.getvalue().encode(), f"row {r} column {c} = {_short(value)}")
    # safetensors: 8-byte little-endian header length, JSON header, tensor bytes
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    meta_key = "ufo_nas"
    if rng.random() < 0.8:
        meta = json.loads(header["__metadata__"][meta_key])
        how = "ufo_nas header: " + swap_in(meta, rng)
        header["__metadata__"][meta_key] = json.dumps(meta, allow_nan=True)
    else:
        how = "safetensors header: " + swap_in(header, rng)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return Mutation(struct.pack("<Q", len(text)) + text + data[8 + length :], how)


def mutate(loader: Loader, rng: random.Random) -> Mutation:
    """One random mutation of the loader's seed: truncation, byte flips or a value swap."""
    roll = rng.random()
    if roll < 0.2:
        return truncate(loader.seed, rng)
    if roll < 0.5:
        header = None
        if loader.kind == "safetensors":
            header = 8 + struct.unpack("<Q", loader.seed[:8])[0]
        return flip(loader.seed, rng, header)
    return swap(loader.seed, loader.kind, rng)


# --- the property --------------------------------------------------------------------------------
def _non_finite(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (float, int, np.floating, np.integer)):
        return not math.isfinite(float(value))
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fc" and not np.isfinite(value).all()
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if hasattr(value, "__dict__"):
        return _non_finite(vars(value))
    return False


@dataclass
class Outcome:
    kind: str
    detail: str = ""  # the exception (type: first line) or the non-finite output
    where: str = ""  # innermost ufo_nas frame raising it


def _origin(exc: BaseException) -> str:
    """`file:line` of the innermost frame in ufo_nas/ (where the exception escaped from)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/ufo_nas/" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.split('/ufo_nas/')[-1]}:{f.lineno} ({f.name})"


def check(loader: Loader, data: bytes, path: Path) -> Outcome:
    """Write `data` at `path`, load it, and classify what happened."""
    path.write_bytes(data)
    start = time.perf_counter()
    outcome = _classify(loader, path)
    seconds = time.perf_counter() - start
    if seconds > SLOW_S and outcome.kind not in FAILURES:
        return Outcome(SLOW, f"{seconds:.1f} s, then {outcome.kind} {outcome.detail}"[:300])
    return outcome


def _classify(loader: Loader, path: Path) -> Outcome:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                summary = loader.load(path)
    except UfoError as exc:
        message = str(exc)
        if "\n" in message.strip() or not message.strip():
            return Outcome(MULTILINE, f"{type(exc).__name__}: {message!r}"[:300], _origin(exc))
        return Outcome(UFO_ERROR, f"{type(exc).__name__}: {message}"[:300])
    except Exception as exc:  # noqa: BLE001 - any other type is what we look for
        first = (str(exc).strip().splitlines() or [""])[0]
        return Outcome(OTHER, f"{type(exc).__name__}: {first}"[:300], _origin(exc))
    if _non_finite(summary):
        return Outcome(NON_FINITE, ", ".join(_non_finite_paths(summary)[:3]))
    return Outcome(SAME if _equal(summary, loader.original) else CHANGED)


def _non_finite_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite_paths(v, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_finite_paths(v, f"{path}[{i}]")]
    return [path.lstrip(".")] if _non_finite(value) else []


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and the like
        return repr(a) == repr(b)


def signature(outcome: Outcome) -> str:
    """What makes two failures the same bug: kind, exception type and where it escaped."""
    if outcome.kind == SLOW:
        return SLOW
    if outcome.kind == NON_FINITE:
        first = re.sub(r"\[\d+\]", "[i]", outcome.detail.split(", ")[0])
        return f"{NON_FINITE}: {first}"
    return f"{outcome.kind}: {outcome.detail.split(':')[0]} at {outcome.where}"


def run_one(loader: Loader, seed: int, path: Path) -> tuple[Mutation, Outcome]:
    """Mutation number `seed` of the loader's file, and its outcome."""
    mutation = mutate(loader, random.Random(f"{loader.name}/{seed}"))
    return mutation, check(loader, mutation.data, path)


# --- the tool ------------------------------------------------------------------------------------
@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    failures: dict[str, tuple[int, Mutation, Outcome, int]] = field(default_factory=dict)
    seconds: float = 0.0


def fuzz(loader: Loader, examples: int, workdir: Path) -> Tally:
    tally = Tally()
    path = workdir / loader.name.split()[0] / loader.filename
    start = time.perf_counter()
    for seed in range(examples):
        mutation, outcome = run_one(loader, seed, path)
        tally.counts[outcome.kind] += 1
        if outcome.kind in FAILURES:
            key = signature(outcome)
            first = tally.failures.get(key)
            if first is None or len(mutation.how) < len(first[1].how):
                count = first[3] if first else 0
                tally.failures[key] = (seed, mutation, outcome, count + 1)
            else:
                tally.failures[key] = (*first[:3], first[3] + 1)
    tally.seconds = time.perf_counter() - start
    return tally


def report(results: list[tuple[Loader, Tally]], examples: int) -> list[str]:
    lines = [
        "# Fuzzing the file loaders",
        "",
        f"`python tools/fuzz_loaders.py --examples {examples}`: per loader, {examples} mutated "
        "copies of a real file (20% truncations, 30% byte flips, 50% value swaps; seeded, so "
        "each row below reproduces with `run_one(loader, seed, path)`). Property: the same "
        "result, a different finite result, or one UfoError with a one-line message; never "
        "another exception, never NaN/inf in the output (the loaded object and a use of it).",
        "",
        "| loader | inputs | " + " | ".join(OUTCOMES) + " | s |",
        "|---|" + "---|" * (len(OUTCOMES) + 2),
    ]
    for loader, tally in results:
        counts = " | ".join(str(tally.counts[k]) for k in OUTCOMES)
        lines.append(f"| {loader.name} | {examples} | {counts} | {tally.seconds:.0f} |")
    lines += ["", "## Distinct failures", ""]
    any_failure = False
    for loader, tally in results:
        for key, (seed, mutation, outcome, count) in sorted(tally.failures.items()):
            any_failure = True
            lines += [
                f"- **{loader.name}** ({count}x): {key}",
                f"  - reproduce: seed {seed}, {mutation.how}",
                f"  - got: {outcome.detail}",
            ]
    if not any_failure:
        lines.append("None.")
    lines += [
        "",
        "Not fuzzed: the export `manifest.json` (ufo_nas writes it but has no loader for it).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="mutations per loader")
    parser.add_argument("--out", type=Path, default=ROOT / "tools/results/fuzz_loaders.md")
    parser.add_argument("--only", help="fuzz only loaders whose name contains this")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tools"))
    from results_io import write_results

    workdir = Path(tempfile.mkdtemp(prefix="fuzz_loaders."))
    try:
        loaders = [
            loader for loader in build_loaders(workdir) if not args.only or args.only in loader.name
        ]
        results = []
        for loader in loaders:
            tally = fuzz(loader, args.examples, workdir)
            print(f"{loader.name}: {tally.counts} in {tally.seconds:.0f} s", file=sys.stderr)
            results.append((loader, tally))
            write_results(report(results, args.examples), args.out)  # after each loader
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
