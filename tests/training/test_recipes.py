"""Recipes: loading, inheritance, --set overrides, and the papers' optimisers and schedules."""
from __future__ import annotations

import math

import pytest
import torch

from agekit.methods import list_methods
from agekit.models.registry import list_models
from agekit.training.module import build_optimizer, build_scheduler
from agekit.training.recipes import (
    RecipeError,
    apply_overrides,
    list_recipes,
    load_recipe,
    parse_override,
    parse_recipe,
)

REQUIRED = {
    "ssrnet_morph", "ssrnet_utkface", "ssrnet_gender_utkface", "c3ae_plain_utkface", "c3ae_full_utkface",
    "hsr_30_10_utkface", "sephsr_30_10_utkface", "sephsr_90_30_k3_utkface", "bsephsr_90_30_utkface",
    "lrn_resnet18_utkface", "lrn_resnet10_tiny_utkface", "lmtcnn_2_1_adience_fold0", "levi_hassner_adience",
    "mobilenetv1_025_utkface", "dex_utkface",
}


def test_every_paper_experiment_has_a_recipe():
    assert REQUIRED <= set(list_recipes())


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_is_valid(name):
    """Each shipped recipe (and each stage of its chain) passes the schema and reads back unchanged."""
    rec = parse_recipe(name)
    assert parse_recipe(rec.to_dict()).to_dict() == rec.to_dict()
    for i in range(len(rec.stages)):
        assert rec.stage(i)[1].model.name == rec.model.name
    r = load_recipe(name)
    assert r["model"]["name"] in list_models()
    assert r["method"]["name"] is None or r["method"]["name"] in list_methods()
    assert r["data"]["protocol"] and r["data"]["batch_size"] > 0


def test_overrides_parse_yaml_values_and_list_indices():
    assert parse_override("trainer.max_epochs=3") == (["trainer", "max_epochs"], 3)
    assert parse_override("scheduler.milestones=[1, 2]") == (["scheduler", "milestones"], [1, 2])
    assert parse_override("optimizer.lr=1e-3")[1] == 1e-3  # a number (YAML 1.2), not the string "1e-3"
    assert parse_override("method.config.sigma=2")[1] == 2 and isinstance(parse_override("a=2")[1], int)
    r = load_recipe("ssrnet_morph", ["trainer.max_epochs=2", "stages.2.data.cache=/tmp/x", "optimizer.lr=1e-3"])
    assert r["trainer"]["max_epochs"] == 2 and r["optimizer"]["lr"] == 1e-3
    assert r["stages"][2]["data"]["cache"] == "/tmp/x" and r["stages"][0]["data"]["cache"] == "caches/imdb"
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ValueError, match="index"):
        apply_overrides({"stages": [{}]}, ["stages.3.x=1"])
    with pytest.raises(FileNotFoundError, match="no recipe.*did you mean ssrnet_morph"):
        load_recipe("ssrnet_morhp")


def test_overrides_reach_every_stage_unless_the_stage_sets_the_key():
    """``--set`` holds for each stage of a chain; a key the stage sets itself is overridden at ``stages.N``."""
    r = parse_recipe("ssrnet_morph", ["trainer.max_epochs=1", "data.batch_size=4", "stages.1.data.batch_size=2"])
    stages = [r.stage(i)[1] for i in range(3)]
    assert [x.trainer.max_epochs for x in stages] == [1, 1, 1]
    assert [x.data.batch_size for x in stages] == [128, 2, 50]  # the stages' own batch sizes, stage 2's overridden


