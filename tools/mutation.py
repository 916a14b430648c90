"""Mutation testing of the core modules ([tool.mutmut] in pyproject.toml) with mutmut.

The core modules are run one at a time (MODULES below, cheapest first), each from a fresh
`mutants/` folder and against the tests that mirror it (e.g. tests/supernet/ for
ufo_nas/supernet/*) rather than the whole suite: a whole-suite run is hours on 2 cores, and
a mutant of a module is meant to be killed by that module's own tests. mutmut reads its
settings only from pyproject.toml, so for each module this tool starts mutmut with its
`only_mutate` and `pytest_add_cli_args_test_selection` replaced by that module's entry
(`python tools/mutation.py --mutmut MODULE ARGS...` runs any mutmut command that way, e.g.
`show NAME` or `browse`). The union of MODULES is checked against [tool.mutmut] only_mutate.

Each module's outcome (every mutant's status, each survivor's diff) is kept in
tools/results/mutation.json, so modules can be (re)run separately; tools/results/mutation.md
is then rewritten from all of them: per module the mutants killed and survived and the score,
the overall score, the modules not run yet, and every survivor with its diff and the reason it
is harmless, read from tools/mutation_survivors.yaml (a survivor without a reason is listed as
UNEXPLAINED: kill it with a test or explain it).

`--retest` re-checks only the survivors of the last run of one module, in the `mutants/`
folder that run left (git-ignored; delete it when done): it re-collects which tests cover
which function, so tests added since are used, and keeps the other mutants' results. A
module's SLOW_TESTS (seconds each, reaching nearly every function) are left out of its first
run and join on the retest, so only the fast tests' survivors meet them. A fresh
run of a module starts over. `"_notes"` in the JSON (module -> text, edited by hand) says
why a module has not been run; the report prints it.

    pip install -e ".[dev,mutation]"
    python tools/mutation.py --max-children 1                 # every core module, in turn
    python tools/mutation.py search.pareto cost               # some of them
    python tools/mutation.py search.pareto --retest           # after adding tests: re-check
                                                              # only the last run's survivors
    python tools/mutation.py --report-only                    # rewrite the .md from the JSON
    python tools/mutation.py --mutmut search.pareto show NAME # a mutmut command, scoped
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from fnmatch import fnmatch
from importlib.metadata import version
from pathlib import Path

import tomllib
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REASONS = ROOT / "tools" / "mutation_survivors.yaml"
RECORDS = ROOT / "tools" / "results" / "mutation.json"
MUTANTS = ROOT / "mutants"
MARKER = MUTANTS / "ufo-module.txt"  # which module the current mutants/ folder belongs to
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
UNKILLED = {"survived", "no tests"}

# module -> (files to mutate, tests to run), in the order a full run takes them
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "search.pareto": (["ufo_nas/search/pareto.py"], ["tests/search/test_pareto.py"]),
    "cost": (["ufo_nas/cost.py"], ["tests/test_cost.py"]),
    "accuracy.gpnas": (
        ["ufo_nas/accuracy/gpnas.py"],
        ["tests/accuracy/test_gpnas.py", "tests/accuracy/test_gpnas_reference.py"],
    ),
    "latency.predictor": (
        ["ufo_nas/latency/predictor.py"],
        ["tests/latency/test_predictor.py", "tests/latency/test_table_use.py"],
    ),
    "latency.table": (["ufo_nas/latency/table.py"], ["tests/latency/test_table.py"]),
    "supernet": (["ufo_nas/supernet/*"], ["tests/supernet/"]),
    "search.engine": (["ufo_nas/search/engine.py"], ["tests/search/test_engine.py"]),
    "verification": (["ufo_nas/verification.py"], ["tests/test_verification.py"]),
    "latency.measure": (
        ["ufo_nas/latency/measure.py"],
        [
            "tests/latency/test_measure.py",
            "tests/latency/test_measure_values.py",
            "tests/latency/test_measure_functions.py",
            "tests/latency/test_profiler.py",
        ],
    ),
}
# Tests left out of a module's first run and added on its --retest: each takes seconds and
# reaches nearly every function, so every mutant would run it (hours); the survivors of the
# fast tests then meet them.
SLOW_TESTS: dict[str, list[str]] = {
    "supernet": [
        "tests/supernet/test_timm_init.py::test_largest_subnet_reproduces_timm_vit",
        "tests/supernet/test_extract.py::test_extracted_equals_supernet_base",
    ],
    "latency.measure": [
        "tests/latency/test_measure_values.py::"
        "test_a_killed_profile_leaves_work_folders_the_next_run_removes",
        "tests/latency/test_measure.py::test_new_profile_describes_this_machine",
    ],
}

# Run inside a fresh interpreter: mutmut with its config scoped to one module.
DRIVER = """
import json, os, sys
import torch
# mutmut forks a child per mutant from this process, which ran the tests once; libgomp's
# worker pool is not fork-safe, so a pool started here (a test profiling at 2 threads) hangs
# every child's first parallel op. Held at one thread, torch never starts the pool.
torch.set_num_threads(1)
torch.set_num_threads = lambda threads: None
from mutmut.configuration import config
scope = json.loads(os.environ["UFO_MUTMUT_SCOPE"])
config().only_mutate = scope["mutate"]
config().pytest_add_cli_args_test_selection = scope["tests"]
from mutmut.__main__ import cli
cli(sys.argv[1:], prog_name="mutmut")
"""


def check_modules() -> None:
    """MODULES must cover exactly the files [tool.mutmut] only_mutate names."""
    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    listed = sorted(p for files, _ in MODULES.values() for p in files)
    if listed != sorted(configured["only_mutate"]):
        sys.exit(f"MODULES {listed} differ from [tool.mutmut] only_mutate")


def module_tests(module: str, retest: bool = False) -> list[str]:
    """The pytest arguments selecting a module's tests: SLOW_TESTS deselected unless `retest`."""
    tests = MODULES[module][1]
    if retest:
        return tests
    return tests + [arg for t in SLOW_TESTS.get(module, []) for arg in ("--deselect", t)]


