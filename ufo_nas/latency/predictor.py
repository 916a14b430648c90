"""Vectorised latency prediction from a table: sum of operators, then calibration."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ufo_nas.backends import BackendError, get_backend
from ufo_nas.cost import CostModel, LayerStructure
from ufo_nas.errors import UfoError, UfoWarning
from ufo_nas.hardware import (
    HardwareProfile,
    host_difference,
    host_fingerprint,
    host_id,
    load_profile,
    runs_here,
)
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.table import (
    REFERENCES,
    TERMS,
    LatencyTable,
    LatencyTableError,
    ReferenceSubnet,
    Regressors,
    calibrated_ms,
    coefficients,
    fit_calibration,
    form_families,
    host_table_path,
    host_table_paths,
    table_path,
)
from ufo_nas.space import Arch, SearchSpace

LOCAL_ROWS = 4  # validation rows a reference's table time is taken over (`references_of`)


class LatencyPredictor:
    """latency_ms(archs, tasks) of one space on one device; `measured` says whether the
    table was measured or is a roofline estimate."""

    def __init__(self, space: SearchSpace, table: LatencyTable):
        if table.space_fingerprint != space.spec.fingerprint():
            raise LatencyTableError(
                f"latency table of {table.device} is for space '{table.space}', not '{space.name}'"
            )
        self.space, self.table = space, table
        self.cost = CostModel(space)
        s = space.spec
        heads = sorted({h for layer in s.num_heads for h in layer})
        hidden = sorted({s.hidden_dim(r) for layer in s.mlp_ratios for r in layer})
        self._heads, self._hidden = np.array(heads), np.array(hidden)
        self._attn = np.array([table.op_ms(f"attn.h{h}") for h in heads])
        self._ffn = {  # mixed (two-stream) FFN operators only where the table has them
            arity: np.array([table.op_ms(f"ffn.m{m}.x{arity}") for m in hidden])
            for arity in (1, 2)
            if arity == 1 or f"ffn.m{hidden[0]}.x{arity}" in table.operators
        }
        self._head = {
            t: table.op_ms(f"head.{t}") for t in s.task_names if f"head.{t}" in table.operators
        }
        self._stem = table.op_ms("stem")

    @property
    def measured(self) -> bool:
        return self.table.measured

    @property
    def source(self) -> str:
        """Where the numbers come from, in one line: says ESTIMATE when not measured."""
        table = self.table
        if not self.measured:
            return (
                "ESTIMATE: roofline from published peaks, a LOWER BOUND (the device's full "
                "peak compute and bandwidth); no measured table"
            )
        m, host, cold = table.metrics, table.provenance.get("host"), table.cold_timed()
        init = table.timed_on_init_weights()
        return (
            f"measured table ({table.provenance.get('backend')}, "
            f"{m.get('mean_abs_pct_error', float('nan')):.1f}% mean error on "
            f"{m.get('validation_subnets', 0)} subnets"
            + (f", host {host_id(host)}" if host else "")
            + (f"; {' and '.join(cold)} timed cold: slower than a warm engine" if cold else "")
            + (
                f"; {' and '.join(init)} timed on init weights: a trained model may run at "
                "another speed"
                if init
                else ""
            )
            + ")"
        )

    def sum_ms(self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]) -> np.ndarray:
        """Uncalibrated sum of operator times of each subnet."""
        return self.sum_parts(archs, tasks).sum(axis=1)

    def sum_parts(
        self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]
    ) -> np.ndarray:
        """The uncalibrated sum of each subnet split by operator kind: (n, 3) columns of
        attention, FFN, and stem plus heads; each row sums to `sum_ms`."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        return self._parts(self.cost.structure(archs, tasks), tasks)

    def _parts(self, layers: LayerStructure, tasks: tuple[str, ...]) -> np.ndarray:
        attn = self._attn[np.searchsorted(self._heads, layers.heads)] * layers.streams_in
        hidden = np.searchsorted(self._hidden, layers.hidden)
        ffn = layers.single * self._ffn[1][hidden]
        if layers.mixed.any():
            if 2 not in self._ffn:
                raise LatencyTableError(f"the {self.table.device} table has no mixed-FFN operators")
            ffn = ffn + layers.mixed * self._ffn[2][hidden]
        missing = [t for t in tasks if t not in self._head]
        if missing:
            raise LatencyTableError(f"the {self.table.device} table has no head for '{missing[0]}'")
        fixed = self._stem + sum(self._head[t] for t in tasks)
        attn_ms, ffn_ms = (attn * layers.active).sum(axis=1), (ffn * layers.active).sum(axis=1)
        return np.stack([attn_ms, ffn_ms, np.full_like(attn_ms, fixed)], axis=1)

    def latency_ms(
        self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]
    ) -> np.ndarray:
        """Calibrated end-to-end latency (ms) of each subnet."""
        return calibrated_ms(self.table.calibration, self.regressors(archs, tasks))

    def regressors(
        self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]
    ) -> Regressors:
        """What the calibration predicts each subnet's time from (see `Regressors`)."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        layers = self.cost.structure(archs, tasks)
        return Regressors(
            self._parts(layers, tasks).sum(axis=1),
            layers.active.sum(axis=1).astype(float),
            self.cost.params_of(layers, tasks) / 1e6,
        )

    def calibration_data(self) -> tuple[Regressors, np.ndarray]:
        """(regressors, measured ms on the reference scale) of the table's validation
        subnets, in `validation_times` order: what the calibration is fitted on."""
        times = self.table.validation_times()
        x = [self.regressors([self.space.parse(arch)], tasks) for arch, tasks, _ in times]
        return Regressors.stack(x), np.array([ms for _, _, ms in times])

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """(measured, predicted) ms of the table's validation subnets (in-sample: the
        calibration is fitted on them); measured times on the table's reference scale."""
        times = self.table.validation_times()
        measured = np.array([ms for _, _, ms in times])
        predicted = np.array(
            [self.latency_ms([self.space.parse(arch)], tasks)[0] for arch, tasks, _ in times]
        )
        return measured, predicted

    def reference_subnets(self, count: int = REFERENCES) -> list[ReferenceSubnet]:
        """The table's `reference_pairs` with their times (`references_of`)."""
        return self.references_of(self.table.reference_pairs(count))

    def references_of(self, pairs: list[tuple[str, tuple[str, ...]]]) -> list[ReferenceSubnet]:
        """These validation subnets (arch, tasks) as references, each with its time on the
        table's scale in anchors: its fitted time times the median ratio of measured to
        fitted time over the LOCAL_ROWS validation subnets serving as many tasks nearest its
        size, itself among them; none where one is not among the validation subnets. Its
        own row is one timing in one chunk: in three ViT-Base builds the every-task
        reference's row lay 4-8% above the time so taken, and the subnets of its size
        measured against those tables inherited that offset (held out, 0-36% of them within
        5%; taken so, 100%: `tools/bench_reference_times.py`)."""
        times = self.table.validation_times()
        index = {(arch, tasks): k for k, (arch, tasks, _) in enumerate(times)}
        if not pairs or any(pair not in index for pair in pairs):
            return []
        measured, predicted = self.validation()
        ratio, size = measured / predicted, np.log(predicted)
        kinds = np.array([len(tasks) for _, tasks, _ in times])
        anchor = self.table.reference_anchor_ms
        references = []
        for arch, tasks in pairs:
            k = index[arch, tasks]
            kind = np.flatnonzero(kinds == kinds[k])
            near = kind[np.argsort(np.abs(size[kind] - size[k]), kind="stable")[:LOCAL_ROWS]]
            ms = predicted[k] * float(np.median(ratio[near]))
            references.append(ReferenceSubnet(arch, tasks, ms / anchor))
        return references


