"""Training recipes: one YAML file per paper experiment, merged over :data:`DEFAULTS`.

A recipe names the model (registry name + config), the method (loss and decoder), the
data (prepared cache, protocol, splits, batch size), the augmentation, the optimiser and
schedule of the paper, and the trainer settings. ``extends: other_recipe`` starts from
another recipe; ``--set a.b=c`` overrides any key (the value is parsed as YAML).
Chains are described in the recipe: ``stages`` (a list of overrides trained one after
the other, each initialised from the previous one: SSR-Net's IMDB -> WIKI -> MORPH) and
``generations`` (LRN, Alg. 1: generation t is taught by generation t - 1).
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "name": None,
    "paper": None,
    "description": "",
    "model": {"name": None, "config": {}},
    "preprocess": {},  # overrides of the model's PreprocessSpec fields (e.g. size for quick runs)
    "method": {"name": None, "config": {}},
    "data": {
        "cache": None,
        "protocol": None,
        "train_split": "train",
        "val_split": "val",
        "test_split": "test",
        "batch_size": 50,
        "eval_batch_size": 256,
        "require_age": True,
        "drop_last": False,
        "balance": 0.0,
    },
    "augment": {"name": "none"},
    "optimizer": {"name": "sgd"},  # per-optimizer defaults in agekit.training.module.build_optimizer
    "scheduler": {"name": "none"},
    "trainer": {
        "max_epochs": 160,
        "max_steps": -1,
        "accelerator": "auto",
        "devices": 1,
        "strategy": "auto",
        "precision": "32-true",
        "channels_last": False,
        "compile": False,
        "ema_decay": None,
        "ema_warmup": True,
        "seed": 1,
        "deterministic": False,
        "gradient_clip_val": None,
        "gradient_clip_algorithm": "norm",
        "limit_train_batches": None,
        "limit_val_batches": None,
        "log_every_n_steps": 20,
        "check_val_every_n_epoch": 1,
        "progress_bar": True,
        "monitor": "val/mae",
    },
    "init_from": None,
    "generations": 1,
    "stages": [],
}


def recipe_dir() -> Path:
    """The folder of the recipes shipped with agekit (``src/agekit/recipes``)."""
    return Path(str(resources.files("agekit") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``over`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _find(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    shipped = recipe_dir() / f"{p.stem if p.suffix else name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no recipe {str(name_or_path)!r}: not a YAML file and not one of {list_recipes()}")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ValueError(f"recipe {path} extends itself through {[str(s) for s in seen]}")
    with open(path) as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ValueError(f"recipe {path}: top level must be a mapping, got {type(d).__name__}")
    parent = d.pop("extends", None)
    own_name = d.get("name") or path.stem  # a recipe is named by its own file, never by the one it extends
    if parent:
        base = _read(_find(parent) if not (path.parent / f"{parent}.yaml").is_file() else path.parent / f"{parent}.yaml",
                     seen + (path,))
        own_method = (d.get("method") or {}).get("name")
        if own_method and own_method != (base.get("method") or {}).get("name"):
            base.pop("method", None)  # another method: the parent's method options do not apply
        d = deep_merge(base, d)
    d["name"] = own_name
    return d


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (["a", "b"], yaml value of c); raises ValueError on a malformed item."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ValueError(f"--set expects key=value, got {item!r}")
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            parsed = float(parsed)
        except ValueError:
            pass
    return keys, parsed


def apply_overrides(recipe: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``--set a.b=c`` items to a copy of ``recipe`` (missing dicts are created)."""
    out = copy.deepcopy(recipe)
    for item in overrides or []:
        keys, value = parse_override(item)
        d: Any = out
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(d, list):  # stages.0.data.cache=...
                if not k.lstrip("-").isdigit() or not -len(d) <= int(k) < len(d):
                    raise ValueError(f"--set {item!r}: {k!r} is not an index of a list of {len(d)}")
                if last:
                    d[int(k)] = value
                else:
                    d = d[int(k)]
                continue
            if last:
                d[k] = value
            else:
                if not isinstance(d.get(k), (dict, list)):
                    d[k] = {}
                d = d[k]
    return out


def load_recipe(name_or_path: str | Path | dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    """A complete recipe: :data:`DEFAULTS` <- the YAML (and what it extends) <- ``overrides``."""
    d = copy.deepcopy(name_or_path) if isinstance(name_or_path, dict) else _read(_find(name_or_path))
    recipe = apply_overrides(deep_merge(DEFAULTS, d), overrides)
    if not recipe["model"].get("name"):
        raise ValueError(f"recipe {recipe.get('name')!r} names no model (model.name)")
    return recipe
