"""`ufo profile`: measure a space's operators on a device, validate on whole subnets.

1. Every distinct operator is exported to ONNX (unoptimised: see PROFILE_EXPORT), compiled
   by the profile's backend and timed warm in interleaved rounds (`time_interleaved`;
   attention and FFN operators as a chain of copies), in chunks that each include the
   anchor, a fixed reference subnet; a chunk of slow models gets fewer rounds
   (`chunk_seconds`, at least `min_rounds`), a chunk of fast ones more (`fill_seconds`, at
   most `max_rounds`).
2. Random whole subnets are measured end to end the same way, each built as `ufo export`
   builds it (the same graph, the backend's own artefact loaded back: see `SUBNETS_BUILT`),
   so the table predicts what is shipped; once all are timed, a chunk whose anchor ran off
   the others' is timed again, until an attempt comes no nearer (`SubnetChunks.recheck`);
   `measured ~ a*sum + b + d*mparams` is fitted on them.
The table is saved after every chunk, so an interrupted run resumes without losing a row;
each run is a new session whose times are scaled to the first by the anchor.
3. `--recalibrate` moves a complete table to another host in minutes: only the validation
   subnets are timed again, that session becomes the reference scale and the calibration
   is refitted (see `recalibrate`).
Measuring against a complete table (`ufo search --verify`, `ufo export`'s re-timing, P1), a
`Profiler` given its reference subnets (`LatencyPredictor.reference_subnets`) times them beside
the anchor in every chunk, so that they outvote an anchor far out of step (`implied_anchor_ms`)
and scale the models of their size (`Profiler.anchor_for`, `matched_anchor_ms`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufo_nas.backends import Backend, Runner, get_backend
from ufo_nas.backends.base import PROFILING_SAMPLES
from ufo_nas.errors import UfoWarning
from ufo_nas.fileio import TMP_MARK, remove_stale_temporaries, temporary_name
from ufo_nas.hardware import HardwareProfile, host_difference, host_fingerprint
from ufo_nas.latency.operator_modules import build_operator, chainable
from ufo_nas.latency.operator_set import Operator, space_operators
from ufo_nas.latency.predictor import LatencyPredictor, check_usable, recipe_difference
from ufo_nas.latency.table import (
    SCHEMA,
    LatencyTable,
    LatencyTableError,
    OperatorRow,
    ReferenceSubnet,
    ValidationRow,
    calibrated_ms,
    fit_calibration,
)
from ufo_nas.latency.timing import (
    MAX_ROUNDS,
    WARM_CALLS,
    WARM_SECONDS,
    Timing,
    cpu_load_ticks,
    cpu_steal_ticks,
    others_percent,
    steal_percent,
    time_interleaved,
)
from ufo_nas.latency.weights import TIMED_WEIGHTS, WEIGHTS_TAG, trained_like_
from ufo_nas.onnx_io import PROFILE_EXPORT, export_for_backend, export_module, external_data
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.supernet import SuperViT, extract

Progress = Callable[[str, int], None]  # (what finished, how many units)
# How the anchor and validation subnets are built (recorded in each session): the artefact
# `ufo export` ships, not a plain compile (on ufo_vit_tiny the two were 6-15% apart).
SUBNETS_BUILT = "as ufo export builds them: the backend's export artefact, loaded back"
NO_EXPORT = "none: the PyTorch module itself"  # the export of a backend that needs no ONNX


@dataclass(frozen=True)
class ProfilePlan:
    operators: list[Operator]  # still to measure
    validation: list[tuple[Arch, tuple[str, ...]]]  # subnets still to measure end to end


@dataclass(frozen=True)
class ProfileSettings:
    validation_subnets: int = 40
    chunk: int = 8  # models per interleaved chunk (besides the anchor)
    rounds: int = 15  # at most; a chunk of slow models gets fewer (chunk_seconds)
    calls_per_round: int = 2  # timed calls of a model per round, after `warm_calls`
    warm_calls: int = WARM_CALLS  # untimed calls of a model at each visit, at most
    chunk_seconds: float | None = 30.0  # timing budget of a chunk; None: always `rounds`
    min_rounds: int = 7
    # a chunk whose `rounds` would take less than this gets as many as fill it, at most
    # `max_rounds` (None: `rounds`): two identical builds of a tiny subnet in one chunk
    # differed by 4.5-6.1% (mean) over 15 rounds, 3.2-4.0% over 60 (`tools/check_rounds.py`)
    fill_seconds: float | None = 10.0
    max_rounds: int = MAX_ROUNDS
    copies: int = 4  # chained copies of each attention / FFN operator
    seed: int = 0
    # a chunk timed while other processes used more than this share of the CPUs (percent
    # of all cores) is timed again, at most `retries` times; the least disturbed is kept
    max_others_percent: float | None = 10.0
    retries: int = 2
    # so is a chunk whose anchor ran more than this fraction off the median anchor of the
    # process's earlier chunks (from its third chunk on): a held-out ORT chunk ran 1.8x slow,
    # anchor and references too, and its subnets unevenly (two 32% and 57% off)
    max_anchor_shift: float | None = 0.3
    # once all are timed, a chunk of subnets (`--verify`'s rows, a table's validation
    # subnets) whose anchor lies more than this off the median over them is timed once more
    # and the attempt nearer that median kept (`Profiler.off_chunks`, `retime_chunk`): the
    # first two chunks have no history for `max_anchor_shift`; two --verify runs' first chunks
    # ran the anchor 7-10% high, their rows up to 15% off; and the shipped tables' validation
    # rows in chunks whose anchor lay over 5% off their session's median missed the tables'
    # fits by 4.35-4.65% (mean), the others by 1.98-2.35%
    recheck_shift: float | None = 0.05
    # at most this many chunks of a profiling session's subnets are timed again, the
    # farthest off first (None: every one), none after an attempt that came no nearer
    # (`Profiler.recheck`): a ViT-Base chunk costs about 1 min 52 s, and P5 with two took
    # 14 min 48 s of its 15 (16 min 16 s on a slower day, neither attempt kept)
    recheck_chunks: int | None = 2

    def orders(self, count: int) -> list[ProfileSettings]:
        """`count` copies of these settings, each with its own order of visits (seeds
        `seed`, `seed + 1`, ...): to time one set of models in several chunks."""
        return [replace(self, seed=self.seed + k) for k in range(count)]

    def time_models(
        self, runners: Mapping[str, Runner], inputs: Mapping[str, np.ndarray]
    ) -> dict[str, Timing]:
        """Time the models interleaved in one chunk with these rounds, calls per round,
        budget and fill: as profiling times a chunk (one attempt, no retries)."""
        return time_interleaved(
            runners,
            inputs,
            self.rounds,
            self.calls_per_round,
            seed=self.seed,
            budget_s=self.chunk_seconds,
            min_rounds=self.min_rounds,
            fill_s=self.fill_seconds,
            max_rounds=self.max_rounds,
            warm_calls=self.warm_calls,
        )


TIMING = (
    f"p25 of interleaved rounds, each visit warm (up to {WARM_CALLS} untimed calls, as many "
    f"as last {WARM_SECONDS * 1e3:g} ms, at least one, before the timed ones), each round's "
    "calls over the host's speed in it (read from all the chunk's models; since 2026-12-07); "
    "scaled by the anchor in the same chunk"
)


def default_work_dir(device: str, space: SearchSpace) -> Path:
    """Where `ufo profile` keeps exported models and tuning databases for a device and
    space (`ufo export` reuses the TVM database found there)."""
    return Path.home() / ".cache" / "ufo-nas" / "profile" / device / space.name


def anchor_subnet(space: SearchSpace) -> tuple[Arch, tuple[str, ...]]:
    """The reference subnet timed in every chunk: the smallest, for the first task."""
    return space.smallest(), (space.tasks[0],)


def validation_subnets(space: SearchSpace, n: int, seed: int) -> list[tuple[Arch, tuple[str, ...]]]:
    """n random (arch, tasks) pairs: mostly one task, every 4th all tasks on one trunk."""
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        arch = space.sample(rng)
        tasks = space.tasks if k % 4 == 3 else (space.tasks[int(rng.integers(len(space.tasks)))],)
        pairs.append((arch, tasks))
    return pairs


# Models timed in a chunk only to fill it (their times are not recorded).
CONTEXT = "context:"


def filling(chunk: list, pool: list, size: int) -> list:
    """The first items of `pool` not in `chunk` that bring it to `size`: a chunk's anchor
    must run beside as many subnets in every chunk. Beside fewer (a short last chunk) a tiny
    anchor ran 16-30% faster on the 2-vCPU Intel host, while the subnets beside it sped up
    less, so the anchor scaled that chunk's times wrongly by up to 15%. (Operator chunks are
    not filled: their models are small, and filling them moved neither the anchor of the
    short chunk nor held-out P1.)"""
    extra: list = []
    for item in pool:
        if len(chunk) + len(extra) >= size:
            break
        if item not in chunk and item not in extra:
            extra.append(item)
    return extra


def plan(space: SearchSpace, table: LatencyTable | None, settings: ProfileSettings) -> ProfilePlan:
    done_ops = set(table.operators) if table else set()
    done_val = {(r.arch, tuple(r.tasks)) for r in table.validation} if table else set()
    ops = [op for op in space_operators(space.spec) if op.key not in done_ops]
    subnets = [
        (arch, tasks)
        for arch, tasks in validation_subnets(space, settings.validation_subnets, settings.seed)
        if (arch.to_string(), tasks) not in done_val
    ]
    return ProfilePlan(ops, subnets)


def new_table(space: SearchSpace, profile: HardwareProfile) -> LatencyTable:
    backend = get_backend(profile.backend)
    arch, tasks = anchor_subnet(space)
    return LatencyTable(
        space=space.name,
        space_fingerprint=space.spec.fingerprint(),
        device=profile.name,
        measured=True,
        provenance={
            "schema": SCHEMA,
            "backend": profile.backend,
            "versions": backend.versions(),
            "device": profile.device,
            "precision": profile.precision,
            "recipe": backend.recipe(profile.target()),
            "threads": profile.threads,
            "batch": profile.batch,
            "host": host_fingerprint(),
            "timing": TIMING,
            "anchor": {"arch": arch.to_string(), "tasks": list(tasks)},
            "sessions": [],
        },
    )


def check_same_timing(
    table: LatencyTable,
    settings: ProfileSettings,
    path: Path,
    joined: tuple[str, ...] = ("operators", "validation subnets"),
) -> None:
    """Refuse to add warm times to `joined` parts of a table timed cold
    (`LatencyTable.cold_timed`), and times of trained-like weights to those timed on init
    weights (`timed_on_init_weights`). A build joins both parts; an added session only the
    validation subnets (a table recalibrated from one timed on init weights keeps those
    operators, and its sessions join)."""
    remedy = (
        "move the table aside to re-measure (or --recalibrate it, which re-times its "
        "validation subnets)"
    )
    cold = [what for what in table.cold_timed() if what in joined]
    if cold and settings.warm_calls:
        raise LatencyTableError(
            f"{path}: its {' and '.join(cold)} were timed cold (one call per visit, before "
            f"2026-12-05), and warm times cannot join them: {remedy}"
        )
    init = [what for what in table.timed_on_init_weights() if what in joined]
    if init:
        raise LatencyTableError(
            f"{path}: its {' and '.join(init)} were timed on freshly initialised weights "
            "(before 2026-12-06), which some backends run at another speed than trained "
            f"ones, and times on trained-like weights cannot join them: {remedy}"
        )


def check_same_setup(table: LatencyTable, profile: HardwareProfile, path: Path) -> None:
    """Refuse to resume (or recalibrate) a table measured with another backend, precision,
    threads or batch, or whose engines were built by another recipe (`recipe_difference`)."""
    differs = recipe_difference(table, profile)
    if differs:
        raise LatencyTableError(
            f"{path} {differs}; its operators cannot be reused: move the table aside to re-measure"
        )
    wanted = {
        "backend": profile.backend,
        "device": profile.device,
        "precision": profile.precision,
        "threads": profile.threads,
        "batch": profile.batch,
    }
    for key, value in wanted.items():
        if table.provenance.get(key) != value:
            raise LatencyTableError(
                f"{path} was measured with {key} {table.provenance.get(key)!r}, but profile "
                f"'{profile.name}' now says {value!r}; move the table aside to re-measure"
            )


def profile_command() -> str:
    """This run's command line as a user would retype it: `ufo-profile ...`, else `ufo
    profile ...` (also under `python -m ufo_nas`, and where argv lost the sub-command)."""
    prog, args = Path(sys.argv[0]).name, sys.argv[1:]
    if prog == "ufo-profile":
        return shlex.join([prog, *args])
    if args[:1] != ["profile"]:
        args = ["profile", *args]
    return shlex.join(["ufo", *args])


def start_session(table: LatencyTable, settings: ProfileSettings, needs_onnx: bool = True) -> int:
    """Record a new measuring session (this process) in the table; its index. `needs_onnx`:
    whether the backend times an ONNX export (else it times the PyTorch module itself)."""
    sessions = table.provenance.setdefault("sessions", [])
    sessions.append(
        {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": profile_command(),
            "rounds": settings.rounds,
            "min_rounds": settings.min_rounds,
            "chunk_seconds": settings.chunk_seconds,
            "fill_seconds": settings.fill_seconds,
            "max_rounds": settings.max_rounds,
            "calls_per_round": settings.calls_per_round,
            "warm_calls": settings.warm_calls,
            "copies": settings.copies,
            "export": PROFILE_EXPORT if needs_onnx else NO_EXPORT,
            "subnets": SUBNETS_BUILT,
            "weights": TIMED_WEIGHTS,
            "steal_percent": [],
            "others_percent": [],
        }
    )
    return len(sessions) - 1


OUT_OF_STEP = 0.15  # how far the anchor may run from what the references imply, relative


def implied_anchor_ms(
    anchor_ms: float, references: Sequence[ReferenceSubnet], reference_ms: Sequence[float]
) -> float:
    """The anchor time that puts a chunk on its table's scale: the anchor's own, unless the
    median of it and what each reference subnet's time implies for it (its time over its
    table time in anchors) lies more than OUT_OF_STEP from it; then that median. One tiny
    model is an unsteady scale: held out on the 2-vCPU Intel host the tiny anchor ran 24-26%
    fast in 3 of 21 ONNX Runtime chunks while the subnets beside it did not. But a reference's
    table time is one subnet's, 2-3% off with the neighbours it was timed beside; used in
    every chunk (the median of three), the references moved a `--verify` run's scale by 1-5%
    and its mean error from 2.3% to 3.9%, so they only outvote an anchor far out of step."""
    implied = [ms / ref.anchors for ref, ms in zip(references, reference_ms, strict=True)]
    median = float(np.median([anchor_ms, *implied]))
    return median if abs(median / anchor_ms - 1) > OUT_OF_STEP else anchor_ms


def matched_anchor_ms(
    anchor_ms: float,
    references: Sequence[ReferenceSubnet],
    reference_ms: Sequence[float],
    anchors: float,
) -> float:
    """The anchor time that puts a model of `anchors` (its predicted time in anchors) on its
    table's scale by the timed models nearest its size: what the anchor (1 anchor) and each
    reference imply for the anchor, interpolated on a log scale of their sizes, held at the
    ends. A state of the host no counter shows (a neighbour on the shared cache, by its look)
    slowed the tiny TVM subnets that serve every task by up to 17% over the minutes in one
    process while the anchor beside them moved 1.5% (`tools/check_tvm_minutes.py`): a large
    model follows a large reference, not the anchor."""
    sizes = np.log([1.0, *(ref.anchors for ref in references)])
    pairs = zip(references, reference_ms, strict=True)
    implied = [anchor_ms, *(ms / ref.anchors for ref, ms in pairs)]
    order = np.argsort(sizes)
    return float(np.interp(np.log(anchors), sizes[order], np.asarray(implied)[order]))


class Profiler:
    """Compiles models with one backend and times them against the anchor (and, measuring
    against a table, its `references`: see `implied_anchor_ms`)."""

    def __init__(
        self,
        space: SearchSpace,
        profile: HardwareProfile,
        work_dir: Path,
        references: Sequence[ReferenceSubnet] = (),
    ):
        self.space, self.profile, self.work_dir = space, profile, work_dir
        self.references = list(references)
        target = profile.target()
        options = {"tuning_dir": str(work_dir), **target.options}  # one TVM database per run
        self.backend = get_backend(profile.backend)(replace(target, options=options))
        spec = space.spec
        self.images = torch.randn(profile.batch, spec.in_chans, spec.image_size, spec.image_size)
        shape = (PROFILING_SAMPLES * profile.batch, spec.in_chans, spec.image_size, spec.image_size)
        self.calibration = torch.randn(shape).numpy()  # what an int8 export calibrates on
        self._supernet: SuperViT | None = None
        self._anchor: tuple[Runner, np.ndarray] | None = None
        self._reference_runners: list[tuple[Runner, np.ndarray]] | None = None
        self._kept: set[str] = set()  # temporaries of the anchor and references, until `close`
        self._temporaries: dict[str, Path] = {}  # subnet folder name -> its temporary
        # per timed chunk: the CPU share other processes used while it was timed (the
        # attempt kept), and the anchor's own time (`time_chunk` returns the implied one)
        self.others_percent: list[float | None] = []
        self.anchor_alone_ms: list[float] = []
        self.anchor_shifts: list[float | None] = []  # per chunk, see `anchor_shift`
        self.anchor_ms: list[float] = []  # per chunk, the anchor time `time_chunk` returned
        self.reference_ms: list[list[float]] = []  # per chunk, each reference's time
        remove_stale_temporaries(work_dir, f"subnet-*{TMP_MARK}*")
        for folder in work_dir.glob("subnet-*") if work_dir.is_dir() else ():
            if TMP_MARK not in folder.name and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # left empty by runs before temporaries had a pid

    def compile(
        self, name: str, module: torch.nn.Module, example: torch.Tensor, folder: Path | None = None
    ) -> Runner:
        folder = folder or self.work_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        onnx_path = folder / "model.onnx"
        if self.backend.needs_onnx and not onnx_path.is_file():
            export_module(module, example, onnx_path)
        return self.backend.compile(module, onnx_path, folder)

    def compile_operator(self, op: Operator, copies: int) -> tuple[Runner, np.ndarray]:
        module, example = build_operator(self.space.spec, op, self.profile.batch, copies)
        name = f"op-{op.key}-x{copies}-{WEIGHTS_TAG}"
        return self.compile(name, module, example), example.numpy()

    def subnet(self, arch: Arch, tasks: tuple[str, ...]) -> torch.nn.Module:
        """The subnet of a randomly initialised supernet, noised as a trained one
        (`trained_like_`: latency needs no trained weights, only no exact zeros or ones)."""
        if self._supernet is None:
            self._supernet = trained_like_(SuperViT(self.space.spec)).eval()
        return extract(self._supernet, arch, tasks)

    def compile_subnet(self, arch: Arch, tasks: tuple[str, ...]) -> tuple[Runner, np.ndarray]:
        """The subnet as `ufo export` builds it (`load_artefact`), in its kept folder
        `subnet-<hash>` if an earlier run left build artefacts there, else in a temporary
        one (see `release`)."""
        key = f"{self.space.name}|{arch.to_string()}|{','.join(tasks)}|{TIMED_WEIGHTS}".encode()
        name = f"subnet-{hashlib.sha1(key).hexdigest()[:12]}"
        folder = self.work_dir / name
        if not folder.is_dir():
            folder = self._temporaries[name] = self.work_dir / temporary_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        subnet, onnx_path = self.subnet(arch, tasks), folder / "model.onnx"
        if self.backend.needs_onnx:
            export_for_backend(subnet, onnx_path, self.profile.batch)
        return self.load_artefact(subnet, onnx_path, folder), self.images.numpy()

    def load_artefact(self, module: torch.nn.Module, onnx_path: Path, folder: Path) -> Runner:
        """The backend's export artefact of `onnx_path`, built in `folder` and loaded back
        as `ufo export` does (a plain compile for a backend without one); its files and the
        ONNX graph are removed once loaded (the runner holds the model)."""
        files: list[Path] = []
        if type(self.backend).export is Backend.export:
            runner = self.backend.compile(module, onnx_path, folder)
        else:
            exported = self.backend.export(onnx_path, folder, self.calibration)
            runner, files = exported.runner, exported.files
        for built in (onnx_path, external_data(onnx_path), *files):
            built.unlink(missing_ok=True)
        return runner

    def release(self) -> None:
        """Keep the temporary subnet folders holding build artefacts (engines) as
        `subnet-<hash>`, remove the empty ones; the anchor's and references' stay until
        `close`."""
        for name, folder in list(self._temporaries.items()):
            if name in self._kept:
                continue
            del self._temporaries[name]
            if folder.is_dir() and any(folder.iterdir()) and not (self.work_dir / name).exists():
                os.replace(folder, self.work_dir / name)
            else:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Release every temporary folder, the anchor's and references' included."""
        self._kept.clear()
        self.release()

    def _kept_subnet(self, arch: Arch, tasks: tuple[str, ...]) -> tuple[Runner, np.ndarray]:
        before = set(self._temporaries)
        compiled = self.compile_subnet(arch, tasks)
        self._kept |= set(self._temporaries) - before
        return compiled

    def anchor(self) -> tuple[Runner, np.ndarray]:
        if self._anchor is None:
            self._anchor = self._kept_subnet(*anchor_subnet(self.space))
        return self._anchor

    def scale_models(self, tag: str = "") -> dict[str, tuple[Runner, np.ndarray]]:
        """The anchor and the references, named with `tag`, to time beside a chunk's models
        (their times go to `pop_anchor_ms`)."""
        if self._reference_runners is None:
            self._reference_runners = [
                self._kept_subnet(self.space.parse(ref.arch), ref.tasks) for ref in self.references
            ]
        models = {f"__anchor__{tag}": self.anchor()}
        for k, compiled in enumerate(self._reference_runners):
            models[f"__reference-{k}__{tag}"] = compiled
        return models

    def pop_anchor_ms(self, timings: dict[str, Timing], tag: str = "") -> float:
        """Take the anchor's and references' timings (`scale_models`) out of a chunk's, log
        them, and return the anchor time that puts the chunk on the table's scale."""
        anchor_ms = timings.pop(f"__anchor__{tag}").ms
        reference_ms = [
            timings.pop(f"__reference-{k}__{tag}").ms for k in range(len(self.references))
        ]
        self.anchor_alone_ms.append(anchor_ms)
        self.reference_ms.append(reference_ms)
        self.anchor_ms.append(implied_anchor_ms(anchor_ms, self.references, reference_ms))
        return self.anchor_ms[-1]

    def anchor_for(self, anchors: float, chunk: int = -1) -> float:
        """The anchor time that puts a model of `anchors` (its predicted time in anchors),
        timed in chunk `chunk`, on the table's scale: what that chunk's anchor (outvoted where
        far out of step) and references imply for a model of its size
        (`matched_anchor_ms`)."""
        return matched_anchor_ms(
            self.anchor_ms[chunk], self.references, self.reference_ms[chunk], anchors
        )

    def time_chunk(
        self, models: dict[str, tuple[Runner, np.ndarray]], settings: ProfileSettings
    ) -> tuple[dict, float, float | None]:
        """Timings of the chunk's models, the anchor's ms (implied by it and the references,
        where there are any: `implied_anchor_ms`), and the steal percent. A chunk
        timed while other processes used more than `settings.max_others_percent` of the
        CPUs, or whose anchor ran more than `settings.max_anchor_shift` off the median of
        the earlier chunks' (`anchor_shift`), is timed again (at most `settings.retries`
        times) and the least disturbed attempt kept; its share of other processes lands in
        `self.others_percent`, its anchor's shift in `self.anchor_shifts`."""
        runners = {name: runner for name, (runner, _) in models.items()}
        inputs = {name: x for name, (_, x) in models.items()}
        for name, (runner, x) in self.scale_models().items():
            runners[name], inputs[name] = runner, x
        attempts = []
        for _ in range(settings.retries + 1):
            before, load = cpu_steal_ticks(), cpu_load_ticks()
            timings = settings.time_models(runners, inputs)
            steal = steal_percent(before, cpu_steal_ticks())
            others = others_percent(load, cpu_load_ticks())
            shift = self.anchor_shift(timings["__anchor__"].ms)
            loaded = _beyond(others, settings.max_others_percent)
            shifted = _beyond(shift, settings.max_anchor_shift)
            # fewest limits broken, then the smaller shift beyond its limit, then less load
            rank = (loaded + shifted, shift if shifted else 0.0, others or 0.0)
            attempts.append((rank, timings, steal, others, shift))
            if not loaded and not shifted:
                break
        _, timings, steal, others, shift = min(attempts, key=lambda attempt: attempt[0])
        self.others_percent.append(None if others is None else round(others, 1))
        self.anchor_shifts.append(shift)
        return timings, self.pop_anchor_ms(timings), steal

    def off_chunks(self, limit: float | None) -> list[int]:
        """The chunks whose anchor, as it and the references put it (`anchor_ms`: the scale
        its models are put on), lies more than `limit` (relative) off the median over all
        this process's chunks, farthest first; none for a `limit` of None or fewer than three
        chunks. Judged by the anchor alone until 2026-12-07, a `--verify` chunk whose
        references ran 18-19% slow over its anchor, its anchor 2.9% off the run's median, was
        put on the references' scale (outvoted: `implied_anchor_ms`) and let be: its eight
        rows landed 11-17% off, the other 39 within 8.3%."""
        if limit is None or len(self.anchor_ms) < 3:
            return []
        shifts = [_shift(ms, self.anchor_ms) for ms in self.anchor_ms]
        return sorted((k for k, s in enumerate(shifts) if s > limit), key=lambda k: -shifts[k])

    def recheck(
        self,
        settings: ProfileSettings,
        models_of: Callable[[int], dict[str, tuple[Runner, np.ndarray]]],
        among: Container[int] | None = None,
        most: int | None = None,
    ) -> Iterator[tuple[int, dict[str, Any], tuple[dict, float, float | None] | None]]:
        """Once a run's chunks are timed, each that `off_chunks(settings.recheck_shift)`
        names (of `among`, the `most` farthest off; default all) timed again with
        `models_of(chunk)` (`retime_chunk`), its models released after: (the chunk, its record
        {chunk, first_anchor_ms, kept: "first" or "again"}, `retime_chunk`'s result). The
        first attempt that comes no nearer the median ends the re-check: the host runs as it
        ran then (a P5 run that slowed for good re-timed its last two chunks in 3 min 10 s
        and kept neither)."""
        off = [k for k in self.off_chunks(settings.recheck_shift) if among is None or k in among]
        for k in off[:most]:
            first_ms = self.anchor_ms[k]
            result = self.retime_chunk(k, models_of(k), settings)
            self.release()
            kept = "first" if result is None else "again"
            yield k, {"chunk": k, "first_anchor_ms": first_ms, "kept": kept}, result
            if result is None:
                return

    def retime_chunk(
        self, chunk: int, models: dict[str, tuple[Runner, np.ndarray]], settings: ProfileSettings
    ) -> tuple[dict, float, float | None] | None:
        """Time chunk `chunk`'s `models` again (`time_chunk`) once the run's other chunks
        are timed: where the new anchor (`anchor_ms`, as it and the references put it) lies
        nearer the median over the run's chunks, the new attempt replaces the chunk's record
        (its anchor, references, shift, load) and `time_chunk`'s result is returned; else
        the chunk stays as it was: None."""
        run = list(self.anchor_ms)
        result = self.time_chunk(models, settings)
        again = [record.pop() for record in self._chunk_records()]
        _, anchor_ms, *_ = again
        if _shift(run[chunk], run) <= _shift(anchor_ms, run):
            return None
        for record, value in zip(self._chunk_records(), again):
            record[chunk] = value
        return result

    def _chunk_records(self) -> tuple[list, ...]:
        """The per-chunk lists, `anchor_alone_ms` and `anchor_ms` first."""
        return (
            self.anchor_alone_ms,
            self.anchor_ms,
            self.reference_ms,
            self.anchor_shifts,
            self.others_percent,
        )

    def anchor_shift(self, anchor_ms: float) -> float | None:
        """How far an anchor time lies from the median of the anchor's own times in this
        process's earlier chunks, relative; None before its third chunk."""
        if len(self.anchor_alone_ms) < 2:
            return None
        return _shift(anchor_ms, self.anchor_alone_ms)


def _shift(ms: float, times: Sequence[float]) -> float:
    """How far `ms` lies from the median of `times`, relative."""
    return abs(ms / float(np.median(times)) - 1)


def _beyond(value: float | None, limit: float | None) -> bool:
    return limit is not None and value is not None and value > limit


def run_profile(
    space: SearchSpace,
    profile: HardwareProfile,
    out_path: Path,
    work_dir: Path,
    settings: ProfileSettings,
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure what the table at `out_path` still lacks; save after every chunk."""
    table = LatencyTable.load(out_path, space) if out_path.exists() else None
    if table is not None and (table.device != profile.name or not table.measured):
        raise LatencyTableError(
            f"{out_path} holds a table of device '{table.device}'"
            f"{'' if table.measured else ' (an estimate)'}, not a measured '{profile.name}' table"
        )
    if table is not None:
        check_same_setup(table, profile, out_path)
    profiler = Profiler(space, profile, work_dir)  # fails first if the backend cannot run
    try:
        return _measure(space, profile, out_path, settings, table, profiler, progress)
    finally:
        profiler.close()


def _measure(
    space: SearchSpace,
    profile: HardwareProfile,
    out_path: Path,
    settings: ProfileSettings,
    table: LatencyTable | None,
    profiler: Profiler,
    progress: Progress | None,
) -> LatencyTable:
    """`run_profile`'s measuring, with its profiler."""
    todo = plan(space, table, settings)
    table = table or new_table(space, profile)
    step = progress or (lambda what, n: None)
    if not todo.operators and not todo.validation:
        calibrate(space, table)
        table.save(out_path)
        return table
    check_same_timing(table, settings, out_path)
    session = start_session(table, settings, profiler.backend.needs_onnx)
    record = table.provenance["sessions"][session]
    steal, others = record["steal_percent"], record["others_percent"]

    ops = todo.operators
    for start in range(0, len(ops), settings.chunk):
        chunk = ops[start : start + settings.chunk]
        copies = {op.key: settings.copies if chainable(op) else 1 for op in chunk}
        # built in the call, so the chunk's models are freed before the next chunk's are built
        timings, anchor_ms, stolen = profiler.time_chunk(
            {op.key: profiler.compile_operator(op, copies[op.key]) for op in chunk}, settings
        )
        for op in chunk:
            t, n = timings[op.key], copies[op.key]
            table.operators[op.key] = OperatorRow(
                op.key, t.ms / n, t.median_ms / n, t.spread, anchor_ms, session, n
            )
        steal.append(stolen)
        others.append(profiler.others_percent[-1])
        table.save(out_path)
        step("operators", len(chunk))

    subnets = SubnetChunks(profiler, todo.validation, settings, session, progress)
    for rows, stolen in subnets:
        table.validation += rows
        steal.append(stolen)
        others.append(profiler.others_percent[-1])
        table.save(out_path)
        step("subnets", len(rows))
    subnets.recheck(record)

    calibrate(space, table)
    table.save(out_path)
    warn_if_disturbed(profiler, settings, out_path)
    return table


def warn_if_disturbed(profiler: Profiler, settings: ProfileSettings, path: Path) -> None:
    """One UfoWarning if chunks were kept although other processes used more of the CPUs
    than `settings.max_others_percent` while every attempt at them was timed, one if
    chunks were kept with their anchor beyond `settings.max_anchor_shift` in every attempt."""
    tries = f"each timed {settings.retries + 1} times"
    limit = settings.max_others_percent
    shares = [share for share in profiler.others_percent if share is not None]
    if limit is not None and shares and max(shares) > limit:
        disturbed = sum(share > limit for share in shares)
        warnings.warn(
            f"{path}: {disturbed} of {len(shares)} chunks were timed while other processes used "
            f"up to {max(shares):.0f}% of the CPUs (limit {limit:g}%, {tries}); its times may "
            "be off: measure it again on a quiet machine",
            UfoWarning,
            stacklevel=2,
        )
    shifts = [shift for shift in profiler.anchor_shifts if shift is not None]
    shifted = sum(_beyond(shift, settings.max_anchor_shift) for shift in shifts)
    if shifted:
        warnings.warn(
            f"{path}: {shifted} of {len(profiler.anchor_shifts)} chunks kept an anchor up to "
            f"{100 * max(shifts):.0f}% off its median in the run (limit "
            f"{100 * settings.max_anchor_shift:g}%, {tries}); its times may be off: measure "
            "it again on a quiet machine",
            UfoWarning,
            stacklevel=2,
        )


class SubnetChunks:
    """Subnets timed end to end in chunks with the anchor (a short chunk filled with others,
    `filling`) into a session's validation rows; once all are timed, `recheck` times again
    each chunk whose anchor ran off the others'. `progress` hears what each step does
    ("building subnet 3 of 8", "timing chunk 2 of 5", ...: 0 units, the bar's count stays)."""

    def __init__(
        self,
        profiler: Profiler,
        subnets: list[tuple[Arch, tuple[str, ...]]],
        settings: ProfileSettings,
        session: int,
        progress: Progress | None = None,
    ):
        self.profiler, self.subnets = profiler, subnets
        self.settings, self.session = settings, session
        self.say = (lambda what: progress(what, 0)) if progress else (lambda what: None)
        space = profiler.space
        self.pool = subnets + validation_subnets(space, settings.validation_subnets, settings.seed)
        # the profiler's index of each chunk timed: its subnets and their rows
        self.timed: dict[int, tuple[list, list[ValidationRow]]] = {}

    def __iter__(self) -> Iterator[tuple[list[ValidationRow], float | None]]:
        """Each chunk's validation rows and steal percent, as it is timed."""
        starts = range(0, len(self.subnets), self.settings.chunk)
        for c, start in enumerate(starts):
            chunk = self.subnets[start : start + self.settings.chunk]
            # built in the call, so this chunk's models are freed before the next chunk's are
            # built: a ViT-Base OpenVINO recalibration peaked at 21 GB holding two chunks
            timings, anchor_ms, stolen = self.profiler.time_chunk(
                self._models(chunk, f"timing chunk {c + 1} of {len(starts)}"), self.settings
            )
            self.profiler.release()
            rows = [
                ValidationRow(arch.to_string(), list(tasks), ms, anchor_ms, self.session)
                for (arch, tasks), ms in zip(chunk, self._ms(timings, chunk), strict=True)
            ]
            self.timed[len(self.profiler.anchor_alone_ms) - 1] = (chunk, rows)
            yield rows, stolen

    def recheck(self, record: dict[str, Any]) -> None:
        """Time again each of these chunks whose anchor lies more than the settings'
        `recheck_shift` off the median over the process's chunks (`Profiler.off_chunks`;
        operator chunks are not timed again), the `recheck_chunks` farthest off; where the
        new attempt's anchor lies nearer it, the chunk's rows take its times in place, and
        the session `record` its steal and load. The record lists each chunk timed again
        (`timed_again`: its index among the session's chunks, the first attempt's anchor ms
        and rows' ms, the attempt kept: what the table would hold without the re-check)."""

        def models_of(k: int) -> dict[str, tuple[Runner, np.ndarray]]:
            place = list(self.timed).index(k) + 1  # among these chunks, as `__iter__` counts
            return self._models(self.timed[k][0], f"timing chunk {place} again")

        again = []
        most = self.settings.recheck_chunks
        for k, timed, result in self.profiler.recheck(self.settings, models_of, self.timed, most):
            chunk, rows = self.timed[k]
            again.append(timed | {"first_ms": [row.measured_ms for row in rows]})
            if result is None:
                continue
            timings, anchor_ms, record["steal_percent"][k] = result
            record["others_percent"][k] = self.profiler.others_percent[k]
            for row, ms in zip(rows, self._ms(timings, chunk), strict=True):
                row.measured_ms, row.anchor_ms = ms, anchor_ms
        record["timed_again"] = again

    def _models(self, chunk: list, then: str) -> dict[str, tuple[Runner, np.ndarray]]:
        """The chunk's subnets (and those filling it) built, named as `_ms` reads them, the
        anchor and references too; `then` is said once they are."""
        pairs = [*chunk, *filling(chunk, self.pool, self.settings.chunk)]
        models = {}
        for k, pair in enumerate(pairs):
            self.say(f"building subnet {k + 1} of {len(pairs)}")
            name = f"subnet-{k}" if k < len(chunk) else f"{CONTEXT}{k - len(chunk)}"
            models[name] = self.profiler.compile_subnet(*pair)
        if not self.timed:  # the first chunk: the anchor and references are built with it
            self.say("building the anchor and references")
            self.profiler.scale_models()
        self.say(then)
        return models

    @staticmethod
    def _ms(timings: dict, chunk: list) -> list[float]:
        return [timings[f"subnet-{k}"].ms for k in range(len(chunk))]


def recalibrate(
    space: SearchSpace,
    profile: HardwareProfile,
    path: Path,
    work_dir: Path,
    settings: ProfileSettings,
    progress: Progress | None = None,
    add_session: bool = False,
    source: Path | None = None,
) -> LatencyTable:
    """Move a complete table (at `source`, else at `path`) to this host, written to `path`,
    without re-measuring its operators: time its validation subnets (the first
    `settings.validation_subnets` of them) again here (a new session, which becomes the
    reference scale, so the operators follow by the anchor's ratio between the hosts), refit
    the calibration on them and record this host. With `add_session` the table must describe
    this host already: the new times join those of earlier sessions and each subnet is
    fitted at its median over them, so one process's drift weighs less. `path` is replaced
    only at the end (a kill leaves it as it was). Returns the table; its last session
    records the replaced host and metrics."""
    source = source or path
    table = LatencyTable.load(source, space)
    what = "add a session to" if add_session else "recalibrate"
    if not table.measured:
        raise LatencyTableError(f"{source} is a roofline estimate; nothing to {what}")
    check_usable(space, table, source)
    check_same_setup(table, profile, source)
    if add_session:
        differs = host_difference(table.provenance.get("host") or {}, host_fingerprint())
        if differs:
            raise LatencyTableError(
                f"{source} describes another host ({differs}); --add-session only joins times "
                "of the host a table describes: run --recalibrate first"
            )
        check_same_timing(table, settings, source, joined=("validation subnets",))
    kept = table.validation_times()[: settings.validation_subnets]  # fewer: faster, looser
    pairs = [(space.parse(arch), tasks) for arch, tasks, _ in kept]
    old = LatencyPredictor(space, table)
    predicted = np.array([old.latency_ms([arch], tasks)[0] for arch, tasks in pairs])
    before = {"host": table.provenance.get("host"), "metrics": dict(table.metrics)}
    profiler = Profiler(space, profile, work_dir)  # fails first if the backend cannot run
    try:
        session = start_session(table, settings, profiler.backend.needs_onnx)
        record = table.provenance["sessions"][session]
        kind = "added session" if add_session else "recalibration"
        record.update(kind=kind, host=host_fingerprint(), replaced=before)
        rows: list[ValidationRow] = []
        subnets = SubnetChunks(profiler, pairs, settings, session, progress)
        for chunk, stolen in subnets:
            rows += chunk
            record["steal_percent"].append(stolen)
            record["others_percent"].append(profiler.others_percent[-1])
            if progress:
                progress("subnets", len(chunk))
        subnets.recheck(record)
    finally:
        profiler.close()
    if add_session:  # the reference scale stays the session that timed the operators here
        keep = {(arch.to_string(), tasks) for arch, tasks in pairs}
        table.validation = [
            *(r for r in table.validation if (r.arch, tuple(r.tasks)) in keep),
            *rows,
        ]
    else:
        table.validation = rows
        table.provenance["reference_session"] = session
        table.provenance["host"] = record["host"]
    measured = LatencyPredictor(space, table).calibration_data()[1]
    record["before_here"] = error_metrics(predicted, measured)  # the old table, on this host
    calibrate(space, table)
    table.save(path)
    warn_if_disturbed(profiler, settings, path)
    return table


def refit(space: SearchSpace, table: LatencyTable, path: Path) -> dict:
    """Refit a complete table (read from `path`) on its own validation subnets, without
    timing anything (a table fitted before a calibration form was added gains it), and save
    it there; the provenance records the refit and the calibration it replaced. Returns the
    metrics before."""
    if not table.measured:
        raise LatencyTableError(f"{path} is a roofline estimate; nothing to refit")
    check_usable(space, table, path)
    before = {"calibration": dict(table.calibration), "metrics": dict(table.metrics)}
    calibrate(space, table)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table.provenance.setdefault("refits", []).append({"date": date, "replaced": before})
    table.save(path)
    return before["metrics"]


def calibrate(space: SearchSpace, table: LatencyTable) -> None:
    """Fit the calibration on the validation subnets and record its in-sample errors."""
    if not table.validation:
        return
    x, measured = LatencyPredictor(space, table).calibration_data()
    table.calibration = fit_calibration(x, measured)
    predicted = calibrated_ms(table.calibration, x)
    table.metrics = {
        "validation_subnets": len(measured),
        **error_metrics(predicted, measured),
        "uncalibrated_mean_abs_pct_error": round(
            100 * float((np.abs(x.sum_ms - measured) / measured).mean()), 3
        ),
    }


def error_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Mean absolute percent error and the fractions within 5% and 10% of `measured`."""
    error = np.abs(predicted - measured) / measured
    return {
        "mean_abs_pct_error": round(100 * float(error.mean()), 3),
        "within_5pct": round(float((error <= 0.05).mean()), 4),
        "within_10pct": round(float((error <= 0.10).mean()), 4),
    }
