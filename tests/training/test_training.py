"""Training engine: every recipe trains a step, exact resume, bf16 keeps the decoder fp32, data path."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from agekit.evaluation.evaluate import evaluate
from agekit.models.checkpoint import load_checkpoint
from agekit.preprocessing import HSR, IMAGENET, LMTCNN, SSRNET, center_crop, network_input, ten_views
from agekit.training.augment import BrightnessContrast, build_augment
from agekit.training.datamodule import EpochShuffleSampler
from agekit.training.engine import resolve_spec, train
from agekit.training.recipes import list_recipes, load_recipe

N = 8  # rows of the tiny cache


def quick(recipe: str) -> list[str]:
    """Overrides that make a recipe run one batch of 2 (reduced LRN resolution, 2 LRN generations)."""
    r = load_recipe(recipe)
    o = ["trainer.max_epochs=1", "trainer.max_steps=-1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
         "trainer.progress_bar=false", "data.batch_size=2", "data.eval_batch_size=4", "trainer.seed=0"]
    if r["model"]["name"].startswith("lrn"):
        o += ["model.config.input_size=32", "generations=2"]
    return o


def _needs(recipe: str, overrides: list[str]) -> tuple[list, dict[str, set[str]]]:
    r = load_recipe(recipe, overrides)
    spec = resolve_spec(r["model"]["name"], r.get("preprocess"), r["model"].get("config"))
    protos: dict[str, set[str]] = {}
    for d in [r["data"]] + [s.get("data", {}) for s in r.get("stages") or []]:
        d = {**r["data"], **d}
        names = (d["train_split"], d["val_split"], d["test_split"])  # "train+val" joins two splits
        protos.setdefault(d["protocol"], set()).update(p.strip() for x in names if x for p in x.split("+"))
    return [spec], protos


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """One cache holding every view and split the shipped recipes ask for (random pixels, N rows)."""
    from agekit.data.cache import write_cache

    specs, protos = {}, {}
    for name in list_recipes():
        s, p = _needs(name, quick(name))
        specs.update({x.view_key: x for x in s})
        for k, v in p.items():
            protos.setdefault(k, set()).update(v)
    rng = np.random.default_rng(0)
    meta = {"age": np.array([3, 15, 24, 37, 48, 59, 66, 80], np.float32),
            "gender": np.array([0, 1] * (N // 2), np.int8), "race": np.arange(N, dtype=np.int8) % 5,
            "age_group": np.arange(N, dtype=np.int8) % 8,
            "hash": np.array([f"{i:040x}" for i in range(N)]), "source": np.array([f"{i}.jpg" for i in range(N)])}
    views = {}
    for key, s in specs.items():
        side = s.resize or s.size
        shape = (N, s.num_crops, side, side, 3) if s.num_crops > 1 else (N, side, side, 3)
        views[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    parts = {"train": np.arange(0, 4), "val": np.arange(4, 6), "test": np.arange(6, 8)}
    splits = {p: {n: parts[n.split("_")[-1]] for n in names} for p, names in protos.items()}
    root = tmp_path_factory.mktemp("cache")
    write_cache(root, meta, views, splits, {"dataset": "tiny"})
    return root


@pytest.fixture(scope="module")
def tiny_teachers(tiny_cache, tmp_path_factory):
    """Two one-step checkpoints on the margin-0.1 crops: a 101-bin DLDL AgeNet and a 12-bin C3AE-wide."""
    root = tmp_path_factory.mktemp("teachers")
    return [str(train(r, root / r, overrides=quick(r) + [f"data.cache={tiny_cache}"]).final)
            for r in ("agenet_utkface", "c3ae_wide_cosine_utkface")]


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_trains_one_step(recipe, tiny_cache, tiny_teachers, tmp_path):
    r = load_recipe(recipe)
    over = quick(recipe) + [f"data.cache={tiny_cache}"]
    if r["method"]["name"] == "distill" and not r.get("teacher"):  # an ensemble teacher of two checkpoints
        over.append(f"teacher=[{','.join(tiny_teachers)}]")
    over += [f"stages.{i}.data.cache={tiny_cache}" for i in range(len(r.get("stages") or []))]
    res = train(recipe, tmp_path / "run", overrides=over)
    runs = res.runs or [res]
    assert len(runs) == max(len(r.get("stages") or []), 1) if not recipe.startswith("lrn") else len(runs) == 2
    for run in runs:
        assert run.card["steps"] == 1 and run.card["epochs"] == 1
        final, last = load_checkpoint(run.final), load_checkpoint(run.last_ckpt)
        assert final.name == last.name == r["model"]["name"]
        assert final.preprocess == last.preprocess
        for k, v in final.model.state_dict().items():
            assert torch.equal(v, last.model.state_dict()[k]), k
        hp = torch.load(run.last_ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
        assert {"model", "config", "preprocess", "method", "card"} <= set(hp) and hp["state_dict_prefix"] == "model."
    if recipe.startswith("lrn"):  # generation 2 was taught by generation 1
        assert runs[1].card["teacher"] == str(runs[0].final)
    if r.get("stages"):  # each stage starts from the one before
        assert runs[1].card["init_from"] == str(runs[0].final)


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_resume_from_last_ckpt_matches_uninterrupted_run(tiny_cache, tmp_path):
    over = ["trainer.progress_bar=false", "data.batch_size=2", "trainer.limit_train_batches=2", "trainer.seed=3",
            "trainer.deterministic=true", f"data.cache={tiny_cache}", "model.config.p=8", "model.config.q=4"]
    a = train("sephsr_30_10_utkface", tmp_path / "a", overrides=over + ["trainer.max_epochs=3"])
    part = train("sephsr_30_10_utkface", tmp_path / "b", overrides=over + ["trainer.max_epochs=1"])
    w1 = _weights(part.final)
    b = train("sephsr_30_10_utkface", tmp_path / "b", overrides=over + ["trainer.max_epochs=3"], resume=True)
    assert part.card["steps"] == 2 and b.card["steps"] == a.card["steps"] == 6
    # images and times count both parts (3 epochs x 2 batches x 2 faces); resuming the finished run keeps them
    assert part.card["train_images"] == 4 and b.card["train_images"] == a.card["train_images"] == 12
    assert b.card["train_seconds"] > part.card["train_seconds"] > 0
    c = train("sephsr_30_10_utkface", tmp_path / "b", overrides=over + ["trainer.max_epochs=3"], resume=True)
    assert c.card["train_images"] == 12 and c.card["train_seconds"] >= b.card["train_seconds"]
    assert c.card["train_images_per_s"] == pytest.approx(b.card["train_images_per_s"], rel=1e-6)
    wa, wb = _weights(a.final), _weights(b.final)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], w1[k]) for k in wa)  # the resumed epochs did train
    # the learning curves keep the epochs before the interruption
    import csv

    with open(tmp_path / "b" / "logs" / "metrics.csv") as f:
        epochs = {r["epoch"] for r in csv.DictReader(f) if r.get("train/loss_epoch")}
    assert epochs == {"0", "1", "2"}


@pytest.mark.parametrize("name", ["sephsr_30_10", "ssrnet", "c3ae_plain"])
def test_bf16_autocast_keeps_decoder_and_loss_fp32(name):
    from agekit import create_model
    from agekit.methods import default_method_for, get_method
    from agekit.outputs import output_to_float
    from agekit.training.module import keep_fp32, no_autocast

    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = model.preprocess
    method = get_method(default_method_for(name))
    x = network_input(torch.randint(0, 256, (6, 64, 64, 3), dtype=torch.uint8), spec, channels_last_memory=True)
    with torch.no_grad():
        ref = method.predict(model(x))["age"]
        keep_fp32(model.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = output_to_float(model(x))
            with no_autocast(x.device):
                pred = method.predict(out)["age"]
                loss, _ = method.loss(out, {"age": torch.full((6,), 30.0)})
    assert out.age.dtype == pred.dtype == loss.dtype == torch.float32
    # only the convolutions run in bf16: the ages move by a few hundredths of a year, where a
    # bf16 expectation would round ages near 50 to multiples of 0.25
    assert (pred - ref).abs().max() < 0.2
    assert not torch.equal(pred, pred.to(torch.bfloat16).float())


@pytest.mark.parametrize("spec", [SSRNET, HSR, IMAGENET, LMTCNN])
def test_device_normalisation_matches_spec(spec):
    u8 = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    spec = type(spec)(**{**spec.to_dict(), "size": 16, "resize": None, "ratios": tuple(spec.ratios),
                         "mean": tuple(spec.mean), "std": tuple(spec.std)})
    assert torch.allclose(network_input(u8, spec), spec.normalize(u8), atol=1e-5)


@pytest.mark.parametrize("preset", ["ssr", "hsr", "c3ae", "lrn"])
def test_multi_crop_sets_share_one_geometric_transform(preset):
    torch.manual_seed(1)
    crop = torch.rand(5, 1, 3, 32, 32) * 255
    x = crop.repeat(1, 3, 1, 1, 1)  # three identical crops per face
    aug = build_augment({"name": preset, **({"erase_p": 1.0} if preset == "c3ae" else {"p": 1.0})}, 32)
    y = aug(x)
    assert y.shape == x.shape
    # (vectorised interpolation may differ in the last bit between channels)
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-3) and torch.allclose(y[:, 0], y[:, 2], atol=1e-3)
    assert not torch.equal(y, x)


def test_lmtcnn_augment_and_views():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    aug = build_augment("lmtcnn", 5)
    assert aug(x).shape == (2, 3, 5, 5)
    bc = BrightnessContrast(0.0, (2.0, 2.0))  # TF adjust_contrast: (x - channel mean) * f + mean
    m = x.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(bc(x), (x - m) * 2 + m)
    v = ten_views(x, 5)
    assert v.shape == (2, 10, 3, 5, 5)
    assert torch.equal(v[:, 4], center_crop(x, 5)) and torch.equal(v[:, 9], center_crop(x, 5).flip(-1))
    assert torch.equal(v[:, 0], x[..., :5, :5]) and torch.equal(v[:, 3], x[..., 3:, 3:])


def test_ssr_shear_is_keras_radians_and_jitter_composes_one_warp():
    from agekit.training.augment import AffineJitter

    jit = [op for op in build_augment("ssr", 64).ops if isinstance(op, AffineJitter)]
    assert len(jit) == 1 and jit[0].shear_rad == pytest.approx(0.2) and jit[0].p == 0.25
    assert jit[0].padding_mode == "border" and jit[0].zoom_independent
    # a pure shift of exactly 0.25 of the side (p = 1, no other component) moves the image by 8 pixels
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 32, 32)
    x[..., 10, 10] = 1.0
    j = AffineJitter(shift=0.25, p=1.0)
    torch.manual_seed(0)
    y = j(x)
    torch.manual_seed(0)
    torch.rand(1, 4), torch.rand(1), torch.rand(1)  # on/off flags, angle, shear
    t = (torch.rand(1, 2) * 2 - 1) * 0.25 * 32  # the translation the jitter drew
    r, c = divmod(int(y.flatten().argmax()), 32)
    assert (c - 10, r - 10) == (round(float(t[0, 0])), round(float(t[0, 1])))


def test_epoch_sampler_is_seeded_and_shards_for_ddp():
    s = EpochShuffleSampler(10, seed=5)
    s.set_epoch(2)
    a = list(s)
    s.set_epoch(2)
    assert list(s) == a and sorted(a) == list(range(10))
    s.set_epoch(3)
    assert list(s) != a
    shards = []
    for rank in range(3):
        d = EpochShuffleSampler(10, seed=5, rank=rank, world_size=3)
        d.set_epoch(2)
        shards.append(list(d))
    assert [len(x) for x in shards] == [4, 4, 4] and set(sum(shards, [])) == set(range(10))


def test_evaluate_writes_report_with_the_models_mae(tiny_cache, tmp_path):
    over = quick("sephsr_30_10_utkface") + [f"data.cache={tiny_cache}"]
    res = train("sephsr_30_10_utkface", tmp_path / "run", overrides=over)
    rep = evaluate(res.final, tiny_cache, "test", "utkface", tmp_path / "rep", device="cpu")
    assert (tmp_path / "rep" / "report.json").is_file() and (tmp_path / "rep" / "learning_curves.png").is_file()
    # the same MAE worked out by hand from the network's own ages
    from agekit.data.cache import PreparedCache

    c = PreparedCache(tiny_cache)
    rows = c.splits("utkface")["test"]
    m = load_checkpoint(res.final)
    with torch.no_grad():
        age = m.model(network_input(torch.from_numpy(np.asarray(c.view(m.preprocess.view_key))[rows]),
                                    m.preprocess)).age
    assert rep["metrics"]["n"] == 2
    assert math.isclose(rep["metrics"]["mae"], float((age - torch.from_numpy(c.meta["age"][rows])).abs().mean()),
                        rel_tol=1e-5)
    flip = evaluate(res.final, tiny_cache, "test", flip=True, device="cpu")  # protocol taken from the card
    assert flip["meta"]["flip"] and flip["meta"]["protocol"] == "utkface" and flip["metrics"]["n"] == 2
    from agekit.cli import main

    assert main(["evaluate", str(res.last_ckpt), "--data", str(tiny_cache), "--out", str(tmp_path / "cli"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "cli" / "report.json").is_file()


def test_cli_train_reports_bad_recipe(capsys):
    from agekit.cli import main

    assert main(["train", "--recipe", "no_such_recipe", "--data", "/nonexistent"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err


def test_compiled_training_saves_the_plain_module(tiny_cache, tmp_path):
    # backend "eager" runs the torch.compile graph capture without a C++ toolchain (CI); Inductor is `true`
    over = ["trainer.progress_bar=false", "data.batch_size=2", "trainer.limit_train_batches=2", "trainer.max_epochs=1",
            f"data.cache={tiny_cache}", "trainer.compile=eager"]
    res = train("agenet_utkface", tmp_path / "c", overrides=over)
    assert res.card["compile"] == "eager" and res.card["steps"] == 2
    sd = load_checkpoint(res.final).model.state_dict()
    assert not any("_orig_mod" in k for k in sd)
    hp = torch.load(res.last_ckpt, map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in k for k in hp["state_dict"])
    assert torch.isfinite(torch.tensor(res.card["val_metrics"]["val/mae"]))


def test_age_balance_weights_and_weighted_epochs():
    from agekit.training.datamodule import EpochShuffleSampler, age_balance_weights

    # bins of 5 years: ages 1, 2, 3 share bin 0 (3 faces), 40 is alone in bin 8; power 1 -> 1/3, 1/3, 1/3, 1 -> /2
    w = age_balance_weights(np.array([1.0, 2.0, 3.0, 40.0, np.nan]), 1.0)
    np.testing.assert_allclose(w[:4], np.array([1 / 3, 1 / 3, 1 / 3, 1.0]) / (2 + 0.5), rtol=1e-9)
    assert w[4] == pytest.approx(0.5 / 2.5)  # unknown age: the mean weight
    np.testing.assert_allclose(age_balance_weights(np.array([1.0, 2.0, 40.0]), 0.0), [1 / 3] * 3)
    s = EpochShuffleSampler(4, seed=1, weights=torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert list(s) == [3, 3, 3, 3]  # all the mass on one face
    w = age_balance_weights(np.r_[np.full(900, 30.0), np.full(100, 80.0)], 1.0)
    s = EpochShuffleSampler(1000, seed=1, weights=torch.from_numpy(w))
    draws = np.array(list(s))
    assert 400 < (draws >= 900).sum() < 600  # the rare bin is drawn about half the time, not 10 %
    s.set_epoch(0)
    assert list(s) == list(draws)  # reproducible from (seed, epoch): resume-exact


def test_distill_recipe_needs_a_teacher_and_trains_from_an_ensemble(tiny_cache, tiny_teachers, tmp_path):
    r = load_recipe("c3ae_wide_distill_utkface")
    # the child's method replaces the parent's: no C3AE option leaks into the distill options
    assert r["method"]["name"] == "distill" and set(r["method"]["config"]) == {
        "student", "student_config", "teacher_method", "tau", "alpha"}
    over = quick("c3ae_wide_distill_utkface") + [f"data.cache={tiny_cache}"]
    with pytest.raises(ValueError, match="needs a teacher"):
        train("c3ae_wide_distill_utkface", tmp_path / "none", overrides=over)
    res = train("c3ae_wide_distill_utkface", tmp_path / "kd", overrides=over + [f"teacher={','.join(tiny_teachers)}"])
    assert res.card["teacher"] == ",".join(tiny_teachers)
    with open(tmp_path / "kd" / "logs" / "metrics.csv") as f:
        header = f.readline()
    assert "train/kd_kl" in header and "train/kd_l1" in header and "train/kl" in header
    # a teacher on other crops is refused
    with pytest.raises(ValueError, match="takes crops"):
        train("c3ae_wide_distill_utkface", tmp_path / "bad",
              overrides=over + ["preprocess.margin=0.4", f"teacher={tiny_teachers[0]}"])


def test_precomputed_teacher_outputs_are_looked_up_by_row_and_averaged(tiny_cache, tmp_path):
    """Teacher outputs saved per cache row (.npz) act as an ensemble teacher without forward passes."""
    from agekit.training.teacher import PrecomputedTeacher, load_teacher

    n, bins = N, np.arange(101, dtype=np.float32)
    p1 = np.full((n, 101), 1e-9, np.float32)
    p1[:, 30] = 1.0
    p2 = np.full((n, 101), 1e-9, np.float32)
    p2[:, 50] = 1.0
    np.savez(tmp_path / "a.npz", age=np.arange(n, dtype=np.float32), log_probs=np.log(p1).astype(np.float16), bin_ages=bins)
    np.savez(tmp_path / "b.npz", age=np.arange(n, dtype=np.float32) + 10, log_probs=np.log(p2).astype(np.float16),
             bin_ages=bins)
    np.savez(tmp_path / "c.npz", age=np.full(n, 40.0, np.float32))  # an age-only member (e.g. an L1 regressor)
    t = load_teacher([str(tmp_path / f) for f in ("a.npz", "b.npz", "c.npz")])
    assert isinstance(t, PrecomputedTeacher)
    out = t(torch.tensor([2, 5]))
    assert torch.allclose(out.age, torch.tensor([(2 + 12 + 40) / 3, (5 + 15 + 40) / 3]))
    assert torch.allclose(out.probs[:, 30], torch.tensor([0.5, 0.5]), atol=1e-3)  # mean of the two distributions
    assert torch.allclose(out.probs[:, 50], torch.tensor([0.5, 0.5]), atol=1e-3)
    with pytest.raises(IndexError):
        t(torch.tensor([n]))
    with pytest.raises(ValueError, match="not both"):
        load_teacher([str(tmp_path / "a.npz"), "x/final.safetensors"])
    over = quick("agenet_mt_distill_utkface") + [f"data.cache={tiny_cache}"]
    res = train("agenet_mt_distill_utkface", tmp_path / "kd",
                overrides=over + [f"teacher=[{tmp_path / 'a.npz'},{tmp_path / 'b.npz'}]"])
    with open(tmp_path / "kd" / "logs" / "metrics.csv") as f:
        header = f.readline()
    assert "train/kd_kl" in header and "train/kd_l1" in header
    assert res.card["steps"] == 1


def test_teacher_outputs_match_the_evaluator_and_feed_distillation(tiny_cache, tiny_teachers, tmp_path, capsys):
    """`agekit teacher-outputs` writes, per cache row, the flip-averaged age that `evaluate --flip` reports."""
    from agekit.cli import main
    from agekit.data.cache import PreparedCache
    from agekit.evaluation.evaluate import predict_split
    from agekit.models.checkpoint import load_checkpoint
    from agekit.training.teacher import method_for_loaded

    files = []
    for i, ckpt in enumerate(tiny_teachers):
        f = tmp_path / f"t{i}.npz"
        assert main(["teacher-outputs", ckpt, "--data", str(tiny_cache), "--out", str(f)]) == 0
        files.append(f)
        z = np.load(f)
        ld = load_checkpoint(ckpt)
        c = PreparedCache(tiny_cache)
        ref = predict_split(ld, method_for_loaded(ld), c.view(ld.preprocess.view_key), np.arange(N), flip=True)
        np.testing.assert_allclose(z["age"], ref["age"], atol=1e-4)
        assert z["log_probs"].shape[0] == N and z["log_probs"].dtype == np.float16
        np.testing.assert_allclose(np.exp(z["log_probs"].astype(np.float32)).sum(1), 1.0, atol=2e-2)
    assert "distil with" in capsys.readouterr().out
    over = quick("c3ae_wide_distill_utkface") + [f"data.cache={tiny_cache}", f"teacher=[{files[0]},{files[1]}]"]
    res = train("c3ae_wide_distill_utkface", tmp_path / "kd", overrides=over)
    assert res.card["steps"] == 1
    assert main(["teacher-outputs", "nope.pt", "--data", str(tiny_cache), "--out", str(tmp_path / "x.npz")]) == 2


def test_train_plus_val_split_joins_rows(tiny_cache):
    """data.train_split = "train+val" trains a final model on both splits (rows 0-3 and 4-5 of the tiny cache)."""
    from agekit.training.datamodule import AgeDataModule

    dm = AgeDataModule(tiny_cache, HSR, protocol="utkface", train_split="train+val")
    assert dm.rows("train+val").tolist() == [0, 1, 2, 3, 4, 5]
    dm.setup("fit")
    assert len(dm.splits["train"]) == 6 and len(dm.splits["val"]) == 2
    with pytest.raises(KeyError, match="no split 'nope'"):
        dm.rows("train+nope")


@pytest.mark.parametrize("warmup,d", [(False, 0.75), (True, 2 / 11)])
def test_ema_weights_are_the_moving_average_of_the_steps(tiny_cache, tmp_path, warmup, d):
    """trainer.ema_decay 0.75: after two steps final.safetensors holds d * w1 + (1 - d) * w2 (the first step copies w1);
    with the warm-up, d = min(0.75, (1 + 1) / (10 + 1)) at the second step."""
    over = ["trainer.progress_bar=false", "data.batch_size=2", "trainer.seed=3", "trainer.deterministic=true",
            f"data.cache={tiny_cache}", "trainer.max_epochs=1", "model.config.p=8", "model.config.q=4"]
    w1 = _weights(train("sephsr_30_10_utkface", tmp_path / "w1", overrides=over + ["trainer.limit_train_batches=1"]).final)
    w2 = _weights(train("sephsr_30_10_utkface", tmp_path / "w2", overrides=over + ["trainer.limit_train_batches=2"]).final)
    res = train("sephsr_30_10_utkface", tmp_path / "ema",
                overrides=over + ["trainer.limit_train_batches=2", "trainer.ema_decay=0.75",
                                  f"trainer.ema_warmup={str(warmup).lower()}"])
    we = _weights(res.final)
    assert res.card["ema_decay"] == 0.75 and res.card["ema_warmup"] is warmup and res.card["steps"] == 2
    moved = 0
    for k, v in we.items():
        if not v.is_floating_point():
            continue
        torch.testing.assert_close(v, d * w1[k] + (1 - d) * w2[k], rtol=1e-5, atol=1e-6, msg=k)
        moved += int(not torch.equal(w1[k], w2[k]))
    assert moved > 10  # the two steps did change the weights, so the check above is not vacuous


def test_ema_resume_matches_uninterrupted_run(tiny_cache, tmp_path):
    over = ["trainer.progress_bar=false", "data.batch_size=2", "trainer.limit_train_batches=2", "trainer.seed=3",
            "trainer.deterministic=true", f"data.cache={tiny_cache}", "model.config.p=8", "model.config.q=4",
            "trainer.ema_decay=0.6"]
    a = train("sephsr_30_10_utkface", tmp_path / "a", overrides=over + ["trainer.max_epochs=3"])
    train("sephsr_30_10_utkface", tmp_path / "b", overrides=over + ["trainer.max_epochs=1"])
    b = train("sephsr_30_10_utkface", tmp_path / "b", overrides=over + ["trainer.max_epochs=3"], resume=True)
    wa, wb = _weights(a.final), _weights(b.final)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="ema_decay"):
        train("sephsr_30_10_utkface", tmp_path / "c", overrides=over[:-1] + ["trainer.ema_decay=1.5"])


def test_overrides_reach_every_generation_and_the_environment_changes_nothing(tiny_cache, tmp_path, monkeypatch):
    """``--set`` items (a dry run's short schedule) hold for every generation of an LRN chain; recipes change only
    through the arguments: a variable in the environment is not read."""
    monkeypatch.setenv("AGEKIT_TRAIN_SET", "trainer.max_epoch=7")  # an unknown key: refused if it were read
    over = quick("lrn_resnet10_tiny_utkface") + [f"data.cache={tiny_cache}", "trainer.max_epochs=3",
                                                 "trainer.limit_train_batches=2"]
    res = train("lrn_resnet10_tiny_utkface", tmp_path / "lrn",
                overrides=over + ["trainer.max_epochs=1", "trainer.limit_train_batches=1"])  # the last item wins
    assert len(res.runs) == 2
    for run in res.runs:
        assert run.card["epochs"] == 1 and run.card["steps"] == 1  # not 3 epochs of 2 batches
        assert not any("AGEKIT" in k for k in run.card)


def test_ddp_on_two_cpu_processes_runs_a_chain(tiny_cache, tmp_path):
    """``trainer.strategy=ddp`` with two CPU processes (gloo): a 2-generation LRN chain trains as a user runs it
    (``agekit train``; Lightning re-launches the command for rank 1), generation 2 reads generation 1's
    final.safetensors after the barrier, one process reports, and the card counts both ranks' images."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    over = quick("lrn_resnet10_tiny_utkface") + [
        f"data.cache={tiny_cache}", "trainer.limit_train_batches=2", "trainer.strategy=ddp", "trainer.devices=2",
        "trainer.accelerator=cpu"]
    cmd = [sys.executable, "-m", "agekit.cli", "train", "--recipe", "lrn_resnet10_tiny_utkface", "--out", str(out)]
    for o in over:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    finals = [line for line in p.stdout.splitlines() if ": final " in line]
    assert [line.split(":")[0] for line in finals] == [str(out / "gen1"), str(out / "gen2")]  # once each
    for g in ("gen1", "gen2"):
        card = json.loads((out / g / "card.json").read_text())
        # 4 train rows: 2 per rank, batch 2 -> one batch per rank; both ranks' images are counted
        assert card["world_size"] == 2 and card["steps"] == 1 and card["train_images"] == 4
        assert load_checkpoint(out / g / "final.safetensors").name == "lrn_resnet10_tiny"
    assert json.loads((out / "gen2" / "card.json").read_text())["teacher"] == str(out / "gen1" / "final.safetensors")
