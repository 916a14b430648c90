"""Accuracy predictors: GP-NAS with active sampling, and the baselines it is measured against."""

from ufo_nas.predictor.active import select_informative
from ufo_nas.predictor.features import ArchFeatures
from ufo_nas.predictor.gpnas import GPNAS, LinearProxy, PredictorError
from ufo_nas.predictor.tasks import (
    fit_task_predictors,
    load_task_predictor,
    predictor_path,
    share_strength,
)

__all__ = [
    "GPNAS",
    "ArchFeatures",
    "LinearProxy",
    "PredictorError",
    "fit_task_predictors",
    "load_task_predictor",
    "predictor_path",
    "select_informative",
    "share_strength",
]