def scoped_env(module: str, retest: bool = False) -> dict[str, str]:
    """The environment of a mutmut process scoped to one module."""
    files, tests = MODULES[module][0], module_tests(module, retest)
    return {
        **os.environ,
        "UFO_MUTMUT_SCOPE": json.dumps({"mutate": files, "tests": tests}),
        "UFO_NAS_HOME": str(ROOT),
        "UFO_NAS_DATA": os.environ.get("UFO_NAS_DATA", str(ROOT.parent / "shared" / "datasets")),
        # one thread per test process: the workers are the parallelism
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def mutmut(
    module: str, *args: str, check: bool = True, stream: bool = False, retest: bool = False
) -> str:
    env = scoped_env(module, retest)
    command = [sys.executable, "-c", DRIVER, *args]
    if stream:  # a run: show mutmut's progress as it goes
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if check and done.returncode != 0:
            sys.exit(f"mutmut {' '.join(args)} failed ({done.returncode}); its output is above")
        return ""
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr).replace("\r", "\n")[-3000:]
        sys.exit(f"mutmut {' '.join(args)} failed ({done.returncode}):\n{output}")
    return done.stdout


# Run inside a fresh interpreter: every mutant's status, and the diff of each survivor.
DUMP = """
import json, os
from mutmut.configuration import config
scope = json.loads(os.environ["UFO_MUTMUT_SCOPE"])
config().only_mutate = scope["mutate"]
config().pytest_add_cli_args_test_selection = scope["tests"]
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
found = {}
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name, code in data.exit_code_by_key.items():
        status = status_by_exit_code[code]
        unkilled = status in ("survived", "no tests")
        found[name] = [status, get_diff_for_mutant(name, path=path) if unkilled else ""]
print(json.dumps(found))
"""


