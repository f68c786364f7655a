"""Training and evaluation: Lightning module and data module, kornia augmentation, recipes.

``train(recipe, out_dir)`` runs a recipe (``agekit train``); ``evaluate(ckpt, data, split)``
writes a report (``agekit evaluate``).
"""
from agekit.training.engine import TrainResult, evaluate, train
from agekit.training.recipes import Recipe, RecipeError, list_recipes, load_recipe, parse_recipe

__all__ = ["Recipe", "RecipeError", "TrainResult", "evaluate", "list_recipes", "load_recipe", "parse_recipe", "train"]
