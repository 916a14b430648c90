"""Apache TVM (Relax): import the ONNX model, tune it with MetaSchedule, run it in the Relax VM.

compile(): ONNX -> Relax with the input shape fixed -> legalise and fuse into TIR kernels ->
MetaSchedule tunes the kernels the tuning database still lacks -> the database's best
schedules are applied -> build. Untuned TVM CPU code is ~12x slower than tuned (a small
ViT on 2 vCPUs: 54 ms untuned, 4.5 ms after 64 trials), so tuning is on by default. Every
kernel gets the same number of trials, whichever model first meets it: a budget per compile
(64), shared by that model's new kernels, left 35 of the tiny table's 50 kernels at 1-3
trials (near-random schedules) and a few at 64, so a kernel's speed depended on the order in
which models were compiled. The JSON database lives in
`work_dir/tvm_tuning/<digest of target and trials>/`: a later compile of the same model, or
of one sharing kernels with it, reuses the records instead of tuning again (records of
another target or budget never mix in). The first tuning in a process also imports TVM's
tensor intrinsics, once: 35 s in a bare interpreter, ~2 min with torch loaded (2 vCPUs).

Target options (the hardware profile's `options`):
  tvm_target     a TVM target dict or string; default: this host's llvm CPU
  tuning_trials  MetaSchedule trials per kernel (default 16); 0 builds untuned and leaves
                 the database alone
  batch          the size a dynamic batch axis is fixed to (default 1)
  rpc            {tracker_host, tracker_port, key}: tune and run on a board behind a TVM RPC
                 tracker (set from the profile's `remote`); needs `tvm_target`
  cc             the compiler that links the library for the board (default: the host's)
  tuning_dir     where the tuning database lives (`ufo profile` shares one per device)

The RPC path (export_library, upload, remote Relax VM, MetaSchedule RPCRunner) is the one
TVM documents for boards; it is only tested against a tracker and server on this host.
Tuning needs `pip install "apache-tvm[meta-schedule,popen-pool]"` (psutil; xgboost for the
cost model, else a random one) and an apache-tvm-ffi whose JSON serialisation matches
apache-tvm (0.27 needs apache-tvm-ffi 0.1.14; 0.1.15 segfaults in MetaSchedule).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ufo_nas.backends.base import Backend, BackendError, Exported, Runner, Target

# Measured on the 2-vCPU Intel host (tools/results/check_tvm_tuning.md): 16 trials per
# kernel against 4 run the tiny anchor 0.98 vs 1.07 ms and the largest subnet 3.07 vs 3.55
# ms, for 336 vs 230 s of tuning (untuned: 7.6 and 34 ms).
DEFAULT_TRIALS = 16
# Evolutionary search sized for budgets of a few trials per kernel: measured on 2 vCPUs,
# 64 trials tune 3x faster than with TVM's defaults (512, 4) for 2% slower code.
SEARCH = {"population_size": 128, "genetic_num_iters": 2}
# Serialising a TIR node is what MetaSchedule does first; a mismatched tvm-ffi crashes here.
_FFI_PROBE = "import tvm; tvm.ir.save_json(tvm.tirx.IntImm('int32', 1))"


class TvmBackend(Backend):
    """Apache TVM Relax: cpu (local or over RPC) fp32, tuned with MetaSchedule."""

    name = "tvm"
    export_precisions = ("fp32",)

    def __init__(self, target: Target):
        super().__init__(target)
        options = target.options
        self.rpc: dict[str, Any] | None = options.get("rpc")
        if target.precision != "fp32":
            raise BackendError(f"tvm runs fp32 only, not {target.precision}; use precision fp32")
        if self.rpc is None and target.device != "cpu":
            raise BackendError(
                f"tvm runs on device 'cpu' here, not '{target.device}'; a board's device "
                "needs its RPC tracker in the hardware profile's `remote`"
            )
        if self.rpc is not None and "tvm_target" not in options:
            raise BackendError("tvm over RPC needs options.tvm_target describing the board")
        self.trials = tuning_trials(options)
        self.batch = int(options.get("batch", 1))
        self.tvm_target = build_target(options.get("tvm_target"), target.threads)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("tvm") is None:
            return 'Apache TVM is not installed: pip install -e ".[tvm]"'
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        import tvm

        return {"tvm": tvm.__version__}

    @classmethod
    def recipe(cls, target: Target, host: dict[str, Any] | None = None) -> str:
        """The tuning budget (on any host): kernels tuned with another one run at other
        speeds."""
        trials = tuning_trials(target.options)
        if trials == 0:
            return "untuned (TVM's default schedules)"
        return f"MetaSchedule, {trials} trials per kernel"

    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        executable, shape = self.executable(onnx_path, work_dir)
        threads = self.threads()
        if self.rpc is not None:
            fcompile = cross_compiler(self.target.options.get("cc"))
            target = self.tvm_target
            return remote_runner(executable, target, self.rpc, fcompile, work_dir, shape, threads)
        return local_runner(executable, shape, threads or os.cpu_count() or 1)

    def export(
        self, onnx_path: Path, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Exported:
        """`model.so` (the tuned Relax VM library, cross-compiled with options.cc for a
        board) and `model.json` (its input); run here unless the profile names a board."""

        out_dir = Path(out_dir)
        executable, shape = self.executable(onnx_path, out_dir)
        library, sidecar = out_dir / "model.so", out_dir / "model.json"
        fcompile = cross_compiler(self.target.options.get("cc"))
        executable.export_library(str(library), fcompile=fcompile)
        name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
        sidecar.write_text(
            json.dumps({"input": name, "shape": shape, "target": str(self.tvm_target)}, indent=1)
        )
        if self.rpc is not None:
            runner = remote_runner(
                executable, self.tvm_target, self.rpc, fcompile, out_dir, shape, self.threads()
            )
        else:
            loaded = load_library(library)
            runner = local_runner(loaded, shape, self.threads() or os.cpu_count() or 1)
        return Exported([library, sidecar], runner)

    def executable(self, onnx_path: Path, work_dir: Path) -> tuple[Any, list[int]]:
        """The built (tuned where trials > 0) VM executable and its static input shape."""
        model = onnx.load(str(onnx_path))
        name, shape = input_shape(model, self.batch)
        target = self.tvm_target
        quiet = gather_indices_are_constant(model)
        with stderr_without(FAST_TAKE_WARNING) if quiet else contextlib.nullcontext():
            mod = lower(import_onnx(model, name, shape), target)
        fcompile = cross_compiler(self.target.options.get("cc"))
        database = None
        if self.trials > 0:
            database = tune(mod, target, self.tuning_dir(work_dir), self.trials, self.rpc, fcompile)
        return build(mod, target, database), shape

    def threads(self) -> int:
        return self.target.threads or int(self.tvm_target.attrs.get("num-cores", 0))

    def tuning_dir(self, work_dir: Path) -> Path:
        """The database folder of this target and trial budget under the `tuning_dir`
        option (shared by every model compiled for it, e.g. all of a profiling run), else
        under `work_dir`."""
        key = f"{self.tvm_target}|{self.trials} trials per kernel"
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        return Path(self.target.options.get("tuning_dir", work_dir)) / "tvm_tuning" / digest


def tuning_trials(options: dict[str, Any]) -> int:
    """The profile's MetaSchedule trials per kernel (`tuning_trials`, default 16)."""
    trials = int(options.get("tuning_trials", DEFAULT_TRIALS))
    if trials < 0:
        raise BackendError(f"options.tuning_trials must be >= 0 (0: untuned), got {trials}")
    return trials


