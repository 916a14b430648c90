import dataclasses

import numpy as np
import pytest
import torch
from conftest import DATASETS
from PIL import Image

from ufo_nas import UfoError
from ufo_nas.data import DataError, datasets_root, load_task_data
from ufo_nas.paths import project_root
from ufo_nas.spec import TaskSpec

needs_data = pytest.mark.skipif(
    not (DATASETS / "orl_faces").is_dir() or not (DATASETS / "coil20_32").is_dir(),
    reason=f"shared datasets (orl_faces, coil20_32) not found in {DATASETS}",
)


def one_task_spec(spec, kind, data="set", in_chans=None):
    """`spec` with a single task 't' of `kind` reading folder `data`."""
    task = TaskSpec(name="t", kind=kind, embed_dim=8, paths=spec.tasks[0].paths, data=data)
    return dataclasses.replace(spec, tasks=(task,), in_chans=in_chans or spec.in_chans)


def write_png(path, size=(12, 10), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def single_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and isinstance(excinfo.value, UfoError)
    return message


def test_datasets_root_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("UFO_NAS_DATA", str(tmp_path))
    assert datasets_root() == tmp_path
    monkeypatch.delenv("UFO_NAS_DATA")
    assert datasets_root() == project_root().parent / "shared" / "datasets"


@needs_data
@pytest.mark.parametrize(
    "task, split, count, classes",
    [
        ("face", "train", 300, range(0, 30)),
        ("face", "val", 100, range(30, 40)),
        ("face", "all", 400, range(0, 40)),
        ("object", "train", 750, range(0, 15)),
        ("object", "val", 250, range(15, 20)),
    ],
)
def test_real_sets_split_counts_and_shapes(tiny, task, split, count, classes):
    data = load_task_data(tiny.spec, task, split, root=DATASETS)
    assert len(data) == count and data.images.shape == (count, 3, 64, 64)
    assert data.images.dtype == torch.float32 and data.labels.dtype == np.int64
    assert set(data.labels.tolist()) == set(classes)
    assert np.bincount(data.labels)[list(classes)].tolist() == [count // len(classes)] * len(
        classes
    )
    assert -1.0 <= data.images.min() < 0 < data.images.max() <= 1.0
    assert torch.equal(data.images[:, 0], data.images[:, 2])  # grey replicated
    assert data.cameras is None and len(data.paths) == count


@needs_data
def test_real_splits_are_class_disjoint_named_and_deterministic(tiny):
    face_val = load_task_data(tiny.spec, "face", "val", root=DATASETS)
    face_train = load_task_data(tiny.spec, "face", "train", root=DATASETS)
    assert not set(face_val.labels) & set(face_train.labels)
    assert {p.split("/")[1] for p in face_val.paths} == {f"s{n}" for n in range(31, 41)}
    coil_val = load_task_data(tiny.spec, "object", "val", root=DATASETS)
    assert {p.split("/")[1].split("__")[0] for p in coil_val.paths} == {
        f"obj{n}" for n in range(16, 21)
    }
    assert face_val.name == "orl_faces:val" and face_val.paths[:2] == (
        "orl_faces/s31/1.pgm",
        "orl_faces/s31/2.pgm",
    )
    again = load_task_data(tiny.spec, "face", "val", root=DATASETS)
    assert torch.equal(again.images, face_val.images) and again.paths == face_val.paths


def test_classification_split_every_fifth_image_in_natural_order(tiny, tmp_path):
    for n in range(1, 11):  # 10.png sorts after 9.png, so it is the 10th
        write_png(tmp_path / "set" / "cat" / f"{n}.png", value=n)
    for n in range(1, 4):
        write_png(tmp_path / "set" / "dog" / f"{n}.jpg", value=200)
    spec = one_task_spec(tiny.spec, "classification")
    val = load_task_data(spec, "t", "val", root=tmp_path)
    train = load_task_data(spec, "t", "train", root=tmp_path)
    assert val.paths == ("set/cat/5.png", "set/cat/10.png") and val.labels.tolist() == [0, 0]
    assert len(train) == 11 and train.labels.tolist() == [0] * 8 + [1] * 3
    assert not set(val.paths) & set(train.paths)
    assert len(load_task_data(spec, "t", "all", root=tmp_path)) == 13


def test_colour_images_keep_colour_and_one_channel_spaces_get_grey(tiny, tmp_path):
    write_png(tmp_path / "set" / "a" / "1.png", size=(40, 30), value=(255, 0, 0), mode="RGB")
    write_png(tmp_path / "set" / "b" / "1.png", size=(8, 8), value=0)
    rgb = load_task_data(one_task_spec(tiny.spec, "retrieval"), "t", "all", root=tmp_path)
    assert rgb.images.shape == (2, 3, 64, 64)
    assert rgb.images[0, :, 5, 5].tolist() == [1.0, -1.0, -1.0]
    grey = load_task_data(one_task_spec(tiny.spec, "retrieval", in_chans=1), "t", "all", tmp_path)
    assert grey.images.shape == (2, 1, 64, 64) and (grey.images[1] == -1.0).all()


def test_reid_cameras_from_market_style_names(tiny, tmp_path):
    names = {
        "0001": ["0001_c1s1_000151_01.png", "0001_c3s1_000301_02.png"],
        "0002": ["0002_c1s1_000451_03.png", "0002_c2s1_000501_01.png"],
        "0007": ["0007_c6s2_004521_01.png"],
        "0010": ["0010_c5s1_001001_01.png", "0010_c1s1_001101_04.png"],
    }
    for pid, files in names.items():
        for name in files:
            write_png(tmp_path / "market" / pid / name)
    spec = one_task_spec(tiny.spec, "reidentification", data="market")
    data = load_task_data(spec, "t", "all", root=tmp_path)
    assert data.cameras.dtype == np.int64 and data.cameras.tolist() == [1, 3, 1, 2, 6, 1, 5]
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 3, 3]
    val = load_task_data(spec, "t", "val", root=tmp_path)  # last quarter of 4 ids: 0010
    assert val.labels.tolist() == [3, 3] and val.cameras.tolist() == [1, 5]

    write_png(tmp_path / "market" / "0011" / "0011_s1_000001.png")
    with pytest.raises(DataError) as excinfo:
        load_task_data(spec, "t", "all", root=tmp_path)
    assert "0011_s1_000001.png" in single_line_error(excinfo) and "c<number>" in str(excinfo.value)


