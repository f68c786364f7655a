"""Shipping a checkpoint: evaluation metrics, ONNX file, latency and the model card land together."""
from __future__ import annotations

import json

import numpy as np

import agekit
from agekit.data.cache import write_cache
from agekit.inference.ship import ship_checkpoint
from agekit.inference.weights import resolve_weights, shipped_weights
from agekit.models.checkpoint import load_checkpoint, save_checkpoint


def test_ship_checkpoint_writes_weights_and_card(tmp_path):
    n = 12
    rng = np.random.default_rng(0)
    model = agekit.create_model("c3ae_plain")
    spec = model.preprocess
    ages = np.linspace(5, 80, n).astype(np.float32)
    meta = {"age": ages, "gender": np.array([0, 1] * (n // 2), np.int8), "race": np.arange(n, dtype=np.int8) % 5,
            "hash": np.array([f"{i:040x}" for i in range(n)]), "source": np.array([f"{i}.jpg" for i in range(n)])}
    views = {spec.view_key: rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)}
    splits = {"utkface": {"train": np.arange(0, 6), "val": np.arange(6, 8), "test": np.arange(8, 12)}}
    cache = tmp_path / "cache"
    write_cache(cache, meta, views, splits, {"dataset": "tiny"})
    ckpt = save_checkpoint(tmp_path / "run" / "final.safetensors", model, method="c3ae", card={"recipe": "test"})

    out = tmp_path / "weights"
    card = ship_checkpoint(ckpt, "age_test", data=cache, aliases=["age"], out_dir=out)

    for ext in (".safetensors", ".onnx", ".json", ".md"):
        assert (out / f"age_test{ext}").is_file(), ext
    # the card's metrics are those of the 4 test rows, recomputed here from the shipped weights
    pred = load_checkpoint(out / "age_test.safetensors").model(spec.normalize(views[spec.view_key][8:12])).age.detach().numpy()
    assert card["metrics"]["n"] == 4
    assert abs(card["metrics"]["mae"] - float(np.abs(pred - ages[8:12]).mean())) < 1e-3
    assert card["complexity"]["params"] == 36089 and card["aliases"] == ["age"]
    assert card["latency"]["onnx_fp32_batch1_ms"] > 0 and card["latency"]["torch_eager_batch1_ms"] > 0
    assert "non-commercial" in card["licence"]
    assert json.loads((out / "age_test.json").read_text())["metrics"]["n"] == 4
    assert "CA(5)" in (out / "age_test.md").read_text()
    assert load_checkpoint(out / "age_test.safetensors").card["metrics"]["n"] == 4
    # the card states the size of the file that carries it
    assert card["file_bytes"] == (out / "age_test.safetensors").stat().st_size
    assert load_checkpoint(out / "age_test.safetensors").card["file_bytes"] == card["file_bytes"]
    assert not (out / "age_test.pt").exists()
    entry = resolve_weights("age", out)
    assert entry["name"] == "age_test" and entry["onnx"] is not None
    assert [w["name"] for w in shipped_weights(out)] == ["age_test"]


def test_recipe_changes_name_what_a_run_changed(tmp_path):
    """A run's recipe.yaml against its packaged recipe: the --set / --init-from changes, dotted; nothing without one."""
    from agekit.inference.ship import recipe_changes
    from agekit.training.recipes import Recipe, load_recipe

    ckpt = tmp_path / "final.safetensors"
    assert recipe_changes(ckpt) is None  # no recipe.yaml beside it
    run = load_recipe("tier_compact_utkface_aaf", ["data.balance=0.25", "optimizer.lr=0.0005", "trainer.max_epochs=15",
                                                   "trainer.progress_bar=false"])
    (tmp_path / "recipe.yaml").write_text(Recipe(**run).updated(init_from="runs/compact/final.safetensors").to_yaml())
    assert recipe_changes(ckpt) == {"data.balance": 0.25, "optimizer.lr": 0.0005, "trainer.max_epochs": 15,
                                    "init_from": "runs/compact/final.safetensors"}
    (tmp_path / "recipe.yaml").write_text(Recipe(**{**run, "name": "my_own"}).to_yaml())
    assert recipe_changes(ckpt) is None  # not a packaged recipe: nothing to compare with
