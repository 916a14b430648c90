import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ufo_nas import Arch, ArchError, SearchSpace, SpecError
from ufo_nas.spec import space_spec_from_dict


def brute_force_size(space: SearchSpace) -> int:
    """Count distinct canonical gene rows by enumerating every gene combination."""
    import itertools

    rows = itertools.product(*(range(len(c)) for _, c in space.variables))
    return len({tuple(space.canonical_genes(np.array(r))[0]) for r in rows})


@pytest.fixture()
def micro() -> SearchSpace:
    """A space small enough to enumerate: depth {1, 2}, mixed per-layer choices."""
    spec = space_spec_from_dict(
        {
            "name": "micro",
            "backbone": {
                "image_size": 16,
                "patch_size": 8,
                "embed_dim": 16,
                "head_dim": 8,
                "depth": [1, 2],
                "num_heads": [[1, 2], [2]],
                "mlp_ratio": [1, 2],
            },
            "tasks": {
                "a": {"kind": "retrieval", "embed_dim": 4, "paths": [["shared", "mix"], ["task"]]},
                "b": {"kind": "classification", "embed_dim": 4, "paths": ["shared", "task"]},
            },
        }
    )
    return SearchSpace(spec)


def test_size_is_exact(micro, tiny, base):
    assert micro.size() == brute_force_size(micro) == 2 * 2 * 2 * 2 + 16 * (1 * 2 * 1 * 2)
    # ufo_vit_base trunk: 9^10 + 9^11 + 9^12; each layer also has 3 paths for each of 4 tasks
    assert base.size() == sum((9 * 3**4) ** d for d in (10, 11, 12))
    assert tiny.size() == sum((9 * 3**3) ** d for d in (4, 5, 6))


def test_encode_decode_round_trip(tiny, base):
    rng = np.random.default_rng(0)
    for space in (tiny, base):
        genes = space.sample_genes(rng, 200)
        archs = space.decode_batch(genes)
        assert np.array_equal(space.encode_batch(archs), genes)
        for arch in archs[:20]:
            assert space.parse(arch.to_string()) == arch
            assert Arch.from_json(arch.to_json()) == arch
            assert hash(Arch.parse(str(arch))) == hash(arch)


def test_sample_covers_every_choice(tiny):
    genes = tiny.sample_genes(np.random.default_rng(1), 400)
    assert set(genes[:, 0]) == {0, 1, 2}
    layer0 = genes[:, 1 : 1 + tiny.layers]
    assert set(layer0[:, 0]) == {0, 1, 2}
    assert len({tuple(r) for r in genes}) == 400


def test_ignored_genes_do_not_make_a_new_subnet(tiny):
    genes = tiny.encode(tiny.smallest())
    other = genes.copy()
    other[1 + 5] = 2  # heads of layer 5, past depth 4
    assert tiny.decode(other) == tiny.decode(genes)
    assert np.array_equal(tiny.canonical_genes(other)[0], genes)


def test_check_names_the_bad_value(tiny):
    arch = tiny.smallest()
    bad = Arch(arch.depth, (2, 7, 2, 2), arch.mlp_ratio, arch.paths)
    with pytest.raises(
        ArchError, match=r"layer 1: num_heads 7 not in \[2, 3, 4\] in space 'ufo_vit_tiny'"
    ):
        tiny.check(bad)
    assert bad not in tiny and arch in tiny
    with pytest.raises(ArchError, match=r"depth 3 not in \[4, 5, 6\]"):
        tiny.parse("d3-h2,2,2-m2,2,2-face:sss-object:sss")
    with pytest.raises(ArchError, match=r"layer 2: mlp_ratio 2.5 not in \[2.0, 3.0, 4.0\]"):
        tiny.parse("d4-h2,2,2,2-m2,2,2.5,2-face:ssss-object:ssss")
    with pytest.raises(ArchError, match=r"arch tasks \['face'\] differ"):
        tiny.check(Arch.parse("d4-h2,2,2,2-m2,2,2,2-face:ssss"))  # parse fills in object


def test_restricted_paths_are_enforced(micro):
    with pytest.raises(ArchError, match=r"task 'a' layer 1: path 'shared' not in \['task'\]"):
        micro.parse("d2-h1,2-m1,1-a:ss-b:ss")


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "incomplete"),
        ("x4-h2-m2", "depth must be 'd' and a number"),
        ("d4-2,2,2,2-m2,2,2,2", "heads must start with 'h'"),
        ("d4-h2,a-m2", "heads must be comma-separated integers"),
        ("d4-h2-mfoo", "mlp ratios must be comma-separated numbers"),
        ("d1-h2-m2-face", "a task part must be '<task>:<letters>'"),
        ("d1-h2-m2-face:x", "path letters must be s, t or m"),
        ("d2-h2-m2,2-face:ss", "num_heads has 1 entries, expected one per layer"),
        ("d1-h2-m2-face:s-face:s", "names a task twice"),
        ("d\u00b2-h2-m2", "depth must be 'd' and a number"),  # a digit int() refuses
        ("d" + "1" * 5000 + "-h2-m2", "depth must be 'd' and a number"),  # past int's limit
    ],
)
def test_bad_arch_strings(text, why):
    with pytest.raises(ArchError) as info:
        Arch.parse(text)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_bad_gene_vector(tiny):
    genes = tiny.encode(tiny.largest())
    genes[3] = 9
    with pytest.raises(ArchError, match=r"gene heads.2 = 9 is out of range 0..2"):
        tiny.decode(genes)
    with pytest.raises(ArchError, match="must be 31 integers"):
        tiny.decode(genes[:-1])