def test_error_messages(tiny, tmp_path):
    no_data = dataclasses.replace(
        tiny.spec, tasks=(dataclasses.replace(tiny.spec.tasks[0], data=None),)
    )
    with pytest.raises(DataError) as excinfo:
        load_task_data(no_data, "face", root=tmp_path)
    assert "no data folder" in single_line_error(excinfo)

    with pytest.raises(DataError) as excinfo:
        load_task_data(tiny.spec, "face", root=tmp_path)
    message = single_line_error(excinfo)
    assert str(tmp_path / "orl_faces") in message and "UFO_NAS_DATA" in message

    (tmp_path / "orl_faces").mkdir()
    (tmp_path / "orl_faces" / "README").write_text("no images here")
    with pytest.raises(DataError) as excinfo:
        load_task_data(tiny.spec, "face", root=tmp_path)
    assert "no images" in single_line_error(excinfo)

    with pytest.raises(DataError) as excinfo:
        load_task_data(tiny.spec, "face", split="test", root=tmp_path)
    assert "train, val, all" in single_line_error(excinfo)

    write_png(tmp_path / "set" / "a" / "1.png")
    write_png(tmp_path / "set" / "a" / "2.png")
    write_png(tmp_path / "set" / "b" / "1.png")
    with pytest.raises(DataError) as excinfo:
        load_task_data(one_task_spec(tiny.spec, "classification"), "t", root=tmp_path)
    assert "class 'b' has 1 image" in single_line_error(excinfo)

    (tmp_path / "set" / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as excinfo:
        load_task_data(one_task_spec(tiny.spec, "retrieval"), "t", "all", root=tmp_path)
    assert "2.png: not a readable image" in single_line_error(excinfo)


def test_an_empty_class_folder_is_named(tiny, tmp_path):
    write_png(tmp_path / "orl_faces" / "s1" / "1.pgm")
    (tmp_path / "orl_faces" / "s2").mkdir()
    with pytest.raises(DataError, match=r"orl_faces/s2: an empty class folder"):
        load_task_data(tiny.spec, "face", root=tmp_path)


def test_sklearn_digits_are_built_in_with_every_fifth_image_held_out(tiny):
    train = load_task_data(tiny.spec, "digits", "train")
    val = load_task_data(tiny.spec, "digits", "val")
    assert len(train) + len(val) == 1797 and len(val) == 355
    assert not set(train.paths) & set(val.paths) and val.paths[0] == "sklearn_digits/36"
    assert set(val.labels.tolist()) == set(range(10)) and train.images.shape[1:] == (3, 64, 64)
    assert float(train.images.min()) == -1.0 and float(train.images.max()) == 1.0
