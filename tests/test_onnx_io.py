import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ufo_nas import CheckpointError, UfoError
from ufo_nas.onnx_io import export_onnx, read_onnx_metadata
from ufo_nas.supernet import extract


@pytest.mark.parametrize("tasks", [("face",), ("face", "object")])
def test_onnx_runtime_reproduces_pytorch(tiny, tiny_supernet, tmp_path, tasks):
    arch = tiny.parse("d5-h4,2,3,4,3-m3,2,4,4,2-face:smtsm-object:sstmt")
    subnet = extract(tiny_supernet, arch, tasks)
    path = export_onnx(subnet, tmp_path / "subnet.onnx", opset=17)
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(tasks)
    for batch in (1, 3):  # the batch axis is dynamic
        images = torch.randn(batch, 3, 64, 64)
        got = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            want = subnet(images)
        want = (want,) if len(tasks) == 1 else want
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            assert np.abs(g - w.numpy()).max() <= 1e-5
    meta = read_onnx_metadata(path)
    assert tiny.parse(meta["arch"]) == arch
    assert meta["tasks"] == list(tasks)
    assert meta["space_fingerprint"] == tiny.spec.fingerprint()
    assert meta["input"] == {"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "float32"}


def test_export_refuses_old_opset_and_existing_file(tiny, tiny_supernet, tmp_path):
    subnet = extract(tiny_supernet, tiny.smallest(), "face")
    with pytest.raises(UfoError, match="opset 13 is too old"):
        export_onnx(subnet, tmp_path / "a.onnx", opset=13)
    taken = tmp_path / "b.onnx"
    taken.write_text("keep me")
    with pytest.raises(UfoError, match="already exists"):
        export_onnx(subnet, taken)
    assert taken.read_text() == "keep me"


def test_metadata_of_a_foreign_model(tmp_path):
    path = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph([], "g", [], [])
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(CheckpointError, match="not exported by ufo-nas"):
        read_onnx_metadata(path)


def test_profiling_export_keeps_weights_beside_the_graph_and_matches_pytorch(
    tiny, tiny_supernet, tmp_path
):
    from ufo_nas.onnx_io import export_module, external_data

    subnet = extract(tiny_supernet, tiny.largest(), (tiny.tasks[0],)).eval()
    x = torch.randn(1, tiny.spec.in_chans, tiny.spec.image_size, tiny.spec.image_size)
    path = export_module(subnet, x, tmp_path / "model.onnx")
    weights = external_data(path)
    assert weights == tmp_path / "model.onnx.data" and weights.stat().st_size > 0
    graph = onnx.load(str(path), load_external_data=False)
    assert path.stat().st_size < weights.stat().st_size  # the weights are not in the graph
    # unoptimised: the exporter's graph, not onnxscript's fused one
    optimised = onnx.load(str(export_onnx(subnet, tmp_path / "opt.onnx")))
    assert len(graph.graph.node) > len(optimised.graph.node)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        want = subnet(x).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], want, atol=1e-4)
