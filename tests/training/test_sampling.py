"""Multi-dataset training: dataset-balanced draws, each source's splits respected, recipes with data.sources."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agekit.data.cache import write_cache
from agekit.preprocessing import AGEKIT
from agekit.training.datamodule import EpochShuffleSampler
from agekit.training.engine import train
from agekit.training.recipes import RecipeError, parse_recipe
from agekit.training.sampling import MultiCacheDataModule, source_weights
from killing import one_thread_main, train_and_kill


def _cache(root, n: int, first_id: int, protocol: str, dataset: str):
    """n faces whose pixels all equal their id (first_id..), ages 10..; splits: 70 % train, 10 % val, 20 % test."""
    ids = np.arange(first_id, first_id + n)
    meta = {"age": (10 + np.arange(n) % 60).astype(np.float32), "gender": (np.arange(n) % 2).astype(np.int8),
            "hash": np.array([f"{dataset}{i:08d}" for i in range(n)]), "source": np.array([f"{i}.jpg" for i in ids])}
    view = np.broadcast_to(ids.astype(np.uint8).reshape(n, 1, 1, 1), (n, 64, 64, 3)).copy()
    a, b = int(0.7 * n), int(0.8 * n)
    splits = {protocol: {"train": np.arange(a), "val": np.arange(a, b), "test": np.arange(b, n)}}
    write_cache(root, meta, {AGEKIT.view_key: view}, splits, {"dataset": dataset})
    return ids, (a, b)


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    a_ids, a_cut = _cache(root / "a", 20, 0, "utkface", "utkface")  # ids 0..19: 14 train, 2 val, 4 test
    b_ids, b_cut = _cache(root / "b", 100, 100, "allagefaces_fixed", "allagefaces")  # ids 100..199: 70/10/20
    return root, (a_ids, a_cut), (b_ids, b_cut)


def test_source_weights_by_hand():
    w = source_weights({"a": 2, "b": 3}, {"a": 1.0, "b": 3.0})
    assert np.allclose(w, [0.125, 0.125, 0.25, 0.25, 0.25])  # a: 1/4 of the draws over 2 faces; b: 3/4 over 3
    w = source_weights({"a": 2, "b": 2}, {"a": 1.0, "b": 1.0}, within={"a": np.array([1.0, 3.0])})
    assert np.allclose(w, [0.125, 0.375, 0.25, 0.25])
    assert np.allclose(source_weights({"a": 0, "b": 4}, {"a": 5.0, "b": 1.0}), [0.25] * 4)  # an empty source gets none
    with pytest.raises(ValueError, match="within-source weights"):
        source_weights({"a": 2}, {"a": 1.0}, within={"a": np.array([1.0, -1.0])})


def test_draws_follow_the_source_weights_and_splits(two_caches):
    root, (a_ids, (a1, a2)), (b_ids, (b1, b2)) = two_caches
    sources = {"utk": {"cache": str(root / "a"), "protocol": "utkface", "weight": 0.5},
               "aaf": {"cache": str(root / "b"), "protocol": "allagefaces_fixed", "weight": 0.5}}
    dm = MultiCacheDataModule(sources, AGEKIT, batch_size=12, require=("age", "gender"), seed=3)
    dm.setup("fit")
    train, val = dm.splits["train"], dm.splits["val"]
    assert dm.source_rows["train"] == {"utk": 14, "aaf": 70} and dm.source_rows["val"] == {"utk": 2, "aaf": 10}
    # every training face is a train-split face of its own cache (the pixel value is the face's id)
    assert sorted(train.images[:, 0, 0, 0].tolist()) == a_ids[:a1].tolist() + b_ids[:b1].tolist()
    assert sorted(val.images[:, 0, 0, 0].tolist()) == a_ids[a1:a2].tolist() + b_ids[b1:b2].tolist()
    assert train.labels["source"].tolist() == [0] * 14 + [1] * 70
    w = dm.train_weights(train).numpy()
    assert np.allclose(w[:14], 0.5 / 14) and np.allclose(w[14:], 0.5 / 70)
    # 84 draws an epoch; over 60 epochs (5,040 draws) the small source gives half of them (binomial sd 0.007)
    sampler = EpochShuffleSampler(len(train), seed=3, weights=torch.from_numpy(w))
    drawn = []
    for epoch in range(60):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    share = float(np.mean(np.asarray(drawn) < 14))
    assert len(drawn) == 60 * 84 and abs(share - 0.5) < 0.03
    sampler.set_epoch(7)
    assert list(sampler) == list(sampler)  # an epoch's draws depend only on (seed, epoch): resumable
    dm.setup("test")
    assert sorted(dm.splits["test"].images[:, 0, 0, 0].tolist()) == a_ids[a2:].tolist() + b_ids[b2:].tolist()


def test_a_recipe_with_sources_trains_and_records_them(two_caches, tmp_path):
    root = two_caches[0]
    over = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "trainer.progress_bar=false", "data.batch_size=4", "data.eval_batch_size=8", "trainer.seed=0",
            f"data.sources.utkface.cache={root / 'a'}", f"data.sources.allagefaces.cache={root / 'b'}"]
    res = train("tier_compact_utkface_aaf", tmp_path / "run", overrides=over)
    src = res.card["data"]["sources"]
    assert src["utkface"]["train_rows"] == 14 and src["allagefaces"]["train_rows"] == 70
    assert src["allagefaces"]["protocol"] == "allagefaces_fixed" and src["utkface"]["weight"] == 0.6
    assert res.card["data"]["dataset"] == "utkface+allagefaces" and res.card["steps"] == 2
    # --data DIR trains the same recipe on that one cache (its protocol utkface)
    one = train("tier_compact_utkface_aaf", tmp_path / "one", overrides=over[:7] + [f"data.cache={root / 'a'}"])
    assert one.card["data"]["train_rows"] == 14 and "sources" not in one.card["data"]


def test_source_settings_are_validated():
    with pytest.raises(RecipeError, match="weight"):
        parse_recipe("tier_compact_utkface_aaf", ["data.sources.utkface.weight=0"])
    with pytest.raises(RecipeError, match="unknown key data.sources.utkface.wieght"):
        parse_recipe("tier_compact_utkface_aaf", ["data.sources.utkface.wieght=2"])
    r = parse_recipe("tier_accurate_utkface_aaf")
    assert r.model.config["widths"] == [24, 48, 96, 192] and r.data.sources["allagefaces"].protocol == "allagefaces_fixed"


def test_kill_9_then_resume_equals_an_uninterrupted_multi_source_run(two_caches, tmp_path):
    """The compact tier's recipe (two sources drawn 0.6 / 0.4, photo augmentation with OpenCV JPEG, EMA) is SIGKILLed
    in its second epoch; `--resume` ends bit-identical to an uninterrupted run (one CPU thread)."""
    from agekit.models.checkpoint import load_checkpoint

    root = two_caches[0]
    steps_per_epoch = -(-84 // 8)  # 84 training draws an epoch, batches of 8
    args = ["train", "--recipe", "tier_compact_utkface_aaf"]
    for o in ["trainer.max_epochs=2", "trainer.limit_val_batches=1", "trainer.progress_bar=false", "data.batch_size=8",
              "trainer.seed=0", "trainer.checkpoint_every_n_steps=1", "trainer.precision=32-true",
              "trainer.deterministic=true", "augment.jpeg_p=0.5", f"data.sources.utkface.cache={root / 'a'}",
              f"data.sources.allagefaces.cache={root / 'b'}"]:
        args += ["--set", o]
    out = tmp_path / "killed"
    killed_at = train_and_kill([*args, "--out", str(out)], out, tmp_path / "killed.log", at_step=steps_per_epoch + 2,
                               accept=lambda step: step % steps_per_epoch != 0)
    assert killed_at % steps_per_epoch != 0 and not (out / "final.safetensors").exists()
    assert one_thread_main([*args, "--out", str(out), "--resume"]) == 0
    assert one_thread_main([*args, "--out", str(tmp_path / "whole")]) == 0
    a, b = load_checkpoint(tmp_path / "whole" / "final.safetensors"), load_checkpoint(out / "final.safetensors")
    assert a.card["steps"] == b.card["steps"] == 2 * steps_per_epoch
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa) == 0.0, f"resumed from {killed_at}"


def test_per_source_teacher_outputs_are_joined_in_the_order_of_the_training_rows(two_caches, tmp_path):
    """Each source's precomputed outputs (over its cache's rows) are taken at its training rows and joined as the
    training split joins the faces: a batch's index then finds the answer for its own face."""
    from agekit.training.teacher import load_teacher

    root, (a_ids, (a1, _)), (b_ids, (b1, _)) = two_caches
    for name, ids in (("a", a_ids), ("b", b_ids)):  # the teacher's age of a face is its id; P(female) id / 1000
        feats = np.stack([np.cos(ids), np.sin(ids), np.ones(len(ids))], 1).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", age=ids.astype(np.float32), gender_female=ids.astype(np.float32) / 1000,
                 features=feats)
    over = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "trainer.progress_bar=false", "data.batch_size=4", "data.eval_batch_size=8", "trainer.seed=0",
            f"data.sources.utkface.cache={root / 'a'}", f"data.sources.allagefaces.cache={root / 'b'}",
            f"data.sources.utkface.teacher={tmp_path / 'a.npz'}", f"data.sources.allagefaces.teacher={tmp_path / 'b.npz'}",
            "method.config.gender_distill=1.0", "method.config.feature_distill=1.0"]
    res = train("tier_compact_utkface_aaf", tmp_path / "run", overrides=over)
    t = load_teacher(str(tmp_path / "run" / "teacher_train.npz"))
    assert t.age.tolist() == a_ids[:a1].tolist() + b_ids[:b1].tolist()  # the joined split's order: utk, then aaf
    sources = {"utkface": {"cache": str(root / "a"), "protocol": "utkface"},
               "allagefaces": {"cache": str(root / "b"), "protocol": "allagefaces_fixed"}}
    dm = MultiCacheDataModule(sources, AGEKIT, batch_size=4, require=("age", "gender"), seed=0)
    dm.setup("fit")
    train_split = dm.splits["train"]
    assert np.array_equal(train_split.images[:, 0, 0, 0], t.age.numpy().astype(np.uint8))  # row i is face i
    out = t(torch.tensor([0, a1]))  # first utk face (id 0), first aaf face (id 100)
    assert torch.allclose(out.gender_logits.softmax(1), torch.tensor([[1.0, 0.0], [0.9, 0.1]]), atol=1e-5)
    assert torch.allclose(out.features, torch.tensor([[1.0, 0.0, 1.0], [np.cos(100), np.sin(100), 1.0]], dtype=torch.float32))
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        header = f.readline()
    assert "train/gender_kd" in header and "train/feature_kd" in header
    assert res.card["steps"] == 2
    # the hint (features -> the teacher's 3) trains with the network but is no part of it
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "final.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "hint" in k]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["state_dict"]["hint.weight"].shape[0] == 3
    # a resumed run rebuilds the hint before loading last.ckpt, and goes on from it
    more = train("tier_compact_utkface_aaf", tmp_path / "run", overrides=over[1:] + ["trainer.max_epochs=2"], resume=True)
    assert more.card["steps"] == 4
    again = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not torch.equal(again["state_dict"]["hint.weight"], last["state_dict"]["hint.weight"])
    with pytest.raises(ValueError, match=r"data.sources \['allagefaces'\] have no teacher outputs"):
        train("tier_compact_utkface_aaf", tmp_path / "half", overrides=over[:-3] + ["method.config.gender_distill=1.0"])