_PREDICTORS: dict[tuple[str, str], LatencyPredictor] = {}  # by (space fingerprint, device)


def _runs_here(device: str) -> bool:
    try:
        return runs_here(load_profile(device))
    except UfoError:  # a table without its profile: nothing says where it runs
        return False


def table_for_this_host(space: SearchSpace, device: str) -> Path:
    """The table a prediction for `device` reads: where the device is this machine's CPU,
    the first of its tables (`host_table_paths`) measured on this host; else (none is, or
    the device runs elsewhere) the reference table, which may not exist."""
    return _find_table(space, device)[0]


def load_table_for_this_host(space: SearchSpace, device: str) -> tuple[Path, LatencyTable | None]:
    """`table_for_this_host` and the table there (None where no file is)."""
    path, table = _find_table(space, device)
    return path, table or (LatencyTable.load(path, space) if path.is_file() else None)


def _find_table(space: SearchSpace, device: str) -> tuple[Path, LatencyTable | None]:
    """`table_for_this_host`, with the table where choosing it read it."""
    if not _runs_here(device):
        return table_path(device, space), None
    paths = host_table_paths(device, space)
    if len(paths) < 2:
        return (paths[0] if paths else table_path(device, space)), None
    for path in paths:
        table = LatencyTable.load(path, space)
        if describes_this_host(table):
            return path, table
    return paths[0], None


