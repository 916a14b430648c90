"""What the TVM backend passes on of TVM's native log; runs without TVM installed."""

import os

import pytest

from ufo_nas.backends.tvm import gather_indices_are_constant, stderr_without


def test_a_gather_of_computed_indices_keeps_the_warning():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    gather = helper.make_node("Gather", ["x", "i"], ["y"])
    assert not gather_indices_are_constant(
        helper.make_model(helper.make_graph([gather], "g", [x, i], [y]))
    )
    weight = helper.make_tensor("i", TensorProto.INT64, [2], [0, 3])
    graph = helper.make_graph([gather], "g", [x], [y], initializer=[weight])
    assert gather_indices_are_constant(helper.make_model(graph))


def test_native_log_lines_other_than_the_one_dropped_reach_stderr(capfd):
    with pytest.raises(RuntimeError, match="build failed"):
        with stderr_without("Fast mode segfaults"):
            os.write(2, b"[12:00:00] transform.h:1261: Warning: Fast mode segfaults when ...\n")
            os.write(2, b"[12:00:00] codegen.cc:7: Warning: something else\n")
            raise RuntimeError("build failed")
    err = capfd.readouterr().err
    assert err == "[12:00:00] codegen.cc:7: Warning: something else\n"
    os.write(2, b"after\n")  # stderr is its own again
    assert capfd.readouterr().err == "after\n"
