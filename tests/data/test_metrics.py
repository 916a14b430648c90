import numpy as np
import pytest
import torch
from conftest import DATASETS

from ufo_nas.data import (
    PRIMARY_METRIC,
    DataError,
    ImageSet,
    evaluate_embeddings,
    load_task_data,
    recall_at_k,
    reid_map_rank1,
    split_query_gallery,
    top1_accuracy,
    verification_accuracy,
    verification_pairs,
)

LABELS = np.repeat(np.arange(10), 10)  # ORL val sized: 10 identities x 10 images


def one_hot(labels: np.ndarray, width: int = 16) -> np.ndarray:
    return np.eye(width)[labels]


def at_angles(*radians: float) -> np.ndarray:
    """Unit 2-D vectors; cosine similarity to (1, 0) falls as the angle grows."""
    return np.array([[np.cos(a), np.sin(a)] for a in radians])


def test_verification_pairs_balanced_valid_and_deterministic():
    i, j, same = verification_pairs(LABELS, rng_seed=3)
    assert same.sum() == 10 * 45 and (~same).sum() == 450
    assert (i < j).all() and len(set(zip(i, j))) == len(i)
    assert ((LABELS[i] == LABELS[j]) == same).all()
    again = verification_pairs(LABELS, rng_seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((i, j, same), again))
    other = verification_pairs(LABELS, rng_seed=4)
    assert not np.array_equal(j[~same], other[1][~other[2]])
    i, j, same = verification_pairs(LABELS, max_pairs=100)
    assert same.sum() == 100 and (~same).sum() == 100


def test_verification_perfect_and_random():
    assert verification_accuracy(one_hot(LABELS), LABELS) == 1.0
    rng = np.random.default_rng(0)
    accuracies = [verification_accuracy(rng.normal(size=(100, 32)), LABELS) for _ in range(5)]
    assert abs(np.mean(accuracies) - 0.5) < 0.05
    with pytest.raises(DataError, match="shape"):
        verification_accuracy(one_hot(LABELS), LABELS[:-1])
    with pytest.raises(DataError, match="at least 2 identities"):
        verification_accuracy(one_hot(np.zeros(5, dtype=int)), np.zeros(5, dtype=int))


def test_reid_perfect_embeddings():
    ids = np.array([0, 0, 1, 1, 2, 2])
    cams = np.array([1, 2, 1, 2, 1, 2])
    assert reid_map_rank1(one_hot(ids), ids, cams, one_hot(ids), ids, cams) == (1.0, 1.0)


def test_reid_hand_computed_ap():
    # ranking for the query: pos, neg, pos -> AP = (1/1 + 2/3) / 2, rank-1 hit
    query = at_angles(0.0)
    gallery = at_angles(0.1, 0.2, 0.3)
    m_ap, rank1 = reid_map_rank1(query, [0], [1], gallery, [0, 1, 0], [2, 2, 2])
    assert m_ap == pytest.approx((1 + 2 / 3) / 2) and rank1 == 1.0


def test_reid_drops_same_id_same_camera():
    query, gallery = at_angles(0.0), at_angles(0.1, 0.2, 0.3)
    ids = [0, 1, 0]
    # the nearest gallery image is the query's id on ANOTHER camera: ranking pos, neg, pos
    assert reid_map_rank1(query, [0], [1], gallery, ids, [2, 2, 2]) == (pytest.approx(5 / 6), 1.0)
    # on the SAME camera it is dropped: ranking neg, pos -> AP 1/2, rank-1 miss
    assert reid_map_rank1(query, [0], [1], gallery, ids, [1, 2, 2]) == (0.5, 0.0)
    # a query whose only positive shares its camera is skipped; none left is an error
    with pytest.raises(DataError, match="no query"):
        reid_map_rank1(query, [0], [1], gallery, [0, 1, 1], [1, 2, 2])
    with pytest.raises(DataError, match="gallery ids"):
        reid_map_rank1(query, [0], [1], gallery, [0, 1], [1, 2, 2])


def test_split_query_gallery_one_query_per_id_camera():
    ids = np.array([5, 5, 5, 7, 7, 5])
    cams = np.array([1, 1, 2, 1, 1, 2])
    query, gallery = split_query_gallery(ids, cams)
    assert query.tolist() == [0, 2, 3] and gallery.tolist() == [1, 4, 5]


def test_recall_at_k():
    assert recall_at_k(one_hot(LABELS), LABELS) == {1: 1.0, 5: 1.0}
    # neighbours in order: 0 -> 2 1 3, 1 -> 2 0 3, 2 -> 0 1 3, 3 -> 1 2 0
    emb = at_angles(0.0, 0.3, 0.1, 1.5)
    assert recall_at_k(emb, np.array([0, 0, 1, 1]), ks=(1, 2, 3)) == {1: 0.0, 2: 0.75, 3: 1.0}
    rng = np.random.default_rng(1)
    recall = recall_at_k(rng.normal(size=(100, 16)), LABELS, ks=(1, 2, 5, 10, 99, 500))
    values = [recall[k] for k in (1, 2, 5, 10, 99, 500)]
    assert values == sorted(values) and values[-2:] == [1.0, 1.0] and values[0] < 0.5


def test_top1_accuracy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 9.0]])
    assert top1_accuracy(logits, np.array([0, 1, 2, 2])) == 0.75


def fake_set(labels, cameras=None) -> ImageSet:
    n = len(labels)
    return ImageSet("fake:val", torch.zeros(n, 1, 2, 2), np.asarray(labels), cameras, ("x",) * n)


@pytest.mark.parametrize(
    "kind, keys",
    [
        ("face_verification", ["accuracy"]),
        ("reidentification", ["mAP", "rank1"]),
        ("retrieval", ["recall@1", "recall@5"]),
        ("classification", ["top1"]),
    ],
)
def test_evaluate_embeddings_keys_primary_first(kind, keys):
    cameras = np.tile([1, 2], 50)
    result = evaluate_embeddings(kind, one_hot(LABELS), fake_set(LABELS, cameras))
    assert list(result) == keys and keys[0] == PRIMARY_METRIC[kind]
    assert all(value == 1.0 for value in result.values())


def test_evaluate_embeddings_errors():
    with pytest.raises(DataError, match="need at least 10"):
        evaluate_embeddings("classification", np.zeros((100, 9)), fake_set(LABELS))
    with pytest.raises(DataError, match="99 outputs for 100 images"):
        evaluate_embeddings("retrieval", np.zeros((99, 4)), fake_set(LABELS))
    with pytest.raises(DataError, match="no camera ids"):
        evaluate_embeddings("reidentification", np.zeros((100, 4)), fake_set(LABELS))
    with pytest.raises(DataError, match="unknown task kind"):
        evaluate_embeddings("detection", np.zeros((100, 4)), fake_set(LABELS))


@pytest.mark.skipif(not (DATASETS / "coil20_32").is_dir(), reason=f"no coil20_32 in {DATASETS}")
def test_raw_pixels_retrieve_real_coil20_objects(tiny):
    data = load_task_data(tiny.spec, "object", "val", root=DATASETS)
    result = evaluate_embeddings("retrieval", data.images.flatten(1).numpy(), data)
    assert result["recall@1"] > 0.5  # chance: 49 of 249 others share the label, ~0.2
    assert result["recall@5"] >= result["recall@1"]
