"""Arch (one subnet) and SearchSpace (sample, mutate, crossover, encode, check, size).

Knows nothing of torch. An Arch holds only its active layers, so two archs that differ only
in layers past their depth are the same subnet.

Arch string: ``d<depth>-h<heads,...>-m<mlp ratios,...>-<task>:<paths>...`` with one path
letter per layer (s = shared FFN, t = task-specific FFN, m = learned mix of both), e.g.
``d4-h2,3,4,4-m2,4,3,3-face:sstm-object:ssss``. A space reads a task left out of the string
(``d4-h2,3,4,4-m2,4,3,3-face:sstm``) as its first path choice at every layer: the shared FFN
wherever the space allows it, which is gene 0, the path a task that is not searched keeps.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from math import prod
from typing import Any

import numpy as np

from ufo_nas.errors import ArchError
from ufo_nas.spec import PATH_KINDS, TASK_NAME, SpaceSpec, load_space_spec

PATH_LETTERS = {"shared": "s", "task": "t", "mix": "m"}
LETTER_PATHS = {v: k for k, v in PATH_LETTERS.items()}
ARCH_FORMAT = "d<depth>-h<heads,...>-m<mlp_ratios,...>-<task>:<one of s/t/m per layer>"


@dataclass(frozen=True)
class Arch:
    """One subnet: depth, per-layer heads and MLP ratio, per-task per-layer FFN path."""

    depth: int
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    paths: tuple[tuple[str, tuple[str, ...]], ...]  # (task, per-layer path), space order

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ArchError(f"arch depth must be a positive integer, got {self.depth!r}")
        for name, values in (("num_heads", self.num_heads), ("mlp_ratio", self.mlp_ratio)):
            if len(values) != self.depth:
                raise ArchError(
                    f"arch {name} has {len(values)} entries, expected one per layer ({self.depth})"
                )
        for task, task_paths in self.paths:
            if len(task_paths) != self.depth:
                raise ArchError(
                    f"arch paths of task '{task}' have {len(task_paths)} entries, "
                    f"expected one per layer ({self.depth})"
                )
            bad = [p for p in task_paths if p not in PATH_KINDS]
            if bad:
                raise ArchError(
                    f"arch paths of task '{task}': unknown path {bad[0]!r}; "
                    f"allowed: {', '.join(PATH_KINDS)}"
                )

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(task for task, _ in self.paths)

    def task_paths(self, task: str) -> tuple[str, ...]:
        for name, task_paths in self.paths:
            if name == task:
                return task_paths
        raise ArchError(f"arch has no task '{task}'; its tasks: {', '.join(self.tasks)}")

    def to_string(self) -> str:
        parts = [
            f"d{self.depth}",
            "h" + ",".join(str(h) for h in self.num_heads),
            "m" + ",".join(f"{r:g}" for r in self.mlp_ratio),
        ]
        parts += [f"{task}:" + "".join(PATH_LETTERS[p] for p in ps) for task, ps in self.paths]
        return "-".join(parts)

    __str__ = to_string

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Inverse of `to_string`; raises ArchError naming the bad part."""

        def bad(part: str, why: str) -> ArchError:
            return ArchError(
                f"arch string {_shorten(text)!r}: {why} in {_shorten(part)!r}; "
                f"expected {ARCH_FORMAT}"
            )

        if not isinstance(text, str):
            raise ArchError(f"arch string must be a str, got {type(text).__name__}")
        parts = text.strip().split("-")
        if len(parts) < 3:
            raise ArchError(f"arch string {_shorten(text)!r} is incomplete; expected {ARCH_FORMAT}")
        depth_part, heads_part, mlp_part, *task_parts = parts
        try:  # int() refuses some digits ('²') and over 4300 of them
            if depth_part[:1] != "d" or not depth_part[1:].isdigit():
                raise ValueError
            depth = int(depth_part[1:])
        except ValueError:
            raise bad(depth_part, "depth must be 'd' and a number") from None
        if heads_part[:1] != "h":
            raise bad(heads_part, "heads must start with 'h'")
        if mlp_part[:1] != "m":
            raise bad(mlp_part, "mlp ratios must start with 'm'")
        try:
            heads = tuple(int(v) for v in heads_part[1:].split(","))
        except ValueError:
            raise bad(heads_part, "heads must be comma-separated integers") from None
        try:
            ratios = tuple(float(v) for v in mlp_part[1:].split(","))
        except ValueError:
            raise bad(mlp_part, "mlp ratios must be comma-separated numbers") from None
        if not all(np.isfinite(ratios)):
            raise bad(mlp_part, "mlp ratios must be finite")
        paths = []
        for part in task_parts:
            task, sep, letters = part.partition(":")
            if not sep or not TASK_NAME.match(task):
                raise bad(part, "a task part must be '<task>:<letters>'")
            if set(letters) - set(LETTER_PATHS):
                raise bad(part, "path letters must be s, t or m")
            paths.append((task, tuple(LETTER_PATHS[c] for c in letters)))
        if len({t for t, _ in paths}) != len(paths):
            raise ArchError(f"arch string {_shorten(text)!r} names a task twice")
        return cls(depth, heads, ratios, tuple(paths))

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "num_heads": list(self.num_heads),
            "mlp_ratio": list(self.mlp_ratio),
            "paths": {task: list(ps) for task, ps in self.paths},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        keys = {"depth", "num_heads", "mlp_ratio", "paths"}
        if not isinstance(data, dict) or set(data) != keys:
            raise ArchError(f"arch JSON must be an object with exactly the keys {sorted(keys)}")
        paths = data["paths"]
        if not isinstance(paths, dict):
            raise ArchError("arch JSON 'paths' must map task names to lists of paths")
        try:
            return cls(
                int(data["depth"]),
                tuple(int(h) for h in data["num_heads"]),
                tuple(float(r) for r in data["mlp_ratio"]),
                tuple((str(t), tuple(ps)) for t, ps in paths.items()),
            )
        except (TypeError, ValueError) as exc:
            raise ArchError(f"arch JSON has a value of the wrong type: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch JSON is not valid JSON: {exc}") from None