def build_target(spec: dict[str, Any] | str | None, threads: int) -> Any:
    """A tvm.target.Target from the profile's `tvm_target` (default: this host's CPU);
    llvm targets get `num-cores`, which MetaSchedule requires."""
    import tvm

    if spec is None:
        spec = {"kind": "llvm"}
        host_cpu = getattr(tvm.target.codegen, "llvm_get_system_cpu", None)
        if host_cpu is not None:
            spec["mcpu"] = host_cpu()
    try:
        target = tvm.target.Target(spec)
        if target.kind.name == "llvm" and "num-cores" not in target.attrs:
            target = tvm.target.Target(
                {**target.export(), "num-cores": threads or os.cpu_count() or 1}
            )
    except Exception as exc:  # TVM raises ValueError, TypeError, InternalError
        raise BackendError(f"tvm rejects tvm_target {spec!r}: {first_line(exc)}") from None
    return target


def input_shape(model: onnx.ModelProto, batch: int) -> tuple[str, list[int]]:
    """The model's one input and its static shape; a symbolic batch axis becomes `batch`."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise BackendError(f"tvm expects a model with one input, got {len(inputs)}")
    shape = []
    for axis, dim in enumerate(inputs[0].type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(batch)
        else:
            raise BackendError(
                f"tvm needs static input axes; axis {axis} of '{inputs[0].name}' is dynamic"
            )
    return inputs[0].name, shape


# Constant attributes TVM's ONNX frontend cannot read, and the dtype of the tensor each holds.
_LIST_CONSTANTS = {
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
}


def constants_as_tensors(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every Constant holding a tensor `value`: torch's unoptimised export (what
    profiling and `ufo export` build from) writes scalars and shapes as `value_int(s)` and
    `value_float(s)`, which TVM's frontend rejects ("no value in Constant")."""
    for node in model.graph.node:
        if node.op_type != "Constant" or node.attribute[0].name not in _LIST_CONSTANTS:
            continue
        attribute = node.attribute[0]
        value = np.array(
            onnx.helper.get_attribute_value(attribute), dtype=_LIST_CONSTANTS[attribute.name]
        )
        node.ClearField("attribute")
        node.attribute.append(
            onnx.helper.make_attribute("value", onnx.numpy_helper.from_array(value))
        )
    return model


