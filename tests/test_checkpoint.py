import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ufo_nas import CheckpointError, UfoError
from ufo_nas.checkpoint import (
    load_subnet,
    load_supernet,
    load_timm_checkpoint,
    read_metadata,
    save_subnet,
    save_supernet,
)
from ufo_nas.supernet import extract


def test_supernet_round_trip(tiny, tiny_supernet, tmp_path):
    path = save_supernet(tiny_supernet, tmp_path / "super.safetensors")
    loaded = load_supernet(path, tiny)
    arch = tiny.sample(np.random.default_rng(0))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images, arch, "face"), tiny_supernet(images, arch, "face"))
    assert read_metadata(path)["fingerprint"] == tiny.spec.fingerprint()


def test_subnet_round_trip_keeps_arch_and_tasks(tiny, tiny_supernet, tmp_path):
    arch = tiny.sample(np.random.default_rng(1))
    subnet = extract(tiny_supernet, arch, ["object", "face"])
    path = save_subnet(subnet, tmp_path / "sub.safetensors")
    loaded = load_subnet(path, tiny.spec)
    assert loaded.arch == arch and loaded.tasks == ("object", "face")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(loaded(images), subnet(images)):
            assert torch.equal(got, want)


def test_loading_into_another_space_is_a_clear_error(tiny_supernet, base, tmp_path):
    path = save_supernet(tiny_supernet, tmp_path / "super.safetensors")
    with pytest.raises(
        CheckpointError, match=r"saved for space 'ufo_vit_tiny' .* not for 'ufo_vit_base'"
    ):
        load_supernet(path, base)


def test_kind_mismatch_and_foreign_files(tiny, tiny_supernet, tmp_path):
    path = save_supernet(tiny_supernet, tmp_path / "super.safetensors")
    with pytest.raises(CheckpointError, match="holds a supernet, not a subnet"):
        load_subnet(path)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a ufo-nas checkpoint"):
        load_supernet(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_supernet(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_supernet(tmp_path / "missing.safetensors")


def test_never_overwrites(tiny_supernet, tmp_path):
    path = tmp_path / "super.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(UfoError, match="already exists"):
        save_supernet(tiny_supernet, path)
    assert path.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [path]


def test_timm_checkpoint_errors(tiny, tmp_path):
    from ufo_nas.supernet import SuperViT

    supernet = SuperViT(tiny.spec)
    partial = tmp_path / "partial.pth"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 192)}}, partial)
    with pytest.raises(CheckpointError, match="partial.pth: not a timm ViT state dict"):
        load_timm_checkpoint(supernet, partial)
    wrong = {k: v for k, v in supernet.state_dict().items()}
    wrong["norm.weight"] = torch.zeros(7)
    wrong_path = tmp_path / "wrong.pth"
    torch.save(wrong, wrong_path)
    with pytest.raises(CheckpointError, match=r"'norm.weight' has shape \(7,\)"):
        load_timm_checkpoint(supernet, wrong_path)


def test_checkpoints_get_the_usual_file_mode(tiny_supernet, tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = save_supernet(tiny_supernet, tmp_path / "s.safetensors")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # safetensors itself writes 0600


def _with_header(path: Path, out: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of checkpoint `path` whose ufo-nas header went through `edit`."""
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["ufo_nas"])
    edit(header)
    save_file(load_file(str(path)), str(out), metadata={"ufo_nas": json.dumps(header)})
    return out


@pytest.mark.parametrize(
    "edit, message",
    [  # found by tools/fuzz_loaders.py: TypeError from torch, NaN accepted
        (
            lambda h: h["space"]["backbone"].update(in_chans=10**30),
            r"\(stored space\): backbone.in_chans: expected an integer from 1 to 64",
        ),
        (
            lambda h: h["space"]["backbone"]["mlp_ratio"][0].__setitem__(0, float("inf")),
            r"backbone.mlp_ratio\[0\]\[0\]: expected a number in \(0, 64\], got inf",
        ),
        (lambda h: h.update(fingerprint=float("nan")), "header's fingerprint is nan, not a string"),
        (lambda h: h.pop("fingerprint"), r"not a ufo-nas checkpoint \(no 'fingerprint'\)"),
        (
            lambda h: h["space"]["backbone"].update(in_chans=4),
            r"the stored space has fingerprint .* \(a corrupt checkpoint\)",
        ),
    ],
    ids=["huge in_chans", "inf mlp_ratio", "nan fingerprint", "no fingerprint", "edited space"],
)
def test_a_corrupt_header_is_one_clear_line(tiny_supernet, tmp_path, edit, message):
    path = save_supernet(tiny_supernet, tmp_path / "super.safetensors")
    bad = _with_header(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match=message) as info:
        load_supernet(bad)
    assert "\n" not in str(info.value)


def test_a_subnet_header_needs_an_arch_and_tasks(tiny, tiny_supernet, tmp_path):
    path = save_subnet(
        extract(tiny_supernet, tiny.smallest(), ["face"]), tmp_path / "s.safetensors"
    )
    bad = _with_header(path, tmp_path / "bad.safetensors", lambda h: h.update(tasks="face"))
    with pytest.raises(CheckpointError, match="needs an arch string and a list of task names"):
        load_subnet(bad)
