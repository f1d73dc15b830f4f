"""Stage recipes (thin): ``RECIPES[cfg.stage]()`` gives the recipe for a config."""

from layerflow_train.recipes.common import Recipe
from layerflow_train.recipes.stage1 import Stage1
from layerflow_train.recipes.stage2 import Stage2
from layerflow_train.recipes.stage3 import Stage3

RECIPES: dict[int, type[Recipe]] = {1: Stage1, 2: Stage2, 3: Stage3}

__all__ = ["RECIPES", "Recipe", "Stage1", "Stage2", "Stage3"]
