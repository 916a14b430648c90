"""Training the UFO supernet: recipe -> batches and heads -> stages -> trainer."""

from ufo_nas.train.recipe import Recipe, RecipeError, load_recipe, recipe_from_dict
from ufo_nas.train.trainer import Trainer, TrainingError, TrainResult

__all__ = [
    "Recipe",
    "RecipeError",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "load_recipe",
    "recipe_from_dict",
]
