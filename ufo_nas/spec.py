"""Search-space YAML -> validated, frozen spec objects.

A space file has two sections::

    name: ufo_vit_tiny
    backbone:
      image_size: 64        # square input, pixels
      patch_size: 8
      in_chans: 3
      embed_dim: 192
      head_dim: 48          # every head is this wide; max(num_heads) * head_dim == embed_dim
      qkv_bias: true
      depth: [4, 5, 6]      # choices of the number of blocks
      num_heads: [2, 3, 4]  # choices for every layer, or one list per layer (max depth lists)
      mlp_ratio: [2, 3, 4]  # hidden width = embed_dim * ratio, same two forms
    tasks:
      face:
        kind: face_verification
        embed_dim: 128      # width of the task's embedding neck
        paths: [shared, task, mix]   # FFN path choices, same two forms

Every error names the file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ufo_nas.errors import ArchError, SpecError
from ufo_nas.formats import parse, read_text
from ufo_nas.paths import resolve_named_file

PATH_KINDS = ("shared", "task", "mix")
TASK_KINDS = ("face_verification", "reidentification", "retrieval", "classification")
TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_BACKBONE_KEYS = {
    "image_size": True,
    "patch_size": True,
    "in_chans": False,
    "embed_dim": True,
    "head_dim": True,
    "qkv_bias": False,
    "drop_path_rate": False,
    "depth": True,
    "num_heads": True,
    "mlp_ratio": True,
}
_TASK_KEYS = {"kind": True, "embed_dim": True, "paths": True, "benchmarks": False, "data": False}

# upper bounds, generous for real ViTs: a larger value is a typo or a corrupt file (and would
# overflow the cost model or exhaust memory building the supernet)
MAX_IMAGE_SIZE = 8192
MAX_IN_CHANS = 64
MAX_WIDTH = 65536  # embed_dim, head_dim and a task's embed_dim
MAX_DEPTH = 256
MAX_HEADS = 1024
MAX_MLP_RATIO = 64.0


@dataclass(frozen=True)
class TaskSpec:
    """One task of the supernet: its metric family, neck width and FFN path choices."""

    name: str
    kind: str
    embed_dim: int
    paths: tuple[tuple[str, ...], ...]  # per layer, the allowed FFN paths
    benchmarks: tuple[str, ...] = ()  # public benchmark names this task is scored on
    data: str | None = None  # data set folder (relative to the shared datasets root)


@dataclass(frozen=True)
class SpaceSpec:
    """A validated search-space description; knows nothing of torch."""

    name: str
    image_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    head_dim: int
    qkv_bias: bool
    drop_path_rate: float
    depths: tuple[int, ...]
    num_heads: tuple[tuple[int, ...], ...]  # per layer choices, length max depth
    mlp_ratios: tuple[tuple[float, ...], ...]  # per layer choices, length max depth
    tasks: tuple[TaskSpec, ...]
    source: str = "<dict>"

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token."""
        return self.num_patches + 1

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def max_heads(self, layer: int) -> int:
        return max(self.num_heads[layer])

    def hidden_dim(self, ratio: float) -> int:
        return round(self.embed_dim * ratio)

    def max_hidden(self, layer: int) -> int:
        return self.hidden_dim(max(self.mlp_ratios[layer]))

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise SpecError(
            f"unknown task '{name}' for space '{self.name}'; tasks: {', '.join(self.task_names)}"
        )

    def check_tasks(self, tasks: str | Sequence[str]) -> tuple[str, ...]:
        """`tasks` (one name or several) as a tuple; SpecError for a task not in the space,
        ArchError unless they are distinct and at least one."""
        names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        for name in names:
            self.task(name)
        if not names or len(set(names)) != len(names):
            raise ArchError(f"expected a non-empty list of distinct tasks, got {list(names)}")
        return names

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (per-layer lists always expanded); `from_dict` inverts it."""
        return {
            "name": self.name,
            "backbone": {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "in_chans": self.in_chans,
                "embed_dim": self.embed_dim,
                "head_dim": self.head_dim,
                "qkv_bias": self.qkv_bias,
                "drop_path_rate": self.drop_path_rate,
                "depth": list(self.depths),
                "num_heads": [list(c) for c in self.num_heads],
                "mlp_ratio": [list(c) for c in self.mlp_ratios],
            },
            "tasks": {
                t.name: {
                    "kind": t.kind,
                    "embed_dim": t.embed_dim,
                    "paths": [list(c) for c in t.paths],
                    "benchmarks": list(t.benchmarks),
                    **({"data": t.data} if t.data is not None else {}),
                }
                for t in self.tasks
            },
        }

    def fingerprint(self) -> str:
        """A short hash of everything that shapes the supernet's weights and subnets."""
        blob = self.to_dict()
        blob["backbone"].pop("drop_path_rate")  # training-only
        for task in blob["tasks"].values():
            task.pop("benchmarks")
            task.pop("data", None)
        text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Reader:
    """Typed access to a YAML mapping with errors that name the file and key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {key}: {message}")

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict) or not value:
            raise self.fail(key, f"expected a non-empty mapping, got {_short(value)}")
        return value

    def keys(self, data: dict, key: str, allowed: dict[str, bool]) -> None:
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0],
                f"unknown key; allowed: {', '.join(allowed)}",
            )
        for name, required in allowed.items():
            if required and name not in data:
                raise self.fail(f"{key}.{name}" if key else name, "missing required key")

    def integer(self, value: Any, key: str, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise self.fail(key, f"expected an integer from 1 to {maximum}, got {_short(value)}")
        return value

    def bounded(self, maximum: int) -> Callable[[Any, str], int]:
        """`integer` with this maximum, as the item check of `choices`."""
        return lambda value, key: self.integer(value, key, maximum)

    def ratio(self, value: Any, key: str) -> float:
        """A number in (0, MAX_MLP_RATIO]; NaN and inf are not."""
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value <= MAX_MLP_RATIO
        ):
            raise self.fail(
                key, f"expected a number in (0, {MAX_MLP_RATIO:g}], got {_short(value)}"
            )
        return float(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choices(self, value: Any, key: str, item) -> tuple:
        """A non-empty list of distinct items, returned sorted."""
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list of choices, got {_short(value)}")
        items = [item(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if len(set(items)) != len(items):
            raise self.fail(key, f"choices repeat a value: {_short(value)}")
        return tuple(sorted(items))

    def per_layer(self, value: Any, key: str, item, layers: int) -> tuple[tuple, ...]:
        """Either one choice list for every layer, or exactly `layers` lists."""
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            if len(value) != layers:
                raise self.fail(
                    key, f"per-layer form needs {layers} lists (max depth), got {len(value)}"
                )
            return tuple(self.choices(v, f"{key}[{i}]", item) for i, v in enumerate(value))
        shared = self.choices(value, key, item)
        return (shared,) * layers


def space_spec_from_dict(data: Any, source: str = "<dict>") -> SpaceSpec:
    """Validate a parsed YAML document into a SpaceSpec; raises SpecError."""
    r = _Reader(source)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with keys name, backbone, tasks")
    r.keys(data, "", {"name": True, "backbone": True, "tasks": True})
    name = data["name"]
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise r.fail("name", f"expected a lower-case identifier, got {name!r}")
    bb = r.mapping(data["backbone"], "backbone")
    r.keys(bb, "backbone", _BACKBONE_KEYS)
    image_size = r.integer(bb["image_size"], "backbone.image_size", MAX_IMAGE_SIZE)
    patch_size = r.integer(bb["patch_size"], "backbone.patch_size", image_size)
    if image_size % patch_size:
        raise r.fail("backbone.patch_size", f"{patch_size} does not divide image_size {image_size}")
    embed_dim = r.integer(bb["embed_dim"], "backbone.embed_dim", MAX_WIDTH)
    head_dim = r.integer(bb["head_dim"], "backbone.head_dim", MAX_WIDTH)
    depths = r.choices(bb["depth"], "backbone.depth", r.bounded(MAX_DEPTH))
    layers = max(depths)
    num_heads = r.per_layer(bb["num_heads"], "backbone.num_heads", r.bounded(MAX_HEADS), layers)
    for i, choices in enumerate(num_heads):
        if max(choices) * head_dim != embed_dim:
            raise r.fail(
                "backbone.num_heads",
                f"layer {i}: max heads {max(choices)} x head_dim {head_dim} = "
                f"{max(choices) * head_dim}, must equal embed_dim {embed_dim}",
            )
    mlp_ratios = r.per_layer(bb["mlp_ratio"], "backbone.mlp_ratio", r.ratio, layers)
    for choices in mlp_ratios:
        for ratio in choices:
            hidden = embed_dim * ratio
            if hidden < 0.5 or abs(hidden - round(hidden)) > 1e-9:
                raise r.fail(
                    "backbone.mlp_ratio",
                    f"embed_dim {embed_dim} x {ratio} is not a whole number of channels "
                    "(at least 1)",
                )
    drop_path = bb.get("drop_path_rate", 0.0)
    if (
        isinstance(drop_path, bool)
        or not isinstance(drop_path, (int, float))
        or not (0.0 <= drop_path < 1.0)
    ):
        raise r.fail("backbone.drop_path_rate", f"expected a number in [0, 1), got {drop_path!r}")

    tasks_data = r.mapping(data["tasks"], "tasks")
    tasks = []
    for task_name, task in tasks_data.items():
        key = f"tasks.{task_name}"
        if not isinstance(task_name, str) or not TASK_NAME.match(task_name):
            raise r.fail(key, "task names are lower-case identifiers (a-z, 0-9, _)")
        task = r.mapping(task, key)
        r.keys(task, key, _TASK_KEYS)
        if task["kind"] not in TASK_KINDS:
            raise r.fail(
                f"{key}.kind", f"unknown kind {task['kind']!r}; allowed: {', '.join(TASK_KINDS)}"
            )

        def path_kind(value: Any, k: str) -> str:
            if value not in PATH_KINDS:
                raise r.fail(k, f"unknown path kind {value!r}; allowed: {', '.join(PATH_KINDS)}")
            return value

        paths = r.per_layer(task["paths"], f"{key}.paths", path_kind, layers)
        paths = tuple(tuple(p for p in PATH_KINDS if p in c) for c in paths)  # canonical order
        benchmarks = task.get("benchmarks", [])
        if not isinstance(benchmarks, list) or not all(isinstance(b, str) for b in benchmarks):
            raise r.fail(f"{key}.benchmarks", f"expected a list of names, got {benchmarks!r}")
        data_dir = task.get("data")
        if data_dir is not None and not isinstance(data_dir, str):
            raise r.fail(f"{key}.data", f"expected a folder name, got {data_dir!r}")
        tasks.append(
            TaskSpec(
                name=task_name,
                kind=task["kind"],
                embed_dim=r.integer(task["embed_dim"], f"{key}.embed_dim", MAX_WIDTH),
                paths=paths,
                benchmarks=tuple(benchmarks),
                data=data_dir,
            )
        )
    return SpaceSpec(
        name=name,
        image_size=image_size,
        patch_size=patch_size,
        in_chans=r.integer(bb.get("in_chans", 3), "backbone.in_chans", MAX_IN_CHANS),
        embed_dim=embed_dim,
        head_dim=head_dim,
        qkv_bias=r.boolean(bb.get("qkv_bias", True), "backbone.qkv_bias"),
        drop_path_rate=float(drop_path),
        depths=depths,
        num_heads=num_heads,
        mlp_ratios=mlp_ratios,
        tasks=tuple(tasks),
        source=source,
    )


def load_space_spec(name_or_path: str | os.PathLike) -> SpaceSpec:
    """Load a space by file path or by the name of a shipped space (`ufo_vit_base`)."""
    path = resolve_named_file(name_or_path, "search_spaces", "search space")
    text = read_text(path, "a search space is a YAML file", SpecError)
    return space_spec_from_yaml(text, str(path))


def space_spec_from_yaml(text: str, source: str) -> SpaceSpec:
    try:
        data = parse(text, "YAML")
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from None
    return space_spec_from_dict(data, source)


def _short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters (a huge number or list stays a short line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
