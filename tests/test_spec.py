from pathlib import Path

import pytest
import yaml

from ufo_nas import SpecError, load_space_spec
from ufo_nas.errors import ArchError, UfoError
from ufo_nas.spec import space_spec_from_dict, space_spec_from_yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_dict() -> dict:
    return yaml.safe_load((ROOT / "search_spaces" / "ufo_vit_tiny.yaml").read_text())


def test_shipped_spaces_load():
    base = load_space_spec("ufo_vit_base")
    assert base.embed_dim == 768 and base.head_dim == 64 and base.depths == (10, 11, 12)
    assert base.num_heads == ((10, 11, 12),) * 12
    assert base.mlp_ratios == ((3.0, 3.5, 4.0),) * 12
    assert base.task_names == ("face", "person", "vehicle", "product")
    assert base.task("person").benchmarks == ("market1501", "dukemtmc", "msmt17")
    tiny = load_space_spec(ROOT / "search_spaces" / "ufo_vit_tiny.yaml")
    assert tiny.num_tokens == 17 and tiny.max_depth == 6


def test_per_layer_form_and_round_trip():
    data = tiny_dict()
    data["backbone"]["num_heads"] = [[4], [3, 4], [2, 3, 4], [4], [4], [1, 4]]
    spec = space_spec_from_dict(data)
    assert spec.num_heads[1] == (3, 4) and spec.num_heads[5] == (1, 4)
    assert space_spec_from_dict(spec.to_dict()) == spec
    assert space_spec_from_dict(spec.to_dict()).fingerprint() == spec.fingerprint()


def test_fingerprint_ignores_training_only_keys_but_not_shape():
    data = tiny_dict()
    spec = space_spec_from_dict(data)
    data["backbone"]["drop_path_rate"] = 0.2
    assert space_spec_from_dict(data).fingerprint() == spec.fingerprint()
    data["backbone"]["depth"] = [5, 6]
    assert space_spec_from_dict(data).fingerprint() != spec.fingerprint()


def mutate(edit):
    data = tiny_dict()
    edit(data)
    return data


BAD_SPECS = {
    "missing key": (lambda d: d["backbone"].pop("embed_dim"), "backbone.embed_dim: missing"),
    "wrong type": (
        lambda d: d["backbone"].update(image_size="big"),
        "backbone.image_size: expected an integer",
    ),
    "empty choices": (
        lambda d: d["backbone"].update(depth=[]),
        "backbone.depth: expected a non-empty list",
    ),
    "heads x head dim": (
        lambda d: d["backbone"].update(head_dim=48),
        "max heads 4 x head_dim 48 = 192, must equal embed_dim 128",
    ),
    "unknown path kind": (
        lambda d: d["tasks"]["face"].update(paths=["shared", "expert"]),
        "tasks.face.paths[1]: unknown path kind 'expert'; allowed: shared, task, mix",
    ),
    "unknown key": (lambda d: d["backbone"].update(dept=[3]), "backbone.dept: unknown key"),
    "unknown task kind": (
        lambda d: d["tasks"]["face"].update(kind="detection"),
        "tasks.face.kind: unknown kind 'detection'",
    ),
    "repeated choice": (
        lambda d: d["backbone"].update(mlp_ratio=[2.0, 2.0]),
        "choices repeat a value",
    ),
    "patch does not divide": (
        lambda d: d["backbone"].update(patch_size=7),
        "backbone.patch_size: 7 does not divide image_size 64",
    ),
    "per-layer length": (
        lambda d: d["backbone"].update(num_heads=[[4], [4]]),
        "per-layer form needs 6 lists (max depth), got 2",
    ),
    "fractional width": (
        lambda d: d["backbone"].update(mlp_ratio=[2.001]),
        "is not a whole number of channels",
    ),
    "no tasks": (lambda d: d.update(tasks={}), "tasks: expected a non-empty mapping"),
    # found by tools/fuzz_loaders.py: NaN, inf and huge values raised ValueError,
    # OverflowError or MemoryError (after 37 s) instead
    "ratio NaN": (
        lambda d: d["backbone"].update(mlp_ratio=[2.0, float("nan")]),
        "backbone.mlp_ratio[1]: expected a number in (0, 64], got nan",
    ),
    "ratio 1e308": (
        lambda d: d["backbone"].update(mlp_ratio=[1e308]),
        "backbone.mlp_ratio[0]: expected a number in (0, 64], got 1e+308",
    ),
    "ratio under one channel": (
        lambda d: d["backbone"].update(mlp_ratio=[1e-300]),
        "embed_dim 128 x 1e-300 is not a whole number of channels (at least 1)",
    ),
    "huge depth": (
        lambda d: d["backbone"].update(depth=[4, 10**30]),
        "backbone.depth[1]: expected an integer from 1 to 256, got 1000000000000000000000000000000",
    ),
    "deep": (
        lambda d: d["backbone"].update(depth=[5_000_000]),
        "backbone.depth[0]: expected an integer from 1 to 256, got 5000000",
    ),
    "many heads": (
        lambda d: d["backbone"].update(num_heads=[2048], head_dim=1, embed_dim=2048),
        "backbone.num_heads[0]: expected an integer from 1 to 1024, got 2048",
    ),
    "huge in_chans": (
        lambda d: d["backbone"].update(in_chans=10**30),
        "backbone.in_chans: expected an integer from 1 to 64",
    ),
    "huge image": (
        lambda d: d["backbone"].update(image_size=16384),
        "backbone.image_size: expected an integer from 1 to 8192, got 16384",
    ),
    "patch over image": (
        lambda d: d["backbone"].update(patch_size=128),
        "backbone.patch_size: expected an integer from 1 to 64, got 128",
    ),
    "huge task width": (
        lambda d: d["tasks"]["face"].update(embed_dim=70000),
        "tasks.face.embed_dim: expected an integer from 1 to 65536, got 70000",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_one_clear_line(case):
    edit, expected = BAD_SPECS[case]
    with pytest.raises(SpecError) as info:
        space_spec_from_dict(mutate(edit), source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ") and expected in message
    assert "\n" not in message


def test_malformed_yaml_names_file_and_line():
    with pytest.raises(SpecError, match=r"^broken.yaml: not valid YAML at line 3, column 4"):
        space_spec_from_yaml("name: x\nbackbone: {a: 1\n  b: [}\n", "broken.yaml")


def test_unknown_space_lists_shipped_ones():
    with pytest.raises(UfoError, match="ufo_vit_base, ufo_vit_tiny"):
        load_space_spec("ufo_vit_huge")


def test_unknown_task_lists_tasks():
    with pytest.raises(SpecError, match="unknown task 'cat'.*tasks: face, object"):
        load_space_spec("ufo_vit_tiny").task("cat")


def test_task_lists_are_checked_once_for_all_callers():
    spec = load_space_spec("ufo_vit_tiny")
    assert spec.check_tasks("face") == ("face",)
    assert spec.check_tasks(["object", "face"]) == ("object", "face")
    with pytest.raises(SpecError, match="unknown task 'cat'"):
        spec.check_tasks(["face", "cat"])
    for tasks in ([], ["face", "face"]):
        with pytest.raises(ArchError, match="non-empty list of distinct tasks"):
            spec.check_tasks(tasks)
