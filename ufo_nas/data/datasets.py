"""Small real image sets on disk -> normalised tensors with deterministic splits.

Layouts (the folder is the task's `data` entry, under `datasets_root()`):

* class folders: ``<folder>/<class>/<image>.<ext>`` (ORL faces: ``sN/K.pgm``);
* flat: ``<folder>/<class>__<view>.<ext>`` (COIL-20: ``objN__V.png``, class ``objN``);
* built in: ``sklearn_digits``, scikit-learn's handwritten digits (1,797 grey 8x8 images of
  the digits 0-9, read from inside the scikit-learn wheel; class ``N`` is digit N).

Extensions: png, jpg, jpeg, pgm, bmp (any case). Classes and images are put in natural order
(numbers compare as numbers: s2 < s10), and a class's label is its index in that order over the
whole folder, so train and val share one label space (ORL sN -> N-1, COIL-20 objN -> N-1).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ufo_nas.errors import UfoError
from ufo_nas.paths import project_root
from ufo_nas.spec import SpaceSpec

SPLITS = ("train", "val", "all")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp")
CAMERA = re.compile(r"c(\d+)")
_FLAT_NAME = re.compile(r"^(.+?)__\d+$")
_VAL_EVERY = 5  # classification: every 5th image of a class is val
_VAL_CLASS_FRACTION = 4  # disjoint splits: the last quarter of the classes is val

Classes = list[tuple[str, list]]  # (class name, its images: files or built-in indices)
BUILTIN_DATA = ("sklearn_digits",)


class DataError(UfoError, ValueError):
    """A data folder, split or evaluation input cannot be used."""


@dataclass(frozen=True)
class ImageSet:
    """Images of one split with their labels, as the model sees them."""

    name: str  # "<data folder>:<split>", e.g. "orl_faces:val"
    images: torch.Tensor  # (N, C, H, W) float32, (x / 255 - 0.5) / 0.5
    labels: np.ndarray  # (N,) int64 identity / class ids
    cameras: np.ndarray | None  # (N,) int64 camera ids, reidentification only
    paths: tuple[str, ...]  # source file of each image, relative to the datasets root

    def __len__(self) -> int:
        return len(self.labels)


def datasets_root() -> Path:
    """$UFO_NAS_DATA if set, else ``<project root>/../shared/datasets``."""
    env = os.environ.get("UFO_NAS_DATA")
    return Path(env) if env else project_root().parent / "shared" / "datasets"


def load_task_data(
    spec: SpaceSpec, task: str, split: str = "val", root: Path | None = None
) -> ImageSet:
    """Load the `data` folder of `task`, resized to spec.image_size (bilinear), spec.in_chans.

    Splits are deterministic:

    * face_verification, reidentification, retrieval: class-disjoint, the last quarter of the
      classes in natural order (at least one) is val, the rest train. ORL: s1..s30 train,
      s31..s40 val; COIL-20: objects 1..15 train, 16..20 val.
    * classification: image-disjoint, every 5th image of each class (5th, 10th, ... in
      natural name order) is val, the rest train; each class needs at least 2 images.
    * "all": every image.

    For reidentification the camera id is the first ``c<digits>`` in the file name
    (Market-1501 style, ``0002_c1s1_000451_03.jpg``). Raises DataError.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    task_spec = spec.task(task)
    if task_spec.data is None:
        raise DataError(
            f"task '{task}' of space '{spec.name}' has no data folder; "
            f"add `data: <folder>` under tasks.{task} in {spec.source}"
        )
    root = Path(root) if root is not None else datasets_root()
    if task_spec.data in BUILTIN_DATA:
        folder, classes = Path(task_spec.data), _digits_classes()
    else:
        folder = root / task_spec.data
        if not folder.is_dir():
            raise DataError(
                f"data folder {folder} of task '{task}' does not exist; set UFO_NAS_DATA to "
                f"the datasets root that holds '{task_spec.data}' (built in: "
                f"{', '.join(BUILTIN_DATA)})"
            )
        classes = _scan(folder)
    if task_spec.kind == "classification":
        items = _image_split(folder, classes, split)
    else:
        items = _class_split(folder, classes, split)
    cameras = None
    if task_spec.kind == "reidentification":
        cameras = np.array([_camera(path) for _, path in items], dtype=np.int64)
    if task_spec.data in BUILTIN_DATA:
        images = _digits_images([i for _, i in items], spec.image_size, spec.in_chans)
        paths = tuple(f"{task_spec.data}/{i}" for _, i in items)
    else:
        images = _read_images([path for _, path in items], spec.image_size, spec.in_chans)
        paths = tuple(path.relative_to(root).as_posix() for _, path in items)
    return ImageSet(
        name=f"{task_spec.data}:{split}",
        images=images,
        labels=np.array([label for label, _ in items], dtype=np.int64),
        cameras=cameras,
        paths=paths,
    )


