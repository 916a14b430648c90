from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.train.micro import write_setup
from ufo_nas.data import DataError, load_task_data
from ufo_nas.train import load_recipe
from ufo_nas.train.batches import TaskBatches, augment


@pytest.fixture
def face(tmp_path, data_root):
    _, path = write_setup(tmp_path)
    recipe, space = load_recipe(path)
    return load_task_data(space.spec, "face", "train"), recipe.task("face"), recipe


def test_identity_batches_hold_p_classes_of_k_images(face):
    data, task, recipe = face
    batches = TaskBatches(data, task, seed=0)
    for index in range(10):
        labels = data.labels[batches.indices(index)]
        assert len(labels) == 8
        classes, counts = np.unique(labels, return_counts=True)
        assert len(classes) == 4 and (counts == 2).all()


def test_a_batch_depends_on_seed_and_index_only(face):
    data, task, _ = face
    first = TaskBatches(data, task, seed=5)
    again = TaskBatches(data, task, seed=5)
    stream = [first.indices(i).tolist() for i in range(12)]
    assert [again.indices(i).tolist() for i in reversed(range(12))] == stream[::-1]
    assert stream != [TaskBatches(data, task, seed=6).indices(i).tolist() for i in range(12)]
    assert len({tuple(s) for s in stream}) > 6  # epochs reshuffle


def test_ranks_split_each_global_batch_into_whole_classes(face):
    data, task, _ = face
    whole = TaskBatches(data, task, seed=1)
    parts = [TaskBatches(data, task, seed=1, rank=r, world=2) for r in range(2)]
    for index in range(6):
        halves = [p.indices(index) for p in parts]
        assert np.concatenate(halves).tolist() == whole.indices(index).tolist()
        assert not set(data.labels[halves[0]]) & set(data.labels[halves[1]])


def test_random_batches_cover_an_epoch_without_repeats(tmp_path, data_root):
    _, path = write_setup(tmp_path)
    recipe, space = load_recipe(path)
    data = load_task_data(space.spec, "object", "train")
    batches = TaskBatches(data, recipe.task("object"), seed=0)
    epoch = np.concatenate([batches.indices(i) for i in range(batches.per_epoch)])
    assert len(epoch) == len(set(epoch.tolist())) == batches.per_epoch * 8


def test_bad_batches_are_refused_with_one_line(tmp_path, data_root, face):
    data, task, recipe = face
    with pytest.raises(DataError, match="classes_per_batch = 4 does not split over 3 processes"):
        TaskBatches(data, task, seed=0, world=3)
    space = load_recipe(tmp_path / "recipe.yaml")[1]
    for k in range(1, 4):
        (data_root / "faces" / "c1" / f"{k}.png").unlink()
    few = load_task_data(space.spec, "face", "train")
    with pytest.raises(
        DataError,
        match=r"1 classes have fewer than images_per_class = 2 images "
        r"\(e.g. the class of faces/c1/0.png\)",
    ):
        TaskBatches(few, task, seed=0)
    for c in range(1, 6):
        for image in (data_root / "faces" / f"c{c}").iterdir():
            image.unlink()
        (data_root / "faces" / f"c{c}").rmdir()
    small = load_task_data(space.spec, "face", "train")
    with pytest.raises(DataError, match="fewer than classes_per_batch = 4"):
        TaskBatches(small, task, seed=0)


def test_augment_flips_and_shifts_with_edge_fill():
    images = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    out = augment(images, np.array([True, False]), np.array([[0, 1], [-1, 0]]))
    moved = torch.cat([images[0, 0, :, :1], images[0, 0, :, :3]], 1)  # right 1, edge fill
    assert torch.equal(out[0, 0], moved.flip(-1))
    up = torch.cat([images[1, 0, 1:], images[1, 0, -1:]], 0)  # up 1, bottom row repeated
    assert torch.equal(out[1, 0], up)
    assert torch.equal(augment(images, np.zeros(2, bool), np.zeros((2, 2), int)), images)


def test_augmented_batches_are_a_pure_function_of_the_index_and_split_over_ranks(face):
    data, task, _ = face
    task = replace(task, flip=True, shift=3)
    whole = TaskBatches(data, task, seed=2)
    parts = [TaskBatches(data, task, seed=2, rank=r, world=2) for r in range(2)]
    plain = TaskBatches(data, replace(task, flip=False, shift=0), seed=2)
    changed = 0
    for index in range(4):
        images, labels = whole.batch(index)
        assert torch.equal(images, whole.batch(index)[0])
        assert torch.equal(torch.cat([p.batch(index)[0] for p in parts]), images)
        clean, same_labels = plain.batch(index)
        assert torch.equal(labels, same_labels) and images.shape == clean.shape
        changed += int((images != clean).any(dim=(1, 2, 3)).sum())
    assert changed > 16  # most of the 32 images are moved or flipped
