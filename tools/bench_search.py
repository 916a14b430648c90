"""Search quality and speed. Writes tools/results/bench_search.md.

Quality: slices of ufo_vit_base small enough to enumerate (12 genes free, 3^12 = 531,441
subnets, the rest fixed at the largest choice), scored by the shipped GP-NAS predictors and
measured latency tables. The exact front comes from evaluating every subnet; NSGA-II (the
`ufo-search` defaults) and random search get the same number of distinct evaluations, and
each found front's hypervolume is divided by the exact front's (objectives scaled to the
exact front's ideal and nadir, reference point 10% past the nadir). Goal: within 0.2%.
Speed (P4): one full ufo_vit_base search per task and device with the defaults, in-process,
and the README command end to end (import, search, files and plots). Goal: <= 10 s.

    python tools/bench_search.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_fingerprint
from ufo_nas.search.engine import (
    Archive,
    Constraint,
    Objective,
    SearchSettings,
    nsga2,
    random_search,
)
from ufo_nas.search.genes import GeneSpace, Variable
from ufo_nas.search.pareto import Normalisation
from ufo_nas.search.problem import Budgets, UfoProblem
from ufo_nas.search.run import prepare, search_devices

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.998  # hypervolume within 0.2% of the exact front's
DEVICES = ("cpu-onnxruntime", "cpu-openvino", "jetson", "a100-tensorrt", "rpi4")


@dataclass
class Slice:
    """A sub-problem of a UfoProblem: some genes free, the others fixed."""

    name: str
    space: GeneSpace
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]


def make_slice(name: str, problem: UfoProblem, free: list[str], ordered: bool = True) -> Slice:
    full = problem.gene_space
    names = [v.name for v in full.variables]
    columns = [names.index(n) for n in free]
    fixed = full.repair((full.cardinalities - 1)[None, :])[0]  # the largest subnet

    def embed(x: np.ndarray) -> np.ndarray:
        rows = np.repeat(fixed[None, :], len(x), axis=0)
        rows[:, columns] = x
        return rows

    def lift(f):
        return lambda x: f(embed(x))

    variables = tuple(
        Variable(v.name, v.choices, v.ordered and ordered)
        for v in (full.variables[k] for k in columns)
    )
    return Slice(
        name,
        GeneSpace(variables),
        tuple(Objective(o.name, lift(o.evaluate), o.maximise) for o in problem.objectives),
        tuple(Constraint(c.name, lift(c.evaluate), c.limit) for c in problem.constraints),
    )


def layer_genes(kinds: list[str], layers: range) -> list[str]:
    return [f"{kind}.{i}" for kind in kinds for i in layers]


def slices(space) -> list[Slice]:
    # The slices free FFN-path genes, which the shipped predictors never saw vary (their score
    # there is flat, their latency is not): `search_unseen` keeps them searchable, as before.
    face_ort = UfoProblem(space, ["face"], "cpu-onnxruntime", search_unseen=True)
    multi = UfoProblem(
        space, ["face", "person"], "cpu-openvino", predictors=face_ort.accuracy, search_unseen=True
    )
    person = UfoProblem(space, ["person"], "jetson", predictors=multi.accuracy, search_unseen=True)
    free_one = layer_genes(["heads", "mlp", "path.face"], range(4))
    free_two = layer_genes(["heads", "mlp", "path.face", "path.person"], range(3))
    free_person = layer_genes(["heads", "mlp", "path.person"], range(4))
    probe = make_slice("probe", person, free_person)
    latency = probe.objectives[1].evaluate(probe.space.enumerate())
    budget = float(np.quantile(latency, 0.3))
    person_budget = UfoProblem(
        space,
        ["person"],
        "jetson",
        budgets=Budgets(latency_ms=budget),
        predictors=multi.accuracy,
        search_unseen=True,
    )
    return [
        make_slice("face, cpu-onnxruntime: score, latency", face_ort, free_one),
        make_slice(
            "face, cpu-onnxruntime: same, categorical operators", face_ort, free_one, ordered=False
        ),
        make_slice("face+person, cpu-openvino: 2 scores, latency", multi, free_two),
        make_slice(
            f"person, jetson (estimate): score, latency <= {budget:.4f} ms",
            person_budget,
            free_person,
        ),
    ]


def hv(norm: Normalisation, archive: Archive) -> float:
    front = archive.front()
    return norm.hypervolume(archive.minimisation(archive.values[front])) if front.size else 0.0


def points(archive: Archive, rows: np.ndarray) -> set[tuple[float, ...]]:
    """Distinct objective vectors (different subnets can tie on every objective)."""
    return {tuple(v) for v in np.round(archive.values[rows], 9)}


def _reach(evaluations: list[float]) -> str:
    hit = [e for e in evaluations if not np.isnan(e)]
    if not hit:
        return "never"
    return f"{np.median(hit):,.0f}" + (
        f" ({len(hit)}/{len(evaluations)} runs)" if len(hit) < len(evaluations) else ""
    )


def quality_rows(space, seeds: int, settings: SearchSettings) -> list[str]:
    rows = []
    for piece in slices(space):
        start = time.perf_counter()
        exact = Archive(piece.space, piece.objectives, piece.constraints)
        exact.evaluate(piece.space.enumerate())
        exact_front = exact.front()
        norm = Normalisation.of(exact.minimisation(exact.values[exact_front]))
        exact_hv = hv(norm, exact)
        enumerate_s = time.perf_counter() - start
        ours, theirs, found, evals, secs, to_goal = [], [], [], [], [], []
        exact_points = points(exact, exact_front)
        for seed in range(seeds):
            run = nsga2(
                piece.space,
                piece.objectives,
                piece.constraints,
                SearchSettings(settings.population, settings.generations, seed),
            )
            baseline = random_search(
                piece.space, piece.objectives, piece.constraints, run.evaluations, seed
            )
            ours.append(hv(norm, run.archive) / exact_hv)
            theirs.append(hv(norm, baseline.archive) / exact_hv)
            found.append(len(points(run.archive, run.front) & exact_points) / len(exact_points))
            history = np.array(run.hypervolume_by_generation(norm)) / exact_hv
            reached = np.flatnonzero(history >= GOAL)
            to_goal.append(run.generation_sizes[reached[0]] if reached.size else np.nan)
            evals.append(run.evaluations)
            secs.append(run.seconds)
        ours_a, theirs_a = np.array(ours), np.array(theirs)
        rows.append(
            f"| {piece.name} | {len(exact.genes):,} ({enumerate_s:.0f} s) | {len(exact_points)} "
            f"| {np.mean(evals):,.0f} | {100 * ours_a.mean():.3f}% / {100 * ours_a.min():.3f}% "
            f"| {100 * np.mean(found):.0f}% | {_reach(to_goal)} | {100 * theirs_a.mean():.2f}% / "
            f"{100 * theirs_a.min():.2f}% | {np.mean(secs):.2f} s |"
        )
        print(rows[-1], flush=True)
    return rows


def speed_rows(space, settings: SearchSettings) -> list[str]:
    rows = []
    for device in DEVICES:
        for task in space.tasks:
            problems = prepare(space, [task], [device])
            start = time.perf_counter()
            report = search_devices(problems, settings)
            seconds = time.perf_counter() - start
            front = report.fronts[0]
            problem = problems[0]
            baseline = random_search(
                problem.gene_space, problem.objectives, (), front.evaluations, settings.seed
            )
            theirs = baseline.archive.minimisation(baseline.archive.values[baseline.front])
            ours = np.array([[-r.score[task], r.latency_ms] for r in front.rows])
            norm = Normalisation.of(theirs)
            ratio = norm.hypervolume(ours) / norm.hypervolume(theirs)
            kind = "measured" if front.latency_measured else "estimate"
            rows.append(
                f"| {device} ({kind}) | {task} | {seconds:.2f} s | {front.evaluations:,} | "
                f"{len(front.rows)} | {ratio:.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def readme_command_seconds() -> float:
    command = [
        str(Path(sys.executable).parent / "ufo-search"),
        "--device",
        "jetson",
        "--task",
        "face",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(command, cwd=tmp, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="NSGA-II runs per slice")
    args = parser.parse_args()
    settings = SearchSettings()
    space = load_space("ufo_vit_base")
    host = host_fingerprint()
    lines = [
        "# Search quality and speed",
        "",
        f"Command: `python tools/bench_search.py --seeds {args.seeds}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, "
        f"{host['cores']} cores. NSGA-II with the `ufo-search` defaults: population "
        f"{settings.population}, {settings.generations} generations.",
        "",
        "## Quality on enumerable slices of ufo_vit_base (goal: within 0.2% of the exact "
        "front's hypervolume)",
        "",
        "Hypervolume as a percentage of the exact front's, mean / worst over "
        f"{args.seeds} seeds; random search gets as many distinct evaluations as NSGA-II used. "
        "Front points are distinct objective vectors (subnets can tie on every objective).",
        "",
        "| slice: objectives | subnets (enumerated in) | exact front points | NSGA-II "
        "evaluations | NSGA-II HV mean / worst | exact front points found | evaluations to "
        "reach 99.8% (median) | random search HV mean / worst | NSGA-II time |",
        "|---|---|---|---|---|---|---|---|---|",
        *quality_rows(space, args.seeds, settings),
        "",
        "## P4: full ufo_vit_base searches (goal: <= 10 s each)",
        "",
        "In-process time of one search (predictors loaded; figures of the front included). "
        "Last column: hypervolume of NSGA-II's front over random search's at equal "
        "evaluations (scaled to random search's front; > 1 is better).",
        "",
        "| device (latency) | task | search time | evaluations | Pareto subnets | HV vs random |",
        "|---|---|---|---|---|---|",
        *speed_rows(space, settings),
        "",
        f"README command end to end (`ufo-search --device jetson --task face`: start-up, "
        f"search, CSV/JSON, two plots): {readme_command_seconds():.1f} s.",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_search.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
