"""Task metrics on numpy arrays; embeddings are compared by cosine similarity.

face_verification: LFW-style 10-fold pair accuracy; reidentification: Market-1501 mAP and
rank-1; retrieval: Stanford Online Products Recall@K; classification: top-1 accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ufo_nas.data.datasets import DataError, ImageSet
from ufo_nas.spec import TASK_KINDS

PRIMARY_METRIC: dict[str, str] = {
    "face_verification": "accuracy",
    "reidentification": "mAP",
    "retrieval": "recall@1",
    "classification": "top1",
}
_CHUNK = 512  # query rows per similarity block


def _matrix(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise DataError(f"{what} must be a non-empty (N, D) array, got shape {values.shape}")
    return values


def _vector(values: np.ndarray, what: str, length: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (length,):
        raise DataError(f"{what} must have shape ({length},) to match its rows, got {values.shape}")
    return values


def _unit(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def verification_pairs(
    labels: np.ndarray, rng_seed: int = 0, max_pairs: int = 3000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All same-label pairs (a random `max_pairs` of them if more) plus as many random
    distinct different-label pairs (fewer only if fewer exist).

    Returns (i, j, same): int64 indices with i < j and a bool array, positives first;
    the same for the same labels and seed.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(rng_seed)
    blocks = [np.empty((0, 2), dtype=np.int64)]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        a, b = np.triu_indices(len(members), k=1)
        blocks.append(np.stack([members[a], members[b]], axis=1))
    pos = np.concatenate(blocks)
    if len(pos) > max_pairs:
        pos = pos[np.sort(rng.choice(len(pos), max_pairs, replace=False))]
    n = len(labels)
    counts = np.unique(labels, return_counts=True)[1]
    need = min(len(pos), n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum()))
    neg: dict[tuple[int, int], None] = {}  # insertion-ordered set
    while len(neg) < need:
        draws = rng.integers(0, n, size=(2, 2 * (need - len(neg)) + 16))
        for a, b in zip(draws.min(axis=0), draws.max(axis=0)):
            if labels[a] != labels[b]:
                neg[int(a), int(b)] = None
                if len(neg) == need:
                    break
    pairs = np.concatenate([pos, np.array(list(neg), dtype=np.int64).reshape(-1, 2)])
    same = np.arange(len(pairs)) < len(pos)
    return pairs[:, 0], pairs[:, 1], same


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (midway between scores) with the best accuracy of `score > t` == same."""
    values = np.unique(scores)
    candidates = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    correct = len(pos) - np.searchsorted(pos, candidates, "right")
    correct += np.searchsorted(neg, candidates, "right")
    return float(candidates[np.argmax(correct)])


def verification_accuracy(
    embeddings: np.ndarray, labels: np.ndarray, folds: int = 10, seed: int = 0
) -> float:
    """LFW protocol: `verification_pairs`, split at random into `folds` folds; for each fold
    the threshold with the best accuracy on the other folds is applied to it; mean accuracy."""
    embeddings = _unit(_matrix(embeddings, "embeddings"))
    labels = _vector(labels, "labels", len(embeddings))
    i, j, same = verification_pairs(labels, rng_seed=seed)
    if same.all() or not same.any():
        raise DataError(
            "verification needs at least one identity with 2 images and at least 2 identities"
        )
    if folds < 2 or len(same) < folds:
        raise DataError(f"cannot split {len(same)} pairs into {folds} folds; need 2 <= folds")
    scores = np.einsum("nd,nd->n", embeddings[i], embeddings[j])
    fold = np.empty(len(same), dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(len(same))] = np.arange(len(same)) % folds
    accuracies = []
    for k in range(folds):
        test = fold == k
        threshold = _best_threshold(scores[~test], same[~test])
        accuracies.append(np.mean((scores[test] > threshold) == same[test]))
    return float(np.mean(accuracies))


