"""Real image sets for the tasks of a space, and the metrics that score them."""

from ufo_nas.data.datasets import (
    DataError,
    ImageSet,
    datasets_root,
    load_task_data,
    read_image_folder,
)
from ufo_nas.data.metrics import (
    PRIMARY_METRIC,
    evaluate_embeddings,
    recall_at_k,
    reid_map_rank1,
    split_query_gallery,
    top1_accuracy,
    verification_accuracy,
    verification_pairs,
)

__all__ = [
    "PRIMARY_METRIC",
    "DataError",
    "ImageSet",
    "datasets_root",
    "evaluate_embeddings",
    "load_task_data",
    "read_image_folder",
    "recall_at_k",
    "reid_map_rank1",
    "split_query_gallery",
    "top1_accuracy",
    "verification_accuracy",
    "verification_pairs",
]