def read_image_folder(folder: str | os.PathLike, spec: SpaceSpec, limit: int = 300) -> torch.Tensor:
    """Up to `limit` images found anywhere under `folder` (natural order, evenly spread
    when there are more), as the model sees them: (N, C, H, W) float32."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: _natural_key(p.relative_to(folder).as_posix()),
    )
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or below")
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return _read_images(files, spec.image_size, spec.in_chans)


def _natural_key(text: str) -> list[str | int]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _images_in(folder: Path) -> list[Path]:
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _scan(folder: Path) -> Classes:
    """(class name, image files) per class, classes and files in natural order."""
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    groups: dict[str, list[Path]] = {}
    if subdirs:
        for sub in subdirs:
            images = _images_in(sub)
            if not images:
                raise DataError(
                    f"{sub}: an empty class folder (no {', '.join(IMAGE_SUFFIXES)} images); "
                    "remove it or add its images"
                )
            groups[sub.name] = images
    else:
        for path in _images_in(folder):
            match = _FLAT_NAME.match(path.stem)
            if match is None:
                raise DataError(
                    f"{path}: cannot tell its class; name flat files <class>__<view>.<ext> "
                    "(as COIL-20 obj1__0.png) or put images in class sub-folders"
                )
            groups.setdefault(match.group(1), []).append(path)
    if not groups:
        raise DataError(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in class sub-folders "
            "or named <class>__<view>.<ext>"
        )
    return [(name, groups[name]) for name in sorted(groups, key=_natural_key)]


def _digits_classes() -> Classes:
    """scikit-learn's digits as classes "0".."9" of sample indices, in the data set's order."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    return [(str(d), np.flatnonzero(target == d).tolist()) for d in range(10)]


def _digits_images(indices: list[int], size: int, channels: int) -> torch.Tensor:
    """The digits at `indices` (16 grey levels) as 8-bit images resized like files."""
    from sklearn.datasets import load_digits

    pixels = load_digits().images[indices] * (255.0 / 16.0)
    arrays = [
        np.asarray(
            Image.fromarray(p.round().astype(np.uint8)).resize(
                (size, size), Image.Resampling.BILINEAR
            )
        )
        for p in pixels
    ]
    return _normalised(torch.from_numpy(np.stack(arrays))[:, None], channels, grey=True)


def _class_split(folder: Path, classes: Classes, split: str) -> list[tuple[int, Path]]:
    if split != "all" and len(classes) < 2:
        raise DataError(
            f"{folder}: only class '{classes[0][0]}'; class-disjoint splits need at least 2"
        )
    first_val = len(classes) - max(1, len(classes) // _VAL_CLASS_FRACTION)
    keep = {"train": range(first_val), "val": range(first_val, len(classes))}.get(
        split, range(len(classes))
    )
    return [(label, path) for label in keep for path in classes[label][1]]


def _image_split(folder: Path, classes: Classes, split: str) -> list[tuple[int, Path]]:
    for name, files in classes:
        if len(files) < 2:
            raise DataError(
                f"{folder}: class '{name}' has {len(files)} image; "
                "classification splits need at least 2 images per class"
            )
    return [
        (label, path)
        for label, (_, files) in enumerate(classes)
        for k, path in enumerate(files)
        if split == "all" or (split == "val") == (k % _VAL_EVERY == _VAL_EVERY - 1)
    ]


def _camera(path: Path) -> int:
    match = CAMERA.search(path.name)
    if match is None:
        raise DataError(
            f"{path}: no camera id in the file name; reidentification needs c<number> in it "
            "(Market-1501 style, e.g. 0002_c1s1_000451_03.jpg)"
        )
    return int(match.group(1))


def _read_images(paths: list[Path], size: int, channels: int) -> torch.Tensor:
    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(image))
        except OSError as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
    pixels = torch.from_numpy(np.stack(arrays))
    pixels = pixels.permute(0, 3, 1, 2) if mode == "RGB" else pixels[:, None]
    return _normalised(pixels, channels, grey=mode == "L")


def _normalised(pixels: torch.Tensor, channels: int, grey: bool) -> torch.Tensor:
    """(N, C, H, W) uint8 -> float32 (x / 255 - 0.5) / 0.5, grey repeated to `channels`."""
    images = pixels.float().div_(127.5).sub_(1.0)
    return images.expand(-1, channels, -1, -1).contiguous() if grey else images
