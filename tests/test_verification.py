"""An artefact's outputs against PyTorch's: cosine per image, the bound, the held-out images."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cosine as scipy_cosine_distance

from ufo_nas.errors import UfoError
from ufo_nas.supernet import extract
from ufo_nas.verification import (
    MIN_COSINE,
    VERIFY_IMAGES,
    VERIFY_SEED,
    cosine_rows,
    failure,
    held_out,
    verification_images,
    verify,
)

ARCH = "d4-h2,3,2,4-m2,3,4,2-face:stms-object:ssss"


@pytest.fixture(scope="module")
def subnet(tiny, tiny_supernet):
    return extract(tiny_supernet, tiny.parse(ARCH), ("face", "object"))


def reference(subnet, images):
    with torch.inference_mode():
        out = subnet(torch.from_numpy(images))
    return [t.numpy() for t in ([out] if isinstance(out, torch.Tensor) else out)]


def test_cosine_rows_equals_scipy_per_flattened_row():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3)) + 0.5
    want = [1 - scipy_cosine_distance(x.ravel(), y.ravel()) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_rows(a, b), want, rtol=1e-12)
    np.testing.assert_allclose(cosine_rows(a, -2 * a), -1.0, rtol=1e-12)


def test_cosine_of_a_zero_row_is_one_and_float32_is_computed_in_float64():
    a = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    b = np.array([[0.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert cosine_rows(a, b).tolist() == [1.0, 0.0]
    assert cosine_rows(a, b).dtype == np.float64


def test_held_out_images_are_spread_over_the_set():
    assert held_out(10, 4).tolist() == [0, 3, 6, 9]
    assert held_out(8, 8).tolist() == list(range(8))
    assert held_out(17, 3).tolist() == [0, 8, 16]


def test_verification_images_are_a_whole_number_of_batches(tiny):
    assert len(verification_images(tiny.spec, None, 1)) == VERIFY_IMAGES
    assert len(verification_images(tiny.spec, None, 3)) == 9  # 8 rounded up to 3 batches
    assert len(verification_images(tiny.spec, None, 8)) == 8
    images = verification_images(tiny.spec, None, 1)
    want = torch.randn(images.shape, generator=torch.Generator().manual_seed(VERIFY_SEED))
    np.testing.assert_array_equal(images, want.numpy())
    assert images.shape[1:] == (tiny.spec.in_chans, tiny.spec.image_size, tiny.spec.image_size)


def test_verification_images_come_from_the_calibration_set_when_given(tiny):
    calibration = np.arange(20, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 4, 4))
    images = verification_images(tiny.spec, calibration, 1)
    assert images[:, 0, 0, 0].tolist() == held_out(20, 8).tolist()
    assert images.flags.c_contiguous
    assert len(verification_images(tiny.spec, calibration[:16], 1)) == 8  # 2 x 8 is enough
    with pytest.raises(UfoError, match="at least 16 images .8 are held out to verify., got 15"):
        verification_images(tiny.spec, calibration[:15], 1)
    with pytest.raises(UfoError, match="at least 18 images .9 are held out"):
        verification_images(tiny.spec, calibration[:17], 3)


def test_an_exact_artefact_passes_in_batches_with_its_differences(subnet, tiny):
    images = verification_images(tiny.spec, None, 1)
    want = reference(subnet, images)
    calls = []

    def runner(x):
        calls.append(len(x))
        got = reference(subnet, x)
        return [got[0] + 1e-3, got[1]]  # face off by a constant

    result = verify(runner, subnet, images, 3, "fp32")
    assert calls == [3, 3, 2]
    assert result["passed"] and result["images"] == 8 and result["min_cosine_required"] == 0.999
    face, obj = result["outputs"]["face"], result["outputs"]["object"]
    assert face["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert obj["max_abs_diff"] < 1e-5 and obj["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert face["max_abs_reference"] == pytest.approx(float(np.abs(want[0]).max()))
    assert obj["max_abs_reference"] == pytest.approx(float(np.abs(want[1]).max()))
    assert failure(result, "onnx fp32") is None


def noisy(subnet, images, task: int, image: int, cosine: float):
    """A runner whose output `task` of image `image` has cosine `cosine` with PyTorch's."""
    want = reference(subnet, images)
    out = [w.copy() for w in want]
    row = want[task][image]
    other = np.random.default_rng(0).normal(size=row.shape)
    other -= other.dot(row) / row.dot(row) * row  # orthogonal to the row, same norm
    other *= np.linalg.norm(row) / np.linalg.norm(other)
    out[task][image] = cosine * row + np.sqrt(1 - cosine**2) * other
    return lambda x: out, want


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_one_image_below_the_bound_fails_the_artefact_and_names_its_output(subnet, tiny, precision):
    images = verification_images(tiny.spec, None, 8)
    bound = MIN_COSINE[precision]
    runner, _ = noisy(subnet, images, task=1, image=5, cosine=bound - 2e-4)
    result = verify(runner, subnet, images, 8, precision)
    assert not result["passed"]
    assert result["outputs"]["object"]["min_cosine"] == pytest.approx(bound - 2e-4, abs=2e-6)
    assert result["outputs"]["face"]["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    line = failure(result, f"openvino {precision}")
    assert line == (
        f"openvino {precision} output 'object' differs from PyTorch: cosine "
        f"{result['outputs']['object']['min_cosine']:.5f} < {bound}"
    )
    runner, _ = noisy(subnet, images, task=1, image=5, cosine=bound + 2e-4)
    assert verify(runner, subnet, images, 8, precision)["passed"]


def test_int8_is_held_to_its_own_looser_bound(subnet, tiny):
    images = verification_images(tiny.spec, None, 8)
    runner, _ = noisy(subnet, images, task=0, image=0, cosine=0.99)
    assert verify(runner, subnet, images, 8, "int8")["passed"]
    assert not verify(runner, subnet, images, 8, "fp32")["passed"]
    assert not verify(runner, subnet, images, 8, "fp16")["passed"]
    assert MIN_COSINE == {"fp32": 0.999, "fp16": 0.999, "bf16": 0.999, "int8": 0.98}


def test_the_worst_of_several_failing_outputs_is_named(subnet, tiny):
    images = verification_images(tiny.spec, None, 8)
    want = reference(subnet, images)
    rng = np.random.default_rng(3)
    bad = [want[0] + 0.5 * rng.normal(size=want[0].shape), -want[1]]
    result = verify(lambda x: bad, subnet, images, 8, "fp32")
    assert result["outputs"]["object"]["min_cosine"] == pytest.approx(-1.0, abs=1e-6)
    assert "output 'object' differs from PyTorch: cosine -1.00000 < 0.999" in failure(result, "x")


def test_a_random_artefact_fails(subnet, tiny):
    images = torch.randn(4, 3, 64, 64).numpy()
    rng = np.random.default_rng(0)
    result = verify(
        lambda x: [rng.normal(size=(len(x), 128)), rng.normal(size=(len(x), 128))],
        subnet,
        images,
        2,
        "fp32",
    )
    assert not result["passed"] and result["outputs"]["face"]["min_cosine"] < 0.5


def test_a_single_output_subnet_and_wrong_artefact_shapes(tiny, tiny_supernet, subnet):
    one = extract(tiny_supernet, tiny.parse(ARCH), ("face",))
    images = verification_images(tiny.spec, None, 8)
    want = reference(one, images)
    assert verify(lambda x: want, one, images, 8, "fp32")["passed"]
    with pytest.raises(UfoError, match="gave 1 outputs; the subnet has 2"):
        verify(lambda x: want, subnet, images, 8, "fp32")
    with pytest.raises(UfoError, match=r"'face' output has shape \[8, 64\], PyTorch's \[8, 128\]"):
        verify(lambda x: [want[0][:, :64]], one, images, 8, "fp32")


def test_cosine_of_rows_with_tiny_norms_is_still_their_angle():
    rng = np.random.default_rng(2)
    a, b = 1e-4 * rng.normal(size=(3, 10)), 1e-4 * rng.normal(size=(3, 10))
    want = [1 - scipy_cosine_distance(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(cosine_rows(a, b), want, rtol=1e-12)


def test_a_cosine_exactly_at_the_bound_passes_and_is_reported_to_7_digits(
    subnet, tiny, monkeypatch
):
    import ufo_nas.verification as verification

    images = verification_images(tiny.spec, None, 8)
    runner, want = noisy(subnet, images, task=0, image=2, cosine=0.99912345678)
    exact = float(cosine_rows(runner(images)[0], want[0]).min())
    monkeypatch.setitem(verification.MIN_COSINE, "fp32", exact)
    result = verify(runner, subnet, images, 8, "fp32")
    assert result["passed"] and result["min_cosine_required"] == exact
    assert result["outputs"]["face"]["min_cosine"] == round(exact, 7) != exact