def outcomes(module: str, retest: bool = False) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(mutant name -> status, survivor name -> its changed lines)."""
    done = subprocess.run(
        [sys.executable, "-c", DUMP],
        cwd=ROOT,
        env=scoped_env(module, retest),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"reading mutmut's results failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    statuses = {n: status for n, (status, _) in found.items()}
    diffs = {
        n: [
            d.strip()
            for d in diff.splitlines()
            if d[:1] in "+-" and not d.startswith(("+++", "---"))
        ]
        for n, (status, diff) in found.items()
        if status in UNKILLED
    }
    return statuses, diffs


def run_module(module: str, max_children: int, retest: bool, records: dict) -> None:
    start = time.monotonic()
    names: list[str] = []
    if retest:
        if not (MARKER.exists() and MARKER.read_text() == module and module in records):
            sys.exit(f"--retest needs the mutants/ folder of a run of {module}: run it first")
        names = [n for n, s in records[module]["statuses"].items() if s not in KILLED]
        if not names:
            print(f"{module}: nothing to retest")
            return
        # re-collect which tests run which function (kept results stay): a changed test or
        # fixture is otherwise mapped as it was in the first run
        (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    else:
        shutil.rmtree(MUTANTS, ignore_errors=True)
    print(f"== {module}: mutmut run {'(retest) ' if retest else ''}...", flush=True)
    mutmut(module, "run", "--max-children", str(max_children), *names, stream=True, retest=retest)
    MARKER.write_text(module)
    found, diffs = outcomes(module, retest)
    if retest:  # the first run's verdicts stand for the mutants not re-checked
        found = {**records[module]["statuses"], **{n: found[n] for n in names}}
        old = records[module]["diffs"]
        diffs = {n: diffs.get(n) or old.get(n, []) for n, s in found.items() if s in UNKILLED}
    seconds = time.monotonic() - start
    if retest:  # keep the first run's time: a retest checks only a few mutants
        seconds += records[module]["seconds"]
    records[module] = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
        "mutmut": version("mutmut"),
        "cpus": os.cpu_count(),
        "max_children": max_children,
        "tests": MODULES[module][1],
        "slow_tests_on_retest": SLOW_TESTS.get(module, []),
        "seconds": round(seconds),
        "retests": records[module].get("retests", 0) + 1 if retest else 0,
        "statuses": found,
        "diffs": diffs,
    }
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.write_text(json.dumps(records, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def source_module(name: str) -> str:
    """'ufo_nas.search.pareto.x_non_dominated__mutmut_3' -> 'ufo_nas.search.pareto'."""
    return name.rpartition(".")[0]


def cells(c: Counter) -> list[str]:
    """mutants, killed, survived, no tests, other, score."""
    killed = sum(c[s] for s in KILLED)
    checked = killed + c["survived"] + c["no tests"]
    score = f"{killed / checked:.1%}" if checked else "-"
    counts = [sum(c.values()), killed, c["survived"], c["no tests"], sum(c.values()) - checked]
    return [str(n) for n in counts] + [score]


def report(records: dict) -> list[str]:
    reasons = yaml.safe_load(REASONS.read_text()) if REASONS.exists() else {}
    done = [m for m in MODULES if m in records]
    missing = [m for m in MODULES if m not in records]
    lines = [
        "# Mutation testing of the core modules",
        "",
        'Reproduce: `pip install -e ".[dev,mutation]"` then '
        "`python tools/mutation.py --max-children 1` (all modules) or "
        "`python tools/mutation.py MODULE...`. Each module's mutants run against the tests "
        "that mirror it (column *tests*). Score = killed (incl. timeouts) / mutants checked "
        "(killed + survived + no tests).",
        "",
        "| module | tests | mutants | killed | survived | no tests | other | score | run on "
        "| min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals: Counter = Counter()
    for module in done:
        rec = records[module]
        per_file: dict[str, Counter] = {}
        for name, status in rec["statuses"].items():
            per_file.setdefault(source_module(name), Counter())[status] += 1
        for file in sorted(per_file):
            totals.update(per_file[file])
            run_on = (
                f"{rec['date']}, mutmut {rec['mutmut']}, {rec['cpus']} CPUs, "
                f"{rec['max_children']} worker(s)"
                + (f", then {rec['retests']} retest(s) of survivors" if rec.get("retests") else "")
            )
            slow = rec.get("slow_tests_on_retest", [])
            row = [
                file,
                ", ".join(rec["tests"])
                + (f" ({len(slow)} slow ones on the retest only)" if slow else ""),
                *cells(per_file[file]),
                run_on,
                f"{rec['seconds'] / 60:.1f}",
            ]
            lines.append("| " + " | ".join(row) + " |")
    overall = cells(totals)
    overall[-1] = f"**{overall[-1]}**"
    lines.append("| " + " | ".join(["**all run**", "", *overall, "", ""]) + " |")
    notes = records.get("_notes", {})  # why a module was not run (edited by hand)
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
        lines += [f"- {m}: {notes[m]}" for m in missing if m in notes]
    else:
        lines += ["", "Every core module was run."]
    survivors = sorted(
        (n, rec)
        for m in done
        for rec in [records[m]]
        for n, s in rec["statuses"].items()
        if s in UNKILLED
    )
    unexplained = [n for n, _ in survivors if n not in reasons]
    lines += ["", f"## Surviving mutants ({len(survivors)}; {len(unexplained)} unexplained)", ""]
    for name, rec in survivors:
        lines.append(
            f"- `{name}` ({rec['statuses'][name]}): {reasons.get(name, '**UNEXPLAINED**')}"
        )
        lines += [f"  `{d}`" for d in rec["diffs"].get(name, [])[:4]]
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--mutmut"]:  # a mutmut command scoped to one module
        if len(sys.argv) < 4 or sys.argv[2] not in MODULES:
            sys.exit(f"usage: mutation.py --mutmut MODULE ARGS... (MODULE: {', '.join(MODULES)})")
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, *sys.argv[3:]],
            cwd=ROOT,
            env=scoped_env(sys.argv[2]),
            check=False,
        )
        sys.exit(done.returncode)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules", nargs="*", help=f"module globs among {', '.join(MODULES)} (default: all)"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--retest",
        action="store_true",
        help="re-check the last run's survivors in the existing mutants/ (one module)",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md only")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "mutation.md")
    args = parser.parse_args()
    check_modules()
    modules = [m for m in MODULES if not args.modules or any(fnmatch(m, p) for p in args.modules)]
    if not modules:
        sys.exit(f"no module matches {args.modules}; modules: {', '.join(MODULES)}")
    if args.retest and len(modules) != 1:
        sys.exit("--retest takes exactly one module")
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    if not args.report_only:
        for module in modules:
            run_module(module, args.max_children, args.retest, records)
            write_results(report(records), args.out)
    write_results(report(records), args.out)


if __name__ == "__main__":
    main()
