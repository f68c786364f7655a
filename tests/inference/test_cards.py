"""The shipped weights' model cards: Hugging Face front matter, intended and out-of-scope use, errors by group, the
files they describe (sha256) and the recipe; the licence where users look (predict, models, describe)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agekit import __version__
from agekit.inference.cards import file_sha256, local_paths, render_markdown
from agekit.inference.cards import main as cards_main
from agekit.inference.weights import WEIGHTS_DIR, shipped_weights
from agekit.training.recipes import shipped_recipes

WEIGHTS = [w["name"] for w in shipped_weights()]


def _front_matter(md: str) -> dict:
    yaml = pytest.importorskip("yaml")
    assert md.startswith("---\n")
    return yaml.safe_load(md.split("---\n", 2)[1])


@pytest.mark.parametrize("name", WEIGHTS)
def test_card_has_hub_metadata_use_fairness_and_file_hashes(name):
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    md = (WEIGHTS_DIR / f"{name}.md").read_text()
    meta = _front_matter(md)
    expected = {"utkface": "utkface-non-commercial-research",
                "utkface+allagefaces": "utkface-allagefaces-non-commercial-research"}[card["training_data"]]
    assert meta["license"] == "other" and meta["license_name"] == expected
    assert meta["datasets"] == card["training_data"].split("+") and "mae" in meta["metrics"]
    results = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == name
    assert results[0]["metrics"][0] == {"type": "mae", "value": round(card["metrics"]["mae"], 4), "name": "MAE (years)"}
    for heading in ("## Intended use", "## Out-of-scope use", "## Fairness: errors by group", "MAE by race",
                    "MAE by gender", "## Files"):
        assert heading in md, heading
    assert "non-commercial research use only" in md.split("## Intended use")[0]
    for suffix in (".safetensors", ".onnx"):
        f = WEIGHTS_DIR / f"{name}{suffix}"
        assert card["files"][f.name]["sha256"] == file_sha256(f) and card["files"][f.name]["sha256"] in md
    assert card["agekit_version"] == __version__ and f"agekit {__version__}" in md
    assert not local_paths(card) and not local_paths(md), local_paths(card) + local_paths(md)
    assert md == render_markdown(card, name=name)  # the .md is the JSON card rendered


@pytest.mark.parametrize("name", WEIGHTS)
def test_card_names_the_recipe_of_the_shipped_weight(name):
    recipe = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())["training"]["recipe"]
    assert recipe in shipped_recipes(), recipe
    if name in shipped_recipes():  # a recipe named after the weight is the one it was trained with
        assert recipe == name


def test_cards_are_up_to_date():
    assert cards_main(["--check"]) == 0


def test_licence_where_users_look(capsys):
    from agekit.cli import main
    from agekit.inference.estimator import Estimator

    est = Estimator.from_pretrained("age", detector="cropped")
    assert "non-commercial research use only" in est.describe() and "not for decisions about individuals" in est.describe()
    assert main(["models", "agenet_mt"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("* shipped weights: non-commercial research use only (trained on UTKFace; UTKFace and "
                              "All-Age-Faces).")
    assert main(["predict", str(Path(__file__)), "--detector", "cropped"]) == 1  # not a photo: still the licence first
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("# age ") and "non-commercial research use only" in err[0]
    assert sum("non-commercial" in line for line in err) == 1


def _cross_result() -> dict:
    def fig(n: int, mae: float, signed: float, b012: float, b4059: float) -> dict:
        return {"n": n, "mae": mae, "ca3": 0.5, "ca5": 0.75, "mean_signed_error": signed, "gender_n": n,
                "gender_acc": 0.9, "bands": {"0-12": {"mean_signed_error": b012}, "40-59": {"mean_signed_error": b4059},
                                             "20-29": {"mean_signed_error": 9.0}}}
    return {"command": "python experiments/cross_dataset.py --model tiny=runs/tiny/final.safetensors", "flip": True,
            "tests": {"allagefaces": "caches/aaf:allagefaces_fixed:test"},
            "models": {"tiny": {"info": {"trained_on": "utkface+allagefaces"},
                                "results": {"allagefaces": {"colour": fig(4, 5.25, -0.5, 1.25, -2.5),
                                                            "grey": fig(4, 5.5, -0.25, 1.0, -3.0)}}}},
            "peers": {"peer": {"results": {"allagefaces": {"colour": fig(3, 8.0, -4.0, 2.0, -9.0)}}}}}


def test_cross_dataset_figures_keep_each_test_set_and_peer():
    from agekit.inference.cards import cross_dataset_figures
    cross = cross_dataset_figures(_cross_result(), "tiny")
    assert cross["trained_on"] == "utkface+allagefaces"
    assert cross["tests"] == {"allagefaces": "allagefaces_fixed test"}
    grey = cross["model"]["allagefaces"]["grey"]
    assert grey["mae"] == 5.5 and grey["n"] == 4 and grey["signed_error_by_band"] == {"0-12": 1.0, "40-59": -3.0}
    assert cross["peers"]["peer"]["allagefaces"]["colour"]["signed_error_by_band"] == {"0-12": 2.0, "40-59": -9.0}
    with pytest.raises(ValueError, match="no model 'other'"):
        cross_dataset_figures(_cross_result(), "other")


def test_card_renders_the_cross_dataset_table():
    from agekit.inference.cards import cross_dataset_figures, render_markdown
    md = render_markdown({"model": "agenet_mt", "training_data": "utkface+allagefaces",
                          "cross_dataset": cross_dataset_figures(_cross_result(), "tiny")}, name="tiny")
    assert "## Cross-dataset figures" in md
    assert "| this model | allagefaces | grey | 4 | 5.5 | 0.5 | 0.75 | -0.25 | 0.9 | 1 | -3 |" in md
    assert "| peer | allagefaces | colour | 3 | 8 | 0.5 | 0.75 | -4 | 0.9 | 2 | -9 |" in md
    assert "non-commercial" in md and "license_name: utkface-allagefaces-non-commercial-research" in md
