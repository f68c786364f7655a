"""Recipes: loading, inheritance, --set overrides, and the papers' optimisers and schedules."""
from __future__ import annotations

import math

import pytest
import torch

from agekit.methods import list_methods
from agekit.registry import list_models
from agekit.training.module import build_optimizer, build_scheduler
from agekit.training.recipes import apply_overrides, list_recipes, load_recipe, parse_override

REQUIRED = {
    "ssrnet_morph", "ssrnet_utkface", "ssrnet_gender_utkface", "c3ae_plain_utkface", "c3ae_full_utkface",
    "hsr_30_10_utkface", "sephsr_30_10_utkface", "sephsr_90_30_k3_utkface", "bsephsr_90_30_utkface",
    "lrn_resnet18_utkface", "lrn_resnet10_tiny_utkface", "lmtcnn_2_1_adience_fold0", "levi_hassner_adience",
    "mobilenetv1_025_utkface", "dex_utkface",
}


def test_every_paper_experiment_has_a_recipe():
    assert REQUIRED <= set(list_recipes())


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_names_a_registered_model_and_method(name):
    r = load_recipe(name)
    assert r["model"]["name"] in list_models()
    assert r["method"]["name"] is None or r["method"]["name"] in list_methods()
    assert r["data"]["protocol"] and r["data"]["batch_size"] > 0


def test_overrides_parse_yaml_values_and_list_indices():
    assert parse_override("trainer.max_epochs=3") == (["trainer", "max_epochs"], 3)
    assert parse_override("scheduler.milestones=[1, 2]") == (["scheduler", "milestones"], [1, 2])
    assert parse_override("optimizer.lr=1e-3")[1] == pytest.approx(1e-3)
    r = load_recipe("ssrnet_morph", ["trainer.max_epochs=2", "stages.2.data.cache=/tmp/x", "new.key=true"])
    assert r["trainer"]["max_epochs"] == 2 and r["new"] == {"key": True}
    assert r["stages"][2]["data"]["cache"] == "/tmp/x" and r["stages"][0]["data"]["cache"] == "caches/imdb"
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ValueError, match="index"):
        apply_overrides({"stages": [{}]}, ["stages.3.x=1"])
    with pytest.raises(FileNotFoundError, match="no recipe"):
        load_recipe("does_not_exist")


def test_extends_merges_over_the_parent():
    sep = load_recipe("sephsr_90_30_k3_utkface")
    assert sep["model"]["name"] == "sephsr_90_30_k3"
    # HSR paper Sec. IV-B: 3-resolution lr 0.005, patience 20, threshold 5e-4, 600 epochs; the rest from HSR
    assert sep["optimizer"] == {"name": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 1e-4}
    assert sep["scheduler"]["patience"] == 20 and sep["scheduler"]["threshold"] == 5e-4 and sep["scheduler"]["factor"] == 0.1
    assert sep["trainer"]["max_epochs"] == 600 and sep["augment"]["name"] == "hsr"
    assert load_recipe("bsephsr_90_30_utkface")["model"]["name"] == "bsephsr_90_30_k3"
    # a recipe keeps its own name, not the one of the recipe it extends
    assert sep["name"] == "sephsr_90_30_k3_utkface"
    assert load_recipe("ssrnet_gender_utkface")["name"] == "ssrnet_gender_utkface"


def _lrs(recipe: str, epochs: int, steps_per_epoch: int = 1) -> list[float]:
    r = load_recipe(recipe)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], r["optimizer"])
    s = build_scheduler(opt, r["scheduler"], "val/mae")
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            opt.step()
            if s["interval"] == "step":
                s["scheduler"].step()
        if s["interval"] == "epoch":
            s["scheduler"].step()
    return out


def test_ssrnet_adam_x01_at_30_and_60_of_90():
    r = load_recipe("ssrnet_utkface")
    assert r["optimizer"]["name"] == "adam" and r["trainer"]["max_epochs"] == 90 and r["data"]["batch_size"] == 50
    lr = _lrs("ssrnet_utkface", 90)
    assert lr[29] == pytest.approx(0.002) and lr[30] == pytest.approx(2e-4) and lr[60] == pytest.approx(2e-5)
    assert load_recipe("ssrnet_morph")["stages"][0]["data"]["batch_size"] == 128  # IMDB batch 128


def test_lrn_sgd_divided_by_10_every_40_epochs():
    lr = _lrs("lrn_resnet18_utkface", 121)
    assert [lr[i] for i in (0, 39, 40, 80, 120)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-6])
    assert load_recipe("lrn_resnet18_utkface")["generations"] == 4


def test_lmtcnn_step_decay_every_10k_steps_with_clip_4():
    r = load_recipe("lmtcnn_2_1_adience_fold0")
    assert r["trainer"]["gradient_clip_val"] == 4.0 and r["trainer"]["max_steps"] == 50000
    assert r["data"]["batch_size"] == 128
    lr = _lrs("lmtcnn_2_1_adience_fold0", 3, steps_per_epoch=10000)
    assert lr == pytest.approx([0.01, 1e-3, 1e-4])


def test_hsr_plateau_reduces_after_patience():
    r = load_recipe("hsr_30_10_utkface")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], r["optimizer"])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 1e-4
    s = build_scheduler(opt, r["scheduler"], "val/mae")
    assert s["monitor"] == "val/mae"
    for _ in range(11):  # one best value, then 10 epochs without a relative improvement of 1e-4
        s["scheduler"].step(5.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.002)
    s["scheduler"].step(5.0)
    assert math.isclose(opt.param_groups[0]["lr"], 0.0002)