def describes_this_host(table: LatencyTable) -> bool:
    """Whether the table was measured on this host (or records no host)."""
    recorded = table.provenance.get("host")
    return not recorded or host_difference(recorded, host_fingerprint()) is None


def new_table_path_for_this_host(space: SearchSpace, device: str) -> Path:
    """Where a table of the device measured on this host goes beside one of another host."""
    return host_table_path(device, space, host_id(host_fingerprint()))


def _table(space: SearchSpace, device: str) -> LatencyTable:
    from ufo_nas.latency.roofline import roofline_table

    path, table = load_table_for_this_host(space, device)
    if table is not None:
        check_usable(space, table, path)
        warn_other_host(table, path)
        warn_other_recipe(table, path)
        return table
    return roofline_table(space, load_profile(device))


def _resume(table: LatencyTable, space: SearchSpace) -> str:
    return f"`ufo-profile --device {table.device} --space {space.name}` resumes it"


def check_usable(space: SearchSpace, table: LatencyTable, path: Path) -> None:
    """Refuse, for prediction, a measured table that is incomplete: an operator of the
    space missing, no calibration yet, or a calibration not fitted on its own validation
    rows (the file was cut or edited). Resuming a profile loads such tables."""
    if not table.measured:
        return
    ops = [op.key for op in space_operators(space.spec)]
    missing = [key for key in ops if key not in table.operators]
    if missing:
        raise LatencyTableError(
            f"{path} is incomplete: {len(missing)} of {len(ops)} operators not measured "
            f"(first: {missing[0]}); {_resume(table, space)}"
        )
    cal, rows = table.calibration, table.validation
    if "model" not in cal:
        raise LatencyTableError(
            f"{path} is incomplete: no calibration yet ({len(rows)} validation subnets "
            f"measured); {_resume(table, space)}"
        )
    fitted_on, held = table.metrics.get("validation_subnets"), len(table.validation_times())
    if fitted_on != held:
        raise LatencyTableError(
            f"{path} is inconsistent: its calibration was fitted on {fitted_on} validation "
            f"subnets but it holds {held}; {_resume(table, space)}"
        )
    x, measured = LatencyPredictor(space, table).calibration_data()
    refits = [fit_calibration(x, measured, forms) for forms in form_families(cal["model"])]
    if not any(_same_fit(cal, refit, float(np.mean(measured))) for refit in refits):
        shown = sorted({*coefficients(cal["model"]), *coefficients(refits[0]["model"])})
        stored, again = (
            ", ".join(f"{k}={c.get(k, 0.0):.6g}" for k in shown) for c in (cal, refits[0])
        )
        raise LatencyTableError(
            f"{path} is inconsistent: its calibration ({stored}) is not the fit of its "
            f"{held} validation subnets ({again}); {_resume(table, space)}"
        )


def _same_fit(stored: dict, refit: dict, scale: float) -> bool:
    """Whether a stored calibration is `refit` (a coefficient it lacks is 0), up to the
    rounding of a saved file."""
    return refit["model"] == stored["model"] and all(
        np.isclose(stored.get(k, 0.0), refit[k], rtol=1e-6, atol=1e-9 * scale)
        for k in TERMS.values()
    )


