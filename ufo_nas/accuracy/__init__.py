"""Accuracy: the table of evaluated subnets, GP-NAS predictors with active sampling, and the
baselines they are measured against."""

from ufo_nas.accuracy.active import select_informative
from ufo_nas.accuracy.features import ArchFeatures
from ufo_nas.accuracy.gpnas import GPNAS, LinearProxy, PredictorError
from ufo_nas.accuracy.table import (
    AccuracyRecord,
    AccuracyTable,
    TaskTargets,
    accuracy_table_path,
)
from ufo_nas.accuracy.task_predictors import (
    fit_task_predictors,
    load_task_predictor,
    predictor_path,
    share_strength,
)

__all__ = [
    "GPNAS",
    "AccuracyRecord",
    "AccuracyTable",
    "ArchFeatures",
    "LinearProxy",
    "PredictorError",
    "TaskTargets",
    "accuracy_table_path",
    "fit_task_predictors",
    "load_task_predictor",
    "predictor_path",
    "select_informative",
    "share_strength",
]
