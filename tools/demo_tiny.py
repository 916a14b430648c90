"""The whole product on weights we trained: ufo_vit_tiny on ORL faces, COIL-20 and digits.

Runs, on a 2-core CPU, each step as the console command a user would type:
1. `ufo train --recipe ufo_vit_tiny` (task stage, then chip stage) into --run;
2. ships the trained supernet as fp16 safetensors: supernets/ufo_vit_tiny.safetensors;
3. `ufo eval` of --evals subnets per task into search_spaces/ufo_vit_tiny.accuracy.csv,
   half uniform, then half chosen by the active (GP-NAS information) sampler;
4. `ufo fit-predictor` -> predictors/ufo_vit_tiny/;
5. `ufo search --device cpu-onnxruntime` per task on this machine's measured table;
6. `ufo export` of the face front's middle row as ONNX Runtime, verified against PyTorch.
Writes tools/results/demo_tiny.md: time and peak memory of each step, the final validation
metrics of the largest and smallest subnets, the fronts' sizes and the export check.

    python tools/demo_tiny.py                    # everything (about an hour on 2 cores)
    python tools/demo_tiny.py --skip-train       # reuse the trained run in --run
    python tools/demo_tiny.py --skip-train --skip-eval   # and the accuracy table
Steps skipped keep the times recorded when they ran (<run>/demo_steps.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.search.report import SearchReport  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = "ufo_vit_tiny"
TASKS = ("face", "object", "digits")


def run(step: str, args: list[str], log: dict[str, dict]) -> str:
    """Run `ufo ARGS` as a child, record its wall time and its own peak resident memory
    (that of its process tree, from wait4), return its stdout."""
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "ufo_nas", *args], cwd=ROOT, stdout=out, stderr=err, text=True
        )
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{step} failed ({' '.join(args)}):\n{stderr[-3000:]}")
    log[step] = {
        "step": step,
        "command": "ufo " + " ".join(args),
        "seconds": time.perf_counter() - began,
        "peak_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }
    print(f"{step}: {log[step]['seconds']:.0f} s", flush=True)
    return stdout


def ship_fp16(trained: Path) -> Path:
    """The trained supernet as fp16 safetensors where the CLI finds it by default."""
    from ufo_nas.checkpoint import load_supernet, save_supernet

    supernet = load_supernet(trained).half()
    return save_supernet(supernet, ROOT / "supernets" / f"{SPACE}.safetensors", overwrite=True)


def final_validation(run_dir: Path) -> list[list[str]]:
    from ufo_nas.train.monitor import read_metrics

    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r.kind == "val"]
    last = {(r.task, r.subnet): r for r in rows}  # the latest value of each
    first = {}
    for r in rows:
        first.setdefault((r.task, r.subnet), r)
    return [
        [task, subnet, r.metric, f"{first[task, subnet].value:.4f}", f"{r.value:.4f}"]
        for (task, subnet), r in sorted(last.items())
    ]


def cv_kendall_tau(folds: int = 5, seed: int = 0) -> list[list[str]]:
    """5-fold cross-validated Kendall tau of GP-NAS per task on the evaluated subnets."""
    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold

    from ufo_nas.accuracy import GPNAS, AccuracyTable, accuracy_table_path
    from ufo_nas.space import load_space

    space = load_space(SPACE)
    table = AccuracyTable(accuracy_table_path(space), space)
    out = []
    for task in TASKS:
        rows = [r for r in table.records if r.task == task]
        genes = space.encode_batch([space.parse(r.arch) for r in rows])
        values = np.array([r.value for r in rows])
        taus = []
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(genes):
            model = GPNAS(space, task).fit(genes[train], values[train])
            taus.append(
                kendalltau(model.predict(genes[test], return_std=False), values[test]).statistic
            )
        spread = f"{values.min():.3f}..{values.max():.3f} ({len(np.unique(values))} distinct)"
        out.append([task, str(len(rows)), spread, f"{np.mean(taus):.3f}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/demo", help="training run folder")
    parser.add_argument("--skip-train", action="store_true", help="reuse the run in --run")
    parser.add_argument("--skip-eval", action="store_true", help="reuse the accuracy table")
    parser.add_argument("--evals", type=int, default=100, help="subnets evaluated per task")
    parser.add_argument("--device", default="cpu-onnxruntime", help="device searched")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of training")
    args = parser.parse_args()
    run_dir = ROOT / args.run
    steps_file = run_dir / "demo_steps.json"
    reuse = args.skip_train and steps_file.exists()  # keep the times of the skipped steps
    log: dict[str, dict] = json.loads(steps_file.read_text()) if reuse else {}
    if not args.skip_train:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run("train", ["train", "--recipe", SPACE, "--out", str(run_dir),
                      "--threads", str(args.threads)], log)  # fmt: skip
    shipped = ship_fp16(run_dir / "supernet.safetensors")
    table = ROOT / "search_spaces" / f"{SPACE}.accuracy.csv"
    half = args.evals // 2
    if not args.skip_eval:
        table.unlink(missing_ok=True)
    for task in TASKS if not args.skip_eval else ():
        for sampler, n in (("uniform", half), ("active", args.evals)):
            run(f"eval {task} {sampler}", ["eval", "--space", SPACE, "--task", task,
                "--sampler", sampler, "-n", str(n), "--checkpoint", str(shipped)], log)  # fmt: skip
    run("fit-predictor", ["fit-predictor", "--space", SPACE, "--overwrite"], log)
    taus = cv_kendall_tau()
    fronts = []
    for task in TASKS:
        out = run_dir / f"search-{task}"
        run(f"search {task}", ["search", "--space", SPACE, "--device", args.device, "--task",
            task, "--out", str(out), "--overwrite"], log)  # fmt: skip
        front = SearchReport.load(out).fronts[0]
        fronts.append([task, str(len(front.rows)), str(front.evaluations)])
    export_dir = run_dir / "export-face"
    if export_dir.exists():
        shutil.rmtree(export_dir)
    middle = len(SearchReport.load(run_dir / "search-face").fronts[0].rows) // 2
    run("export face", ["export", "--pareto", str(run_dir / "search-face"), "--row",
                  str(middle), "--device", args.device, "--out", str(export_dir)], log)  # fmt: skip
    manifest = json.loads((export_dir / "manifest.json").read_text())
    steps_file.write_text(json.dumps(log, indent=1))
    log = list(log.values())
    total = sum(e["seconds"] for e in log)
    lines = [
        "# Demo: ufo_vit_tiny trained here, then evaluated, predicted, searched and exported",
        "",
        "`python tools/demo_tiny.py` (2-core CPU; each step is the console command shown).",
        "",
        "| step | s | peak MiB | command |",
        "|---|---|---|---|",
        *(f"| {e['step']} | {e['seconds']:.0f} | {e['peak_mib']:.0f} | "
          f"`{e['command'].replace(str(ROOT) + '/', '')}` |" for e in log),
        "",
        "Training was not run by this invocation (--skip-train): the table holds the steps "
        "that ran." if "train" not in {e["step"] for e in log} else "",
        "",
        f"Total {total / 60:.1f} min. Shipped {shipped.relative_to(ROOT)} "
        f"({shipped.stat().st_size / 2**20:.1f} MiB, fp16).",
        "",
        "Validation during training (the first and the last validation of each subnet):",
        "",
        "| task | subnet | metric | first | last |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in final_validation(run_dir)),
        "",
        "GP-NAS on these evaluations, 5-fold cross-validated Kendall tau:",
        "",
        "| task | subnets | metric range | tau |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in taus),
        "",
        f"Pareto fronts on {args.device}:",
        "",
        "| task | rows | evaluations |",
        "|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in fronts),
        "",
        f"Export of the face front's row {middle}: "
        f"verification {json.dumps(manifest.get('verification'))}",
        "",
    ]  # fmt: skip
    write_results(lines, ROOT / "tools" / "results" / "demo_tiny.md")


if __name__ == "__main__":
    main()