# What TVM's C++ code logs (to file descriptor 2) for every ONNX Gather it legalises in its
# default "fast" mode, which does not check indices at run time: 996 of the 1030 lines of a
# tiny table's build. It says nothing where every index is a constant: PyTorch checked each
# one when it traced the model.
FAST_TAKE_WARNING = "Fast mode segfaults when there are out-of-bounds indices"


def gather_indices_are_constant(model: onnx.ModelProto) -> bool:
    """Whether every Gather of `model` takes its indices from a weight or a Constant."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {
        out for node in model.graph.node if node.op_type == "Constant" for out in node.output
    }
    return all(node.input[1] in constants for node in model.graph.node if node.op_type == "Gather")


@contextlib.contextmanager
def stderr_without(text: str) -> Iterator[None]:
    """While the block runs, file descriptor 2 (where native code logs) goes to a temporary
    file; afterwards every line of it that does not contain `text` is passed on to stderr,
    whether the block raised or not."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if text not in line))
            sys.stderr.flush()


def import_onnx(model: onnx.ModelProto, name: str, shape: list[int]) -> Any:
    """The ONNX model as a Relax IRModule with its input fixed to `shape`."""
    from tvm.relax.frontend.onnx import from_onnx

    try:
        return from_onnx(constants_as_tensors(model), shape_dict={name: shape})
    except Exception as exc:  # the frontend raises ValueError, OpNotImplemented, TVMError
        raise BackendError(f"tvm cannot import the ONNX model: {first_line(exc)}") from None


def lower(mod: Any, target: Any) -> Any:
    """Legalise the Relax ops to TIR and fuse them into kernels, the tuning tasks (the
    first half of TVM's static-shape tuning pipeline)."""
    import tvm
    from tvm import relax

    passes = [
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.get_pipeline("zero"),
    ]
    try:
        with target:
            return tvm.transform.Sequential(passes)(mod)
    except Exception as exc:  # TVM raises ValueError, InternalError, ... per failed pass
        raise BackendError(f"tvm cannot lower the model: {first_line(exc)}") from None


def build(mod: Any, target: Any, database: Any | None) -> Any:
    """The VM executable of the lowered `mod`, with the database's schedules if given
    (tvm.compile's default pipeline keeps the fused kernels as they are)."""
    import tvm
    from tvm import relax

    try:
        with target, tvm.transform.PassContext(opt_level=3):
            if database is not None:
                with database:
                    mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            return tvm.compile(mod, target=target)
    except Exception as exc:  # TVM raises ValueError, InternalError, ... from codegen
        raise BackendError(f"tvm could not build the model: {first_line(exc)}") from None


