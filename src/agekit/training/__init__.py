"""Training: Lightning module and data module, kornia augmentation, recipes.

``train(recipe, out_dir)`` runs a recipe (``agekit train``); evaluation is :mod:`agekit.evaluation`.
"""
from agekit.training.engine import TrainResult, train
from agekit.training.recipes import Recipe, RecipeError, list_recipes, load_recipe, parse_recipe

__all__ = ["Recipe", "RecipeError", "TrainResult", "list_recipes", "load_recipe", "parse_recipe", "train"]