@pytest.mark.parametrize("override,message", [
    ("trainer.max_epoch=5", "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)"),
    ("optimizer.lrr=0.1", "unknown key optimizer.lrr (did you mean optimizer.lr?)"),
    ("new.key=true", "unknown key new (known: name, paper, "),
    ("stages.0.data.bath_size=3", "unknown key stages.0.data.bath_size (did you mean stages.0.data.batch_size?)"),
    ("stages.1.dat={}", "unknown key stages.1.dat (did you mean stages.1.data?)"),
    ("scheduler.patience=3", "unknown key scheduler.patience (known: name, milestones, gamma, interval)"),
])
def test_unknown_keys_are_refused_with_did_you_mean(override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe("ssrnet_morph", [override])
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("recipe 'ssrnet_morph': ")


def test_unknown_keys_in_a_yaml_file_are_refused(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("extends: ssrnet_utkface\ntrainer: {max_epoch: 5}\n")
    with pytest.raises(RecipeError, match=r"recipe 'mine': unknown key trainer.max_epoch \(did you mean trainer.max_epochs\?\)"):
        load_recipe(f)
    f.write_text("extends: ssrnet_utkface\ntrainer: {max_epochs: 5}\n")
    assert load_recipe(f)["trainer"]["max_epochs"] == 5 and load_recipe(f)["name"] == "mine"


@pytest.mark.parametrize("override,message", [
    ("trainer.max_epochs=-1", "trainer.max_epochs: Input should be greater than or equal to 1 (got -1)"),
    ("trainer.max_epochs=0", "trainer.max_epochs: Input should be greater than or equal to 1 (got 0)"),
    ("trainer.max_epochs=null", "trainer: max_epochs is null and max_steps is -1: the run would never end"),
    ("data.batch_size=0", "data.batch_size: Input should be greater than or equal to 1 (got 0)"),
    ("data.eval_batch_size=-4", "data.eval_batch_size: Input should be greater than or equal to 1"),
    ("optimizer.lr=-0.1", "optimizer.lr: Input should be greater than 0 (got -0.1)"),
    ("optimizer.lr=0", "optimizer.lr: Input should be greater than 0"),
    ("optimizer.name=adamm", "optimizer.name: unknown 'adamm' (did you mean adam?); one of adam, adamw, sgd, rmsprop"),
    ("scheduler.name=plateu", "scheduler.name: unknown 'plateu' (did you mean plateau?)"),
    ("model.name=ssrnett", "model.name: unknown model 'ssrnett' (did you mean ssrnet?)"),
    ("method.name=hsrr", "method.name: unknown method 'hsrr' (did you mean hsr?)"),
    ("augment.name=ssrr", "augment.name: unknown 'ssrr' (did you mean ssr?)"),
    ("data.train_split=train val", "data.train_split: 'train val' is not a split name"),
    ("data.require=[agee]", "data.require.0: unknown 'agee' (did you mean age?)"),
    ("trainer.ema_decay=1.5", "trainer.ema_decay: Input should be less than 1 (got 1.5)"),
    ("trainer.precision=fp16", "trainer.precision: unknown 'fp16'"),
    ("trainer.checkpoint_every_n_steps=-5", "trainer.checkpoint_every_n_steps: Input should be greater than or equal to 0"),
    ("generations=0", "generations: Input should be greater than or equal to 1 (got 0)"),
])
def test_values_are_validated(override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe("ssrnet_utkface", [override])
    assert message in str(e.value), str(e.value)


def test_naming_another_kind_keeps_only_the_options_it_takes():
    """--set optimizer.name=adamw on an SGD recipe keeps lr and weight decay, drops momentum; a method switch drops
    the old method's options; a typo in the new section is still refused."""
    cosine = ["optimizer.name=adamw", "optimizer.weight_decay=1.0e-4", "scheduler.name=cosine", "scheduler.warmup=2"]
    r = load_recipe("hsr_30_10_utkface", cosine)  # SGD 0.002 m0.9 + plateau(0.1, 10, 1e-4) in the recipe
    assert r["optimizer"] == {"name": "adamw", "lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-4}
    assert r["scheduler"] == {"name": "cosine", "epochs": None, "warmup": 2, "min_factor": 0.0, "interval": "epoch"}
    assert load_recipe("c3ae_plain_utkface", ["method.name=l1"])["method"] == {"name": "l1", "config": {}}
    with pytest.raises(RecipeError, match="unknown key scheduler.warmpu"):
        load_recipe("hsr_30_10_utkface", ["scheduler.name=cosine", "scheduler.warmpu=2"])


def test_train_refuses_a_bad_recipe_in_one_line_before_training(tmp_path, capsys):
    from agekit.cli import main

    assert main(["train", "--recipe", "ssrnet_utkface", "--out", str(tmp_path), "--set", "trainer.max_epoch=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("agekit train: recipe 'ssrnet_utkface': unknown key trainer.max_epoch "
                   "(did you mean trainer.max_epochs?)")
    assert main(["train", "--recipe", "ssrnet_utkface", "--out", str(tmp_path), "--epochs", "-1"]) == 2
    assert "trainer.max_epochs: Input should be greater than or equal to 1 (got -1)" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_print_config_shows_the_resolved_recipe(capsys, monkeypatch):
    import yaml

    from agekit.cli import main

    assert main(["train", "--recipe", "sephsr_90_30_k3_utkface", "--print-config", "--set", "trainer.max_epochs=3",
                 "--data", "/data/c"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_recipe("sephsr_90_30_k3_utkface", ["trainer.max_epochs=3", "data.cache=/data/c"])
    # every default is filled in, the parent's values come through `extends`, and it reads back unchanged
    assert shown["trainer"]["max_epochs"] == 3 and shown["trainer"]["checkpoint_every_n_steps"] == 500
    assert shown["optimizer"] == {"name": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}
    assert parse_recipe(shown).to_dict() == shown
    # only the arguments change a recipe: a variable in the environment is not read
    monkeypatch.setenv("AGEKIT_TRAIN_SET", "trainer.max_epochs=1")
    assert main(["train", "--recipe", "ssrnet_utkface", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == load_recipe("ssrnet_utkface")


def test_defaults_are_the_schemas():
    """Sections left out take the schema's defaults; an optimiser's defaults depend on its kind."""
    r = parse_recipe({"model": {"name": "ssrnet"}})
    assert r.trainer.max_epochs == 160 and r.data.batch_size == 50 and r.trainer.checkpoint_every_n_steps == 500
    assert r.optimizer.name == "sgd" and r.optimizer.lr == 0.01 and r.optimizer.momentum == 0.9
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], {"name": "adamw"})
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01 and opt.defaults["lr"] == 1e-3
    assert build_scheduler(opt, {"name": "none"}, "val/mae") is None
    with pytest.raises(RecipeError, match="names no model"):
        parse_recipe({"trainer": {"max_epochs": 3}})


def test_extends_merges_over_the_parent():
    sep = load_recipe("sephsr_90_30_k3_utkface")
    assert sep["model"]["name"] == "sephsr_90_30_k3"
    # HSR paper Sec. IV-B: 3-resolution lr 0.005, patience 20, threshold 5e-4, 600 epochs; the rest from HSR
    assert sep["optimizer"] == {"name": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}
    assert sep["scheduler"]["patience"] == 20 and sep["scheduler"]["threshold"] == 5e-4 and sep["scheduler"]["factor"] == 0.1
    assert sep["trainer"]["max_epochs"] == 600 and sep["augment"]["name"] == "hsr"
    assert load_recipe("bsephsr_90_30_utkface")["model"]["name"] == "bsephsr_90_30_k3"
    # a recipe keeps its own name, not the one of the recipe it extends
    assert sep["name"] == "sephsr_90_30_k3_utkface"
    assert load_recipe("ssrnet_gender_utkface")["name"] == "ssrnet_gender_utkface"
    # a child naming another kind of schedule starts that section afresh (no multistep milestones under cosine)
    assert load_recipe("c3ae_wide_cosine_utkface")["scheduler"] == {
        "name": "cosine", "epochs": None, "warmup": 2, "min_factor": 0.0, "interval": "epoch"}


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


def test_shipped_recipes_are_grouped_papers_and_agekit_with_unique_names():
    """recipes/papers holds the five papers' experiments, recipes/agekit agekit's own; a name is in one group only."""
    from agekit.training.recipes import RECIPE_GROUPS, shipped_recipes

    found = shipped_recipes()
    groups = {name: path.parent.name for name, path in found.items()}
    assert set(groups.values()) == set(RECIPE_GROUPS) and len(found) == 47  # 29 papers + 18 agekit
    assert groups["ssrnet_morph"] == groups["lmtcnn_2_1_adience_fold0"] == groups["sephsr_90_30_k3_utkface"] == "papers"
    assert {n for n, g in groups.items() if g == "agekit"} >= {"agenet_mt_distill_ema100_utkface",
                                                               "tier_compact_utkface_aaf", "c3ae_wide_utkface"}
    assert not any(n.startswith(("agenet", "tier_")) for n, g in groups.items() if g == "papers")
    # extends: works across groups (an agekit recipe extending a paper's)
    assert parse_recipe("sephsr_30_10_distill_lrn_utkface").model.name == parse_recipe("sephsr_30_10_utkface").model.name