class SearchSpace:
    """The set of subnets a spec allows, with a fixed-length integer gene encoding.

    Genes, each the index of a choice: depth, heads per layer, mlp ratio per layer, then
    per task the FFN path per layer. Genes of layers past the depth are ignored on decode
    and encoded as 0.
    """

    def __init__(self, spec: SpaceSpec):
        self.spec = spec
        self.layers = spec.max_depth
        self.tasks = spec.task_names

    def __repr__(self) -> str:
        return f"SearchSpace({self.spec.name!r}, {scientific(self.size())} subnets)"

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def variables(self) -> tuple[tuple[str, tuple], ...]:
        """(gene name, choices) for every gene, in encoding order."""
        s, n = self.spec, self.layers
        genes: list[tuple[str, tuple]] = [("depth", s.depths)]
        genes += [(f"heads.{i}", s.num_heads[i]) for i in range(n)]
        genes += [(f"mlp.{i}", s.mlp_ratios[i]) for i in range(n)]
        for task in s.tasks:
            genes += [(f"path.{task.name}.{i}", task.paths[i]) for i in range(n)]
        return tuple(genes)

    @cached_property
    def cardinalities(self) -> np.ndarray:
        return np.array([len(c) for _, c in self.variables], dtype=np.int64)

    @property
    def num_genes(self) -> int:
        return len(self.variables)

    def _layer_gene_mask(self, depth_index: np.ndarray) -> np.ndarray:
        """(n, genes) bool: which genes are active for each depth choice index."""
        depths = np.asarray(self.spec.depths)[depth_index]
        layer = np.array(
            [-1] + [int(name.rsplit(".", 1)[1]) for name, _ in self.variables[1:]], dtype=np.int64
        )
        return layer[None, :] < depths[:, None]

    def active_genes(self, genes: np.ndarray) -> np.ndarray:
        """(n, genes) bool: the genes of each row that shape its subnet (not past its depth)."""
        g = np.asarray(genes, dtype=np.int64).reshape(-1, self.num_genes)
        return self._layer_gene_mask(g[:, 0])

    # --- encoding -----------------------------------------------------------------------
    def encode(self, arch: Arch) -> np.ndarray:
        """Arch -> integer gene vector (choice indices); checks the arch first."""
        self.check(arch)
        s = self.spec
        genes = np.zeros(self.num_genes, dtype=np.int64)
        genes[0] = s.depths.index(arch.depth)
        n = self.layers
        for i in range(arch.depth):
            genes[1 + i] = s.num_heads[i].index(arch.num_heads[i])
            genes[1 + n + i] = _index_of_ratio(s.mlp_ratios[i], arch.mlp_ratio[i])
        for t, task in enumerate(s.tasks):
            base = 1 + (2 + t) * n
            for i, path in enumerate(arch.task_paths(task.name)):
                genes[base + i] = task.paths[i].index(path)
        return genes

    def encode_batch(self, archs: Iterable[Arch]) -> np.ndarray:
        rows = [self.encode(a) for a in archs]
        return np.stack(rows) if rows else np.zeros((0, self.num_genes), dtype=np.int64)

    def decode(self, genes: Sequence[int] | np.ndarray) -> Arch:
        """Integer gene vector -> Arch; genes past the depth are ignored."""
        g = np.asarray(genes)
        if g.shape != (self.num_genes,) or not np.issubdtype(g.dtype, np.integer):
            raise ArchError(
                f"gene vector for space '{self.name}' must be {self.num_genes} integers, "
                f"got shape {g.shape} of {g.dtype}"
            )
        out_of_range = np.flatnonzero((g < 0) | (g >= self.cardinalities))
        if out_of_range.size:
            k = int(out_of_range[0])
            name, choices = self.variables[k]
            raise ArchError(
                f"gene {name} = {int(g[k])} is out of range 0..{len(choices) - 1} "
                f"in space '{self.name}'"
            )
        s, n = self.spec, self.layers
        depth = s.depths[g[0]]
        heads = tuple(s.num_heads[i][g[1 + i]] for i in range(depth))
        ratios = tuple(s.mlp_ratios[i][g[1 + n + i]] for i in range(depth))
        paths = tuple(
            (task.name, tuple(task.paths[i][g[1 + (2 + t) * n + i]] for i in range(depth)))
            for t, task in enumerate(s.tasks)
        )
        return Arch(depth, heads, ratios, paths)

    def decode_batch(self, genes: np.ndarray) -> list[Arch]:
        return [self.decode(row) for row in np.asarray(genes)]

    def canonical_genes(self, genes: np.ndarray) -> np.ndarray:
        """Zero the ignored genes, so equal subnets get equal rows; (n, genes) -> same."""
        g = np.array(genes, dtype=np.int64, copy=True, ndmin=2)
        g[~self._layer_gene_mask(g[:, 0])] = 0
        return g

    # --- membership -----------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        """Raise ArchError naming the first value outside the space."""
        s = self.spec
        where = f"in space '{self.name}'"
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        if arch.depth not in s.depths:
            raise ArchError(f"depth {arch.depth} not in {list(s.depths)} {where}")
        for i in range(arch.depth):
            if arch.num_heads[i] not in s.num_heads[i]:
                raise ArchError(
                    f"layer {i}: num_heads {arch.num_heads[i]} not in "
                    f"{list(s.num_heads[i])} {where}"
                )
            if _index_of_ratio(s.mlp_ratios[i], arch.mlp_ratio[i]) < 0:
                raise ArchError(
                    f"layer {i}: mlp_ratio {arch.mlp_ratio[i]:g} not in "
                    f"{[float(r) for r in s.mlp_ratios[i]]} {where}"
                )
        if arch.tasks != self.tasks:
            raise ArchError(
                f"arch tasks {list(arch.tasks)} differ from the tasks {list(self.tasks)} {where}"
            )
        for task in s.tasks:
            for i, path in enumerate(arch.task_paths(task.name)):
                if path not in task.paths[i]:
                    raise ArchError(
                        f"task '{task.name}' layer {i}: path '{path}' not in "
                        f"{list(task.paths[i])} {where}"
                    )

    def contains(self, arch: Arch) -> bool:
        try:
            self.check(arch)
        except ArchError:
            return False
        return True

    __contains__ = contains

    def parse(self, text: str) -> Arch:
        """Parse an arch string and check it belongs to this space; a task the string leaves
        out takes its first path choice (shared where allowed) at every layer."""
        arch = Arch.parse(text)
        given = dict(arch.paths)
        unknown = [t for t in given if t not in self.tasks]
        if unknown:
            raise ArchError(
                f"arch string {_shorten(text)!r} names task '{unknown[0]}', not one of space "
                f"'{self.name}' ({', '.join(self.tasks)})"
            )
        if arch.depth not in self.spec.depths:
            raise ArchError(
                f"arch string {_shorten(text)!r}: depth {arch.depth} not in "
                f"{list(self.spec.depths)} in space '{self.name}'"
            )
        paths = tuple(
            (t.name, given.get(t.name) or tuple(c[0] for c in t.paths[: arch.depth]))
            for t in self.spec.tasks
        )
        arch = Arch(arch.depth, arch.num_heads, arch.mlp_ratio, paths)
        self.check(arch)
        return arch

    def short_string(self, arch: Arch, tasks: Sequence[str]) -> str:
        """The arch string with the paths of `tasks` only, which `parse` reads back as `arch`
        when every other task is at its first path choice (as a search leaves them); else
        the full string."""
        short = Arch(
            arch.depth,
            arch.num_heads,
            arch.mlp_ratio,
            tuple(p for p in arch.paths if p[0] in tasks),
        )
        text = short.to_string()
        return text if self.parse(text) == arch else arch.to_string()

    def select_tasks(self, names: Iterable[str] | None = None) -> tuple[str, ...]:
        """The named tasks, each checked to be one of this space's; all of them for none."""
        names = tuple(names or ())
        return tuple(self.spec.task(name).name for name in names) if names else self.tasks

    # --- size and sampling ----------------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct subnets."""
        s = self.spec
        per_layer = [
            len(s.num_heads[i]) * len(s.mlp_ratios[i]) * prod(len(t.paths[i]) for t in s.tasks)
            for i in range(self.layers)
        ]
        return sum(prod(per_layer[:d]) for d in s.depths)

    def sample_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n gene rows, each gene uniform over its choices (canonical: ignored genes 0)."""
        g = rng.integers(0, self.cardinalities[None, :], size=(n, self.num_genes))
        return self.canonical_genes(g)

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.decode(self.sample_genes(rng, 1)[0])

    def largest(self) -> Arch:
        return self.decode(self.cardinalities - 1)

    def smallest(self) -> Arch:
        return self.decode(np.zeros(self.num_genes, dtype=np.int64))

    # --- variation --------------------------------------------------------------------------
    def mutate(self, arch: Arch, rng: np.random.Generator, prob: float = 0.1) -> Arch:
        """Resample each active gene with probability `prob` (to another value).

        At least one active gene always changes, so the result differs from `arch`
        unless the space has a single subnet.
        """
        genes = self.encode(arch)
        active = np.flatnonzero(
            self._layer_gene_mask(genes[None, :1])[0] & (self.cardinalities > 1)
        )
        if active.size == 0:
            return arch
        flip = active[rng.random(active.size) < prob]
        if flip.size == 0:
            flip = rng.choice(active, size=1)
        for k in flip:
            shift = rng.integers(1, self.cardinalities[k])
            genes[k] = (genes[k] + shift) % self.cardinalities[k]
        return self.decode(self.canonical_genes(genes)[0])

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: each gene from either parent with equal probability.

        Genes of layers past a parent's depth take that parent's choice of 0, so a child
        deeper than a parent inherits the other parent's choices there half the time.
        """
        ga, gb = self.encode(a), self.encode(b)
        take_b = rng.random(self.num_genes) < 0.5
        return self.decode(np.where(take_b, gb, ga))


def scientific(n: int, digits: int = 3) -> str:
    """A non-negative integer of any size as '2.26e+34' (`digits` significant digits),
    exactly, where a float would overflow."""
    if n < 10**digits:
        return f"{n:.{digits - 1}e}"
    exponent = int(math.log10(n))
    exponent += (10 ** (exponent + 1) <= n) - (10**exponent > n)
    unit = 10 ** (exponent - digits + 1)
    lead, rest = divmod(n, unit)
    lead += 2 * rest >= unit
    if lead == 10**digits:
        lead, exponent = lead // 10, exponent + 1
    text = str(lead)
    return f"{text[0]}.{text[1:]}e+{exponent:02d}"


def _shorten(text: str, limit: int = 60) -> str:
    """`text`, cut to its first `limit` characters and '...' if longer (for messages)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def _index_of_ratio(choices: tuple[float, ...], ratio: float) -> int:
    for k, c in enumerate(choices):
        if abs(c - ratio) < 1e-9:
            return k
    return -1


def load_space(name_or_path: str | os.PathLike) -> SearchSpace:
    """A SearchSpace from a shipped space name (`ufo_vit_tiny`) or a YAML path."""
    return SearchSpace(load_space_spec(name_or_path))
