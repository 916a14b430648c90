import pytest

from ufo_nas.errors import UfoError
from ufo_nas.latency.predictor import latency_predictor
from ufo_nas.plot import plot_convergence, plot_fronts, plot_latency_validation
from ufo_nas.search.engine import SearchSettings
from ufo_nas.search.run import prepare, search_devices

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(base):
    settings = SearchSettings(population=12, generations=5)
    return [
        search_devices(prepare(base, ["face"], ["cpu-openvino", "jetson"]), settings),
        search_devices(prepare(base, ["face", "vehicle"], ["jetson"]), settings),
    ]


def test_fronts_and_convergence_are_pngs(tmp_path, reports):
    for draw, name in ((plot_fronts, "fronts.png"), (plot_convergence, "conv.png")):
        path = draw(reports, tmp_path / name)
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
        with pytest.raises(UfoError, match="already exists"):
            draw(reports, path)


def test_latency_validation_plot_needs_a_measured_table(tmp_path, tiny, base):
    path = plot_latency_validation(latency_predictor(tiny, "cpu-onnxruntime"), tmp_path / "l.png")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(UfoError, match="roofline estimate"):
        plot_latency_validation(latency_predictor(base, "jetson"), tmp_path / "j.png")