def split_query_gallery(labels: np.ndarray, cameras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query per (id, camera) pair, the first by index; every other image is gallery."""
    labels = np.asarray(labels)
    cameras = _vector(cameras, "cameras", len(labels))
    keys = np.stack([labels, cameras], axis=1)
    query = np.sort(np.unique(keys, axis=0, return_index=True)[1]).astype(np.int64)
    gallery = np.setdiff1d(np.arange(len(labels)), query).astype(np.int64)
    return query, gallery


def reid_map_rank1(
    query_emb: np.ndarray,
    query_ids: np.ndarray,
    query_cams: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_ids: np.ndarray,
    gallery_cams: np.ndarray,
) -> tuple[float, float]:
    """Market-1501 protocol: per query, gallery images of its id AND camera are dropped, the
    rest ranked by similarity (ties by index); AP averages the precision at each positive.
    Queries without a positive left are skipped. Returns (mAP, rank-1)."""
    query = _unit(_matrix(query_emb, "query embeddings"))
    gallery = _unit(_matrix(gallery_emb, "gallery embeddings"))
    if query.shape[1] != gallery.shape[1]:
        raise DataError(f"query width {query.shape[1]} != gallery width {gallery.shape[1]}")
    q_ids = _vector(query_ids, "query ids", len(query))
    q_cams = _vector(query_cams, "query cameras", len(query))
    g_ids = _vector(gallery_ids, "gallery ids", len(gallery))
    g_cams = _vector(gallery_cams, "gallery cameras", len(gallery))
    aps, hits = [], []
    for start in range(0, len(query), _CHUNK):
        rows = slice(start, start + _CHUNK)
        order = np.argsort(-(query[rows] @ gallery.T), axis=1, kind="stable")
        same_id = g_ids[order] == q_ids[rows, None]
        valid = ~(same_id & (g_cams[order] == q_cams[rows, None]))
        match = same_id & valid
        ranks = np.cumsum(valid, axis=1)  # 1-based rank among the valid items
        num_pos = match.sum(axis=1)
        keep = num_pos > 0
        precision = np.cumsum(match, axis=1) / np.maximum(ranks, 1)
        aps.append(((precision * match).sum(axis=1) / np.maximum(num_pos, 1))[keep])
        first = np.argmax(valid, axis=1)
        hits.append(match[np.arange(len(order)), first][keep])
    aps, hits = np.concatenate(aps), np.concatenate(hits)
    if len(aps) == 0:
        raise DataError(
            "no query has a gallery image of its id from another camera; cannot score re-id"
        )
    return float(aps.mean()), float(hits.mean())


def recall_at_k(
    embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """SOP protocol, leave-one-out: each image queries all others; a hit at k if any of its
    k nearest shares its label. Returns {k: recall}."""
    embeddings = _unit(_matrix(embeddings, "embeddings"))
    labels = _vector(labels, "labels", len(embeddings))
    if len(embeddings) < 2:
        raise DataError("recall@k needs at least 2 embeddings")
    if not ks or min(ks) < 1:
        raise DataError(f"ks must be positive integers, got {tuple(ks)}")
    depth = min(max(ks), len(embeddings) - 1)
    hits = []
    for start in range(0, len(embeddings), _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, len(embeddings)))
        sims = embeddings[rows] @ embeddings.T
        sims[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        top = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1
        )
        hits.append(np.cumsum(labels[top] == labels[rows, None], axis=1) > 0)
    hits = np.concatenate(hits)
    return {k: float(hits[:, min(k, depth) - 1].mean()) for k in ks}


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose largest logit is at the label."""
    logits = _matrix(logits, "logits")
    labels = _vector(labels, "labels", len(logits))
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def evaluate_embeddings(kind: str, outputs: np.ndarray, data: ImageSet) -> dict[str, float]:
    """The metrics of a task kind on model outputs for `data`, primary metric first.

    face_verification -> accuracy; reidentification -> mAP, rank1 (queries by
    `split_query_gallery`); retrieval -> recall@1, recall@5; classification -> top1 (outputs
    are logits over all classes of the folder).
    """
    outputs = _matrix(outputs, "outputs")
    if len(outputs) != len(data):
        raise DataError(f"{len(outputs)} outputs for {len(data)} images of {data.name}")
    if kind == "face_verification":
        return {"accuracy": verification_accuracy(outputs, data.labels)}
    if kind == "reidentification":
        if data.cameras is None:
            raise DataError(f"{data.name} has no camera ids; reidentification needs them")
        q, g = split_query_gallery(data.labels, data.cameras)
        mean_ap, rank1 = reid_map_rank1(
            outputs[q], data.labels[q], data.cameras[q], outputs[g], data.labels[g], data.cameras[g]
        )
        return {"mAP": mean_ap, "rank1": rank1}
    if kind == "retrieval":
        recall = recall_at_k(outputs, data.labels, (1, 5))
        return {"recall@1": recall[1], "recall@5": recall[5]}
    if kind == "classification":
        classes = int(data.labels.max()) + 1
        if outputs.shape[1] < classes:
            raise DataError(
                f"logits have {outputs.shape[1]} columns but {data.name} has labels up to "
                f"{classes - 1}; need at least {classes}"
            )
        return {"top1": top1_accuracy(outputs, data.labels)}
    raise DataError(f"unknown task kind '{kind}'; allowed: {', '.join(TASK_KINDS)}")