def test_arch_json_errors():
    with pytest.raises(ArchError, match="not valid JSON"):
        Arch.from_json("{")
    with pytest.raises(ArchError, match="exactly the keys"):
        Arch.from_json(json.dumps({"depth": 1}))


def test_mutate_changes_and_stays_in_space(tiny):
    rng = np.random.default_rng(3)
    arch = tiny.sample(rng)
    for _ in range(100):
        child = tiny.mutate(arch, rng, prob=0.05)
        assert child != arch and child in tiny
        arch = child


def test_crossover_mixes_parents(micro, tiny):
    rng = np.random.default_rng(4)
    a, b = tiny.smallest(), tiny.largest()
    children = [tiny.crossover(a, b, rng) for _ in range(50)]
    assert all(c in tiny for c in children)
    ga, gb = tiny.encode(a), tiny.encode(b)
    for child in children:
        g = tiny.encode(child)
        active = g != 0
        assert np.all((g == ga) | (g == gb) | ~active)
    assert len(set(children)) > 40


arch_strategy = st.builds(
    lambda depth, heads, ratios, paths: Arch(
        depth,
        tuple(heads[:depth]),
        tuple(ratios[:depth]),
        tuple((f"t{k}", tuple(p[:depth])) for k, p in enumerate(paths)),
    ),
    st.integers(1, 8),
    st.lists(st.integers(1, 64), min_size=8, max_size=8),
    st.lists(st.sampled_from([0.5, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 0.25]), min_size=8, max_size=8),
    st.lists(
        st.lists(st.sampled_from(["shared", "task", "mix"]), min_size=8, max_size=8),
        max_size=4,
    ),
)


@settings(max_examples=300, deadline=None)
@given(arch_strategy)
def test_fuzz_arch_string_round_trip(arch):
    assert Arch.parse(arch.to_string()) == arch
    assert Arch.from_json(arch.to_json()) == arch


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="dhm0123456789,.-:stmafcex ", max_size=40))
def test_fuzz_parse_raises_only_arch_error(text):
    try:
        arch = Arch.parse(text)
    except ArchError as exc:
        assert "\n" not in str(exc)
    else:
        assert Arch.parse(arch.to_string()) == arch


def test_select_tasks_checks_names_and_defaults_to_all(tiny):
    assert tiny.select_tasks() == tiny.select_tasks(()) == tiny.tasks
    assert tiny.select_tasks(["object", "face"]) == ("object", "face")
    with pytest.raises(SpecError, match="unknown task 'car'"):
        tiny.select_tasks(["face", "car"])


def test_a_task_left_out_of_an_arch_string_takes_its_first_path_choice(tiny, micro):
    full = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms-object:ssss")
    assert tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms") == full
    assert tiny.short_string(full, ["face"]) == "d4-h2,3,4,2-m2,3,4,2-face:stms"
    other = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms-object:sssm")
    assert tiny.short_string(other, ["face"]) == other.to_string()  # object is not at default
    assert tiny.parse("d4-h2,3,4,2-m2,3,4,2-object:ssss-face:stms") == full  # any task order
    with pytest.raises(ArchError, match="names task 'car', not one of space 'ufo_vit_tiny'"):
        tiny.parse("d4-h2,3,4,2-m2,3,4,2-car:ssss")
    # a task whose paths exclude shared defaults to its first allowed choice
    assert micro.parse("d2-h1,2-m1,1-b:ss").task_paths("a") == ("shared", "task")


def test_long_bad_arch_strings_are_shortened_in_errors(tiny):
    text = "d4-h" + "2," * 65_000
    with pytest.raises(ArchError) as info:
        tiny.parse(text)
    assert len(str(info.value)) < 300 and "..." in str(info.value)


def huge_spec_dict(tasks: int = 40) -> dict:
    """A space of 3**(256 * tasks) subnets: over 4300 digits, past Python's int->str limit."""
    return {
        "name": "huge",
        "backbone": {
            "image_size": 16,
            "patch_size": 8,
            "embed_dim": 8,
            "head_dim": 8,
            "depth": [256],
            "num_heads": [1],
            "mlp_ratio": [1],
        },
        "tasks": {
            f"t{i}": {"kind": "retrieval", "embed_dim": 4, "paths": ["shared", "task", "mix"]}
            for i in range(tasks)
        },
    }


def test_a_space_of_over_4300_digits_has_a_repr():
    space = SearchSpace(space_spec_from_dict(huge_spec_dict()))
    assert space.size() == 3 ** (256 * 40)
    assert repr(space) == "SearchSpace('huge', 5.27e+4885 subnets)"
