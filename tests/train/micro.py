"""A training set-up small enough for tests: a 2-task micro space, class-patterned images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

SPACE = {
    "name": "micro",
    "backbone": {
        "image_size": 32, "patch_size": 16, "in_chans": 3, "embed_dim": 16, "head_dim": 8,
        "qkv_bias": True, "drop_path_rate": 0.0, "depth": [1, 2], "num_heads": [1, 2],
        "mlp_ratio": [1.0, 2.0],
    },
    "tasks": {
        "face": {"kind": "face_verification", "embed_dim": 8, "paths": ["shared", "task", "mix"],
                 "data": "faces"},
        "object": {"kind": "retrieval", "embed_dim": 8, "paths": ["shared", "mix"],
                   "data": "objects"},
    },
}  # fmt: skip


def recipe(space: Path, **changes) -> dict:
    data = {
        "space": str(space),
        "seed": 3,
        "tasks": {
            "face": {"margin": 0.2, "scale": 16, "classes_per_batch": 4, "images_per_class": 2},
            "object": {"loss": "cosface", "scale": 16, "batch_size": 8},
        },
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
        "warmup_steps": 2,
        "router": {"tau": 5.0, "hard": True},
        "checkpoint_every": 2,
        "validate_every": 0,
        "stages": {"task": {"steps": 4}, "chip": {"steps": 4, "random_subnets": 1}},
    }
    data.update(changes)
    return data


def write_images(folder: Path, classes: int, per_class: int, seed: int) -> None:
    """Class folders of 16x16 grey PNGs: a fixed pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        pattern = rng.uniform(0, 255, (16, 16))
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = np.clip(pattern + rng.normal(0, 25, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"c{c}" / f"{k}.png")


def write_setup(root: Path, **changes) -> tuple[Path, Path]:
    """(space file, recipe file) under `root`; images under root/data (UFO_NAS_DATA)."""
    write_images(root / "data" / "faces", classes=8, per_class=4, seed=0)
    write_images(root / "data" / "objects", classes=8, per_class=6, seed=1)
    space = root / "micro.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(space, **changes)))
    return space, path