def warn_other_host(table: LatencyTable, path: Path) -> None:
    """Warn (UfoWarning) when a measured table of a device that is this machine's CPU was
    measured on another host: its times do not describe this one."""
    if not table.measured or "host" not in table.provenance or not _runs_here(table.device):
        return
    differs = host_difference(table.provenance["host"], host_fingerprint())
    if differs:
        profile = load_profile(table.device)
        unrunnable = why_not_runnable(profile)
        other_recipe = None if unrunnable else recipe_difference(table, profile)
        if unrunnable:
            remedy = (
                f"this host cannot re-time it ({unrunnable}), so it predicts that host, not "
                "this one"
            )
        elif other_recipe:  # e.g. ONNX Runtime int8 of a VNNI host read on one without
            remedy = (
                f"--recalibrate cannot move it here: it {other_recipe} on this host; measure "
                f"one for this host: `ufo-profile --device {table.device} --space "
                f"{table.space}` (writes it beside this one)"
            )
        else:
            remedy = (
                f"move it to this host in minutes: `ufo-profile --device {table.device} "
                f"--space {table.space} --recalibrate` (writes a table for this host beside it; "
                "or re-measure one without --recalibrate)"
            )
        warnings.warn(
            f"{path} was measured on another host: {differs}; its times may be far off "
            f"here; {remedy}",
            UfoWarning,
            stacklevel=3,
        )


def why_not_runnable(profile: HardwareProfile) -> str | None:
    """None where this machine can run the profile's engines (and so re-time its table),
    else why not, e.g. a bf16 profile on a CPU without bf16, or its backend not installed."""
    try:
        get_backend(profile.backend)(profile.target())
    except BackendError as error:
        return str(error)
    return None


def recipe_difference(
    table: LatencyTable, profile: HardwareProfile, on_its_host: bool = False
) -> str | None:
    """None when the table's engines were built by the recipe its profile's backend builds
    now (`Backend.recipe`; a table without a record was built from the graph as given), on
    this host or (`on_its_host`) on the host the table describes, else what differs, in
    words."""
    host = table.provenance.get("host") if on_its_host else None
    wanted = get_backend(profile.backend).recipe(profile.target(), host)
    recorded = table.provenance.get("recipe")
    if (recorded or "") == wanted:
        return None
    now = f"'{wanted}'" if wanted else "the graph as given"
    if recorded is None:
        then = "records no engine recipe (tables profiled before 2026-12-04 do not)"
    else:
        then = f"timed engines built by '{recorded}'" if recorded else "timed the graph as given"
    return f"{then}, but {profile.backend} now builds {now} for '{profile.name}'"


def warn_other_recipe(table: LatencyTable, path: Path) -> None:
    """Warn (UfoWarning) when a measured table's engines were built by another recipe than
    its profile's backend builds now on the host the table describes (a table of another
    host warns for that apart): its times may not describe what `ufo export` builds."""
    if not table.measured:
        return
    try:
        profile = load_profile(table.device)
        differs = recipe_difference(table, profile, on_its_host=True)  # the host warns apart
    except (UfoError, ImportError):  # no profile, or its backend's runtime is not installed
        return
    if differs:
        warnings.warn(
            f"{path} {differs}; its times may not describe the engines built now; move it "
            f"aside and re-measure it: `ufo-profile --device {table.device} --space "
            f"{table.space}`",
            UfoWarning,
            stacklevel=3,
        )


def latency_predictor(space: SearchSpace, device: str) -> LatencyPredictor:
    """The device's measured table for the space, else a roofline estimate from its
    hardware profile (labelled `measured = False`). Tables are cached by the space's
    content; the predictor returned is over `space` itself."""
    key = (space.spec.fingerprint(), device)
    cached = _PREDICTORS.get(key)
    if cached is None or cached.space is not space:
        table = _table(space, device) if cached is None else cached.table
        cached = _PREDICTORS[key] = LatencyPredictor(space, table)
    return cached


def latency_ms(
    archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str], device: str, space: SearchSpace
) -> np.ndarray:
    return latency_predictor(space, device).latency_ms(archs, tasks)
