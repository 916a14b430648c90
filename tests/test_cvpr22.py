import json

import pytest
from conftest import DATASETS

from ufo_nas import ArchError
from ufo_nas.cvpr22 import decode_cvpr22, encode_cvpr22, parse_arch

RECORDS = DATASETS / "cvpr22_ufo_vit_base" / "train_400.json"


def test_readme_example(base):
    arch = decode_cvpr22(base, "j111231321311311221231121111231000000")
    assert arch.depth == 10
    assert arch.num_heads == (12, 11, 10, 10, 10, 11, 11, 12, 12, 11)
    assert arch.mlp_ratio == (4.0, 3.0, 3.5, 4.0, 4.0, 3.5, 3.0, 3.5, 4.0, 3.0)
    assert all(p == ("shared",) * 10 for _, p in arch.paths)


@pytest.mark.skipif(not RECORDS.is_file(), reason="shared datasets not beside the project")
def test_all_400_real_archs_decode_and_round_trip(base):
    records = json.loads(RECORDS.read_text())
    archs = [decode_cvpr22(base, r["arch"]) for r in records.values()]
    assert len(archs) == 400 and all(a in base for a in archs)
    assert {a.depth for a in archs} == {10, 11, 12}
    for record, arch in zip(records.values(), archs):
        assert encode_cvpr22(arch) == record["arch"]
        assert base.parse(arch.to_string()) == arch


@pytest.mark.parametrize(
    "text, why",
    [
        ("j11123", "expected 37 characters"),
        ("m" + "111" * 12, "depth letter 'm' not one of j/k/l"),
        ("j" + "111" * 11 + "000", "layer 10 is past depth 10 and must be '000', got '111'"),
        ("l" + "111" * 11 + "411", "layer 11 group '411' must be [123][123]1"),
        ("j" + "111" * 9 + "000" * 3, "layer 9 group '000'"),
    ],
)
def test_bad_competition_strings(base, text, why):
    with pytest.raises(ArchError, match="competition arch string") as info:
        decode_cvpr22(base, text)
    assert why in str(info.value)


def test_parse_arch_reads_every_form_a_user_writes(base):
    competition = "j111231321311311221231121111231000000"
    assert parse_arch(base, "largest") == base.largest()
    assert parse_arch(base, "smallest") == base.smallest()
    assert parse_arch(base, competition) == decode_cvpr22(base, competition)
    text = base.smallest().to_string()
    assert parse_arch(base, text) == base.parse(text)
    with pytest.raises(ArchError):
        parse_arch(base, "d9-h1-m1")
