import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Annotation

from ufo_nas.errors import UfoError
from ufo_nas.latency.predictor import latency_predictor
from ufo_nas.plot import (
    convergence_figure,
    fronts_figure,
    plot_convergence,
    plot_fronts,
    plot_latency_validation,
)
from ufo_nas.search.engine import SearchSettings
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.search.run import prepare, search_devices

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(base):
    settings = SearchSettings(population=12, generations=5)
    return [
        search_devices(prepare(base, ["face"], ["cpu-openvino", "jetson"]), settings),
        search_devices(prepare(base, ["face", "vehicle"], ["jetson"]), settings),
    ]


def synthetic(n: int, tasks=("face",), device="cpu-openvino", measured=True) -> SearchReport:
    """A report of one front of `n` rows on a staircase: latency and the first task's score
    rise together; any other task's score falls, so only its row 0 is best in 2-D."""
    rows = [
        ParetoRow(
            arch=f"a{i}",
            score={t: (i if k == 0 else n - i) / n for k, t in enumerate(tasks)},
            score_std={t: 0.01 * (1 + i % 3) for t in tasks},
            latency_ms=1.0 + i,
            params=1,
            macs=1,
        )
        for i in range(n)
    ]
    front = DeviceFront(device, measured, "test", rows, n, 3, 0.1, [0.2, 0.9, 1.1])
    objectives = [f"score.{t}" for t in tasks] + ["latency_ms"]
    return SearchReport(
        "s", "f", list(tasks), objectives, {t: "rank" for t in tasks}, 0.0, {}, {}, [front]
    )


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def annotations(ax) -> list[Annotation]:
    return [t for t in ax.texts if isinstance(t, Annotation)]


def faint_points(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_fronts_and_convergence_are_pngs(tmp_path, reports):
    for draw, name in ((plot_fronts, "fronts.png"), (plot_convergence, "conv.png")):
        path = draw(reports, tmp_path / name)
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
        with pytest.raises(UfoError, match="already exists"):
            draw(reports, path)


def test_score_axis_names_the_target_and_draws_std_bars(reports):
    fig = fronts_figure(reports[:1])
    (ax,) = fig.axes
    assert "z-score of rank" in ax.get_ylabel() and "mean over" in ax.get_ylabel()
    assert "+-1 std" in ax.get_ylabel()
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(reports[0].fronts)
    for container, front in zip(bars, reports[0].fronts):
        spans = [seg[1, 1] - seg[0, 1] for seg in container.lines[2][0].get_segments()]
        stds = sorted(2 * row.score_std["face"] for row in front.rows)
        assert sorted(spans) == pytest.approx(stds)


def test_front_points_carry_their_row_index(reports):
    fig = fronts_figure([synthetic(30)])
    texts = annotations(fig.axes[0])
    assert [t.get_text() for t in texts] == [str(i) for i in range(30)]
    assert [t.xy for t in texts] == [(1.0 + i, i / 30) for i in range(30)]
    assert "12 = row in pareto.csv (ufo-export --row)" in legend_texts(fig)
    # a real front: every row of the line labelled at that row's point
    rows = reports[0].fronts[0].rows
    texts = annotations(fronts_figure(reports[:1]).axes[0])[: len(rows)]
    assert sorted(int(t.get_text()) for t in texts) == list(range(len(rows)))
    for t in texts:
        row = rows[int(t.get_text())]
        assert t.xy == (row.latency_ms, row.score["face"])


def test_long_fronts_label_every_kth_row_plus_both_ends():
    fig = fronts_figure([synthetic(101)])
    shown = [int(t.get_text()) for t in annotations(fig.axes[0])]
    assert shown == [*range(0, 101, 3), 100]
    assert any("1 label in 3, plus both ends" in t for t in legend_texts(fig))


def test_faint_points_have_a_legend_entry():
    fig = fronts_figure([synthetic(10, tasks=("face", "person"))])
    face, person = fig.axes
    assert [len(c.get_offsets()) for c in faint_points(person)] == [9]
    assert not faint_points(face)
    faint = [t for t in legend_texts(fig) if t.startswith("faint")]
    assert faint == ["faint: on the front via face score, dominated in this 2-D view"]
    assert not any(t.startswith("faint") for t in legend_texts(fronts_figure([synthetic(10)])))


def test_one_colour_per_run_and_device_and_one_title(reports):
    fig = fronts_figure(reports)
    colours: dict[str, set[tuple[float, ...]]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(to_rgba(line.get_color()))
    both = "face+vehicle on jetson (roofline lower bound)"
    assert set(colours) == {"face on cpu-openvino", "face on jetson (roofline lower bound)", both}
    assert both in {line.get_label() for line in fig.axes[1].get_lines()}
    assert all(len(c) == 1 for c in colours.values())  # the same in both panels
    assert len(set.union(*colours.values())) == 3
    assert legend_texts(fig)[:3] == list(colours)
    assert [a.get_title() for a in fig.axes] == ["face", "vehicle"]
    assert fig.get_suptitle() == "ufo-search Pareto fronts, space ufo_vit_base"
    twice = fronts_figure([synthetic(5), synthetic(5)])
    assert legend_texts(twice)[:2] == ["run 1: cpu-openvino", "run 2: cpu-openvino"]


def test_roofline_latencies_are_labelled_lower_bounds(reports):
    fig = fronts_figure(reports[:1])
    assert "roofline lower bound" in fig.axes[0].get_xlabel()
    assert legend_texts(fig)[:2] == ["cpu-openvino", "jetson (roofline lower bound)"]
    assert "roofline lower bound" in fig.legends[0].get_title().get_text()
    measured = fronts_figure([synthetic(5)])
    assert "roofline" not in measured.axes[0].get_xlabel()
    assert measured.legends[0].get_title().get_text() == ""


def test_convergence_is_relative_to_the_best_per_objective_count(reports):
    fig = convergence_figure([*reports, synthetic(5)])
    two, three = fig.axes
    assert two.get_title() == "2 objectives: face score, latency"
    assert three.get_title() == "3 objectives: face score, vehicle score, latency"
    assert len(two.get_lines()) == 3 and len(three.get_lines()) == 1
    for ax in fig.axes:
        assert "relative to the run's best" in ax.get_ylabel()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata())
            assert y.max() == pytest.approx(1.0) and (y <= 1.0).all()
    assert fig.get_suptitle() == "ufo-search convergence"


def test_latency_validation_plot_needs_a_measured_table(tmp_path, tiny, base):
    path = plot_latency_validation(latency_predictor(tiny, "cpu-onnxruntime"), tmp_path / "l.png")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(UfoError, match="roofline estimate"):
        plot_latency_validation(latency_predictor(base, "jetson"), tmp_path / "j.png")