def tune(
    mod: Any,
    target: Any,
    db_dir: Path,
    trials: int,
    rpc: dict[str, Any] | None,
    fcompile: Callable | None,
) -> Any:
    """Tune each kernel of `mod` that the JSON database in `db_dir` lacks with `trials`
    trials (round robin over the kernels); the database."""
    from tvm.s_tir import meta_schedule as ms
    from tvm_ffi import structural_hash

    check_tuning_deps()
    db_dir.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(db_dir))
    # A kernel with any record, even of failed trials only, is done: one that cannot be
    # measured would otherwise be re-tuned on every compile.
    measured = {structural_hash(r.workload.mod) for r in database.get_all_tuning_records()}
    tasks = [
        task
        for task in ms.relax_integration.extract_tasks(mod, target)
        if measurable(task.dispatched[0]) and structural_hash(task.dispatched[0]) not in measured
    ]
    if not tasks:
        return database
    # TuneContexts built here, not by extracted_tasks_to_tune_contexts: that one rewires
    # the `tvm.s_tir.meta_schedule` loggers to stdout and fails on unnamed handlers (pytest's).
    contexts = [
        ms.TuneContext(
            task.dispatched[0],
            target=target,
            space_generator="post-order-apply",
            search_strategy=ms.search_strategy.EvolutionarySearch(**SEARCH),
            task_name=task.task_name,
            rand_state=seed,
            num_threads=os.cpu_count() or 1,
        )
        for task, seed in zip(tasks, ms.utils.fork_seed(0, n=len(tasks)))
    ]
    if rpc is None:
        threads = int(target.attrs["num-cores"])
        runner = ms.runner.LocalRunner(initializer=functools.partial(set_threads, threads))
    else:
        config = ms.runner.RPCConfig(
            tracker_host=rpc["tracker_host"],
            tracker_port=int(rpc["tracker_port"]),
            tracker_key=rpc["key"],
            session_timeout_sec=120,
        )
        runner = ms.runner.RPCRunner(rpc_config=config, max_workers=1)
    try:
        ms.tune_tasks(
            tasks=contexts,
            task_weights=[task.weight for task in tasks],
            work_dir=str(db_dir),
            max_trials_global=trials * len(contexts),
            max_trials_per_task=trials,
            # two search rounds per kernel: the second is guided by the cost model
            num_trials_per_iter=max(1, (trials + 1) // 2),
            task_scheduler="round-robin",
            builder=in_process_builder(fcompile),
            runner=runner,
            database=database,
            cost_model="xgb" if importlib.util.find_spec("xgboost") else "random",
        )
    except Exception as exc:  # tracker errors, TVMError from the task scheduler
        raise BackendError(f"tvm MetaSchedule tuning failed: {first_line(exc)}") from None
    return database


def measurable(kernel: Any) -> bool:
    """False for kernels with integer inputs: MetaSchedule measures on random inputs, and
    random indices (a gather's) read out of bounds and crash the runner, or the board's
    RPC server, which then hangs the tuning. Such kernels are cheap and stay untuned."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    infos = ArgInfo.from_entry_func(kernel, remove_preproc=True)
    return not any(str(info.dtype).startswith(("int", "uint")) for info in infos)


@functools.cache
def check_tuning_deps() -> None:
    """Refuse to tune where MetaSchedule would fail or crash the process."""
    if importlib.util.find_spec("psutil") is None:
        raise BackendError(
            'tvm tuning needs psutil: pip install "apache-tvm[meta-schedule,popen-pool]" '
            "(or set options.tuning_trials: 0)"
        )
    probe = subprocess.run([sys.executable, "-c", _FFI_PROBE], capture_output=True)
    if probe.returncode != 0:
        import tvm_ffi

        raise BackendError(
            f"apache-tvm-ffi {tvm_ffi.__version__} crashes apache-tvm's MetaSchedule "
            "(serialising IR fails); pip install apache-tvm-ffi==0.1.14.post1 "
            "(or set options.tuning_trials: 0)"
        )


def in_process_builder(fcompile: Callable | None) -> Any:
    """A MetaSchedule builder that compiles candidates in this process: the stock
    LocalBuilder starts a fresh worker per batch, and each imports TVM's tensor
    intrinsics (tens of seconds on a small CPU)."""
    return _builder_class()(fcompile)


@functools.cache
def _builder_class() -> type:
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    @derived_object
    class InProcessBuilder(PyBuilder):
        def __init__(self, fcompile: Callable | None):
            super().__init__()
            self.fcompile = fcompile

        def build(self, build_inputs: list) -> list:
            results = []
            for build_input in build_inputs:
                try:
                    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(build_input.mod)
                    library = tvm.compile(mod, target=build_input.target)
                    # one folder per artifact: MetaSchedule deletes it after measuring
                    path = os.path.join(tempfile.mkdtemp(prefix="ufo-tvm-"), "kernel.so")
                    library.export_library(path, fcompile=self.fcompile)
                    results.append(BuilderResult(path, None))
                except Exception as exc:  # a candidate that fails to build is skipped
                    results.append(BuilderResult(None, first_line(exc)))
            return results

    return InProcessBuilder


def cross_compiler(cc: str | None) -> Callable | None:
    """export_library's fcompile for the board's compiler; None: the host's."""
    if not cc:
        return None
    from tvm.support import cc as tvm_cc

    return tvm_cc.cross_compiler(cc)


def set_threads(threads: int) -> None:
    """Size TVM's runtime thread pool in this process (also a runner worker's initializer)."""
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(1, threads)  # 1: use the big cores


def load_library(library: Path) -> Any:
    """The exported library loaded through a copy of its own name: the dynamic loader hands
    back the library already loaded from a path, so a model exported later to the same
    folder (a held-out chunk's `subnet-3/model.so`) would run the earlier one."""
    import tvm

    with tempfile.TemporaryDirectory(dir=library.parent) as folder:
        copy = Path(folder) / library.name
        shutil.copyfile(library, copy)
        return tvm.runtime.load_module(str(copy))  # mapped: the copy may go


def local_runner(executable: Any, shape: list[int], threads: int) -> Runner:
    import tvm
    from tvm import relax

    set_threads(threads)  # process-wide: the last compiled model's count applies
    main = relax.VirtualMachine(executable, tvm.cpu())["main"]
    return _runner(main, tuple(shape), lambda images: tvm.runtime.tensor(images))


def remote_runner(
    executable: Any,
    target: Any,
    rpc: dict[str, Any],
    fcompile: Callable | None,
    work_dir: Path,
    shape: list[int],
    threads: int,
) -> Runner:
    """Export the library, upload it to a board from the tracker, run it there."""
    import tvm
    from tvm import relax

    library = work_dir / "model.so"
    executable.export_library(str(library), fcompile=fcompile)
    try:
        tracker = tvm.rpc.connect_tracker(rpc["tracker_host"], int(rpc["tracker_port"]))
        remote = tracker.request(rpc["key"], session_timeout=0)
        remote.upload(str(library))
        device = remote.device(target.get_target_device_type())
        main = relax.VirtualMachine(remote.load_module(library.name), device)["main"]
        if threads > 0:
            remote.get_function("runtime.config_threadpool")(1, threads)
    except Exception as exc:  # socket errors, RPCError, TVMError from the board
        where = f"{rpc['tracker_host']}:{rpc['tracker_port']} key '{rpc['key']}'"
        raise BackendError(f"tvm RPC to {where} failed: {first_line(exc)}") from None

    def to_board(images: np.ndarray, session: Any = remote) -> Any:
        # `session` keeps the RPC session, and so the board, as long as the runner lives
        return tvm.runtime.tensor(images, device)

    return _runner(main, tuple(shape), to_board)


def _runner(main: Any, shape: tuple[int, ...], to_device: Callable[[np.ndarray], Any]) -> Runner:
    import tvm

    tensor_type = tvm.runtime.Tensor

    def run(images: np.ndarray) -> list[np.ndarray]:
        if images.shape != shape:
            raise BackendError(f"tvm model compiled for input {shape}, got {images.shape}")
        out = main(to_device(np.ascontiguousarray(images, dtype=np.float32)))
        outs = [out] if isinstance(out, tensor_type) else out  # several outputs: an Array
        return [o.numpy() for o in outs]

    return run


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message, for a one-line BackendError."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


BACKEND = TvmBackend
