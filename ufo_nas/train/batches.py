"""Per-task training batches that every rank, and every resumed run, draws alike.

Batch `b` of a task's stream is a pure function of (seed, task, b): the stream is cut into
epochs, each epoch's order is drawn from a generator seeded by (seed, task, epoch), and rank
`r` of `world` takes the r-th slice of each global batch. So no sampler state has to be
saved or communicated, and N ranks see exactly the global batch one process would.
P x K identity batches come from pytorch-metric-learning's MPerClassSampler.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions

from ufo_nas.data import DataError, ImageSet
from ufo_nas.train.recipe import TaskRecipe

AUGMENT_STREAM = 0xA06  # keeps the augmentation draws apart from the batch order's


@contextmanager
def _sampler_random(seed: int):
    """pytorch-metric-learning's samplers draw from its module-wide NUMPY_RANDOM."""
    saved = common_functions.NUMPY_RANDOM
    common_functions.NUMPY_RANDOM = np.random.RandomState(seed)
    try:
        yield
    finally:
        common_functions.NUMPY_RANDOM = saved


class TaskBatches:
    """The training batches of one task, for one rank."""

    def __init__(self, data: ImageSet, task: TaskRecipe, seed: int, rank: int = 0, world: int = 1):
        self.data, self.task, self.rank, self.world = data, task, rank, world
        self.size = task.images_per_step
        check_batches(data, task, world)
        self.per_epoch = max(1, len(data) // self.size)
        self._seed = seed ^ zlib.crc32(task.name.encode())
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return int(self.data.labels.max()) + 1

    def position(self, index: int) -> dict[str, int]:
        """Where batch `index` lies in the stream (for the checkpoint's state)."""
        return {"epoch": index // self.per_epoch, "batch": index % self.per_epoch}

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            seed = int(np.random.SeedSequence([self._seed, epoch]).generate_state(1)[0])
            n = self.per_epoch * self.size
            if self.task.identity_batches:
                sampler = MPerClassSampler(
                    self.data.labels, self.task.images_per_class, self.size, n
                )
                with _sampler_random(seed):
                    self._order = np.fromiter(iter(sampler), dtype=np.int64, count=n)
            else:
                self._order = np.random.default_rng(seed).permutation(len(self.data))[:n]
            self._epoch = epoch
        return self._order

    def indices(self, index: int) -> np.ndarray:
        """Image indices of this rank's part of global batch `index`."""
        where = self.position(index)
        start = where["batch"] * self.size
        batch = self._epoch_order(where["epoch"])[start : start + self.size]
        share = self.size // self.world
        return batch[self.rank * share : (self.rank + 1) * share]

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of this rank's part of global batch `index`, augmented as the
        task's recipe says (flips and shifts drawn for the global batch, then sliced)."""
        rows = self.indices(index)
        labels = torch.from_numpy(self.data.labels[rows])
        images = self.data.images[torch.from_numpy(rows)]
        if self.task.flip or self.task.shift:
            rng = np.random.default_rng([self._seed, index, AUGMENT_STREAM])
            flips = rng.random(self.size) < 0.5
            shifts = rng.integers(-self.task.shift, self.task.shift + 1, (self.size, 2))
            share = slice(self.rank * len(rows), (self.rank + 1) * len(rows))
            flip = flips[share] if self.task.flip else np.zeros(len(rows), dtype=bool)
            images = augment(images, flip, shifts[share])
        return images, labels


def augment(images: torch.Tensor, flip: np.ndarray, shifts: np.ndarray) -> torch.Tensor:
    """`images` (N, C, H, W), image n flipped left-right where `flip[n]` and moved by
    `shifts[n]` = (dy, dx) pixels, the border filled from the edge pixels."""
    pad = int(np.abs(shifts).max(initial=0))
    padded = torch.nn.functional.pad(images, (pad,) * 4, mode="replicate") if pad else images
    h, w = images.shape[-2:]
    out = torch.empty_like(images)
    for n, (dy, dx) in enumerate(shifts):
        y, x = pad - int(dy), pad - int(dx)
        out[n] = padded[n, :, y : y + h, x : x + w]
    if flip.any():
        where = torch.from_numpy(np.flatnonzero(flip))
        out[where] = out[where].flip(-1)
    return out


def check_batches(data: ImageSet, task: TaskRecipe, world: int) -> None:
    """Refuse a task whose batches cannot be drawn, with one line naming the data set."""
    size = task.images_per_step
    if len(data) < size:
        raise DataError(
            f"{data.name}: {len(data)} training images, fewer than one batch of task "
            f"'{task.name}' ({size})"
        )
    if task.identity_batches:
        labels, counts = np.unique(data.labels, return_counts=True)
        few = labels[counts < task.images_per_class]
        if few.size:
            first = data.paths[int(np.flatnonzero(data.labels == few[0])[0])]
            raise DataError(
                f"{data.name}: {few.size} classes have fewer than images_per_class = "
                f"{task.images_per_class} images (e.g. the class of {first}); P x K batches "
                f"of task '{task.name}' need K images of each class"
            )
        if len(labels) < task.classes_per_batch:
            raise DataError(
                f"{data.name}: {len(labels)} classes, fewer than classes_per_batch = "
                f"{task.classes_per_batch} of task '{task.name}'"
            )
        if task.classes_per_batch % world:
            raise DataError(
                f"task '{task.name}': classes_per_batch = {task.classes_per_batch} does not "
                f"split over {world} processes; make it a multiple of {world}"
            )
    elif size % world:
        raise DataError(
            f"task '{task.name}': batch_size = {size} does not split over {world} processes; "
            f"make it a multiple of {world}"
        )
