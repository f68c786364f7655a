"""``agekit reproduce``: every named experiment end to end on tiny generated datasets in the published layouts.

Each run prepares the faces, trains every stage (pre-training included) for one batch, evaluates every
fold and writes the table with the paper's figure beside ours.
"""
from __future__ import annotations

import json

import pytest

from agekit.cli import main
from agekit.evaluation.reproduce import EXPERIMENTS, get_experiment, scaled_overrides

TINY = ["--epochs-scale", "0.001", "--detector", "cropped", "--workers", "0", "--device", "cpu",
        "--set", "trainer.limit_train_batches=1", "--set", "trainer.limit_val_batches=1",
        "--set", "trainer.progress_bar=false", "--set", "data.batch_size=4", "--set", "data.eval_batch_size=8"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from published_layouts import make_adience, make_chalearn, make_fgnet, make_imdb_wiki, make_megaage, make_morph

    root = tmp_path_factory.mktemp("datasets")
    make_adience(root / "adience", users_per_fold=2, faces_per_user=2)
    make_morph(root / "morph", subjects=8, per_subject=2)
    make_imdb_wiki(root / "imdb", "imdb", 10)
    make_imdb_wiki(root / "wiki", "wiki", 10)
    make_fgnet(root / "fgnet", subjects=4, per_subject=8)
    make_megaage(root / "megaage_asian", train=12, test=6)
    make_chalearn(root / "chalearn2015", train=8, val=6)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("caches")


def _run(name, data_root, cache_dir, out, capsys, extra=()):
    assert main(["reproduce", name, "--data-root", str(data_root), "--out", str(out), "--cache-dir", str(cache_dir),
                 *TINY, *extra]) == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    exp = get_experiment(name)
    assert [f["metric"] for f in res["figures"]] == [f.metric for f in exp.figures]
    for f, fig in zip(res["figures"], exp.figures):
        assert f["paper"] == fig.paper and f["ours_mean"] is not None and f["folds"] == len(res["folds"])
        assert f"{fig.paper:.2f}" in md or f"{fig.paper:.3f}" in md
    assert "Known differences" in md and "scaled by 0.001" in md and "detector 'cropped'" in md
    return res, md


def test_list_names_every_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS) and "3.16 (SSR-Net Table 1)" in out


def test_epochs_scale_scales_epochs_and_schedule():
    assert scaled_overrides("ssrnet_utkface", [], 0.1) == ["trainer.max_epochs=9", "scheduler.milestones=[3,6]"]
    assert scaled_overrides("lmtcnn_2_1_adience_fold0", [], 0.01) == ["trainer.max_steps=500",
                                                                       "scheduler.step_size=100"]
    assert scaled_overrides("c3ae_full_utkface", [], 0.05) == ["trainer.max_epochs=30", "scheduler.patience=1"]
    assert scaled_overrides("ssrnet_utkface", [], 1.0) == []


@pytest.mark.parametrize("name", ["lmtcnn_1_1_adience", "lmtcnn_2_1_adience"])
def test_lmtcnn_adience_five_folds(name, data_root, cache_dir, tmp_path, capsys):
    res, md = _run(name, data_root, cache_dir, tmp_path / name, capsys, ["--set", "trainer.max_steps=1"])
    assert [r["fold"] for r in res["folds"]] == [f"fold{i}" for i in range(5)]
    assert [s["fold"] for s in res["stages"]] == [f"fold{i}" for i in range(5)]
    assert all(r["n"] == 4 for r in res["folds"]) and res["test_images"] == 20
    rows = {s["fold"]: s["train_rows"] for s in res["stages"]}
    assert rows == {f"fold{i}": 14 for i in range(5)}  # 16 of the other folds, 2 in the published validation list
    assert any("LMTCNN Table 2: 11136 / 1242 / 3879" in d for d in res["differences"])
    assert "ten-view" in md


def test_resume_skips_finished_stages(data_root, cache_dir, tmp_path, capsys):
    out = tmp_path / "ssr"
    res, _ = _run("ssrnet_morph", data_root, cache_dir, out, capsys)
    assert [s["stage"] for s in res["stages"]] == ["imdb", "wiki", "morph"]
    assert res["stages"][1]["overrides"][-len(TINY) // 2:] != []
    assert any(o.startswith("init_from=") and o.endswith("imdb/final.safetensors") for o in res["stages"][1]["overrides"])
    stamp = (out / "runs" / "morph" / "final.safetensors").stat().st_mtime_ns
    again, _ = _run("ssrnet_morph", data_root, cache_dir, out, capsys)
    assert (out / "runs" / "morph" / "final.safetensors").stat().st_mtime_ns == stamp
    assert again["figures"] == res["figures"]


@pytest.mark.parametrize("name", ["ssrnet_megaage_asian", "c3ae_plain_morph", "c3ae_full_morph",
                                  "c3ae_full_morph_scratch"])
def test_single_split_experiments(name, data_root, cache_dir, tmp_path, capsys):
    res, md = _run(name, data_root, cache_dir, tmp_path / name, capsys)
    chain = [] if name.endswith("scratch") else ["imdb", "wiki"]
    assert [s["stage"] for s in res["stages"]] == chain + [get_experiment(name).test_stage.name]
    assert len(res["folds"]) == 1 and res["folds"][0]["n"] > 0
    if name == "ssrnet_megaage_asian":
        assert res["ca_definition"] == "lt" and res["folds"][0]["n"] == 6


@pytest.mark.slow
def test_c3ae_fgnet_ten_runs(data_root, cache_dir, tmp_path, capsys):
    res, md = _run("c3ae_full_fgnet", data_root, cache_dir, tmp_path / "fg", capsys)
    assert [r["fold"] for r in res["folds"]] == [f"run{i}" for i in range(10)]
    assert all(r["n"] == 30 for r in res["folds"])
    assert [s["stage"] for s in res["stages"]][:2] == ["imdb", "wiki"] and len(res["stages"]) == 12


@pytest.mark.parametrize("name", ["hsr_sephsr_90_30_k3_morph", "hsr_sephsr_30_10_depth3_1_morph",
                                  "hsr_sephsr_30_10_depth3_2_morph", "hsr_sephsr_30_10_depth3_3_morph"])
def test_hsr_experiments(name, data_root, cache_dir, tmp_path, capsys):
    res, md = _run(name, data_root, cache_dir, tmp_path / name, capsys)
    assert [s["stage"] for s in res["stages"]] == ["imdb", "wiki", "morph"]
    assert res["folds"][0]["n"] > 0 and "HSR Table" in md


LRN_SMALL = ["--set", "model.config.input_size=32"]


@pytest.mark.slow
def test_lrn_morph_four_generations(data_root, cache_dir, tmp_path, capsys):
    out = tmp_path / "lrn"
    res, md = _run("lrn_resnet18_morph", data_root, cache_dir, out, capsys, LRN_SMALL)
    assert res["stages"][-1]["final"].endswith("morph/gen4/final.safetensors")
    gens = res["folds"][0]["generations"]
    assert list(gens) == ["gen1", "gen2", "gen3", "gen4"]
    assert res["folds"][0]["mae"] == gens["gen3"]["mae"]  # the paper's figure is for t = 3
    assert res["figures"][0]["ours_mean"] == pytest.approx(gens["gen3"]["mae"])
    assert "| t = 4 |" in md
    card = json.loads((out / "runs" / "morph" / "gen4" / "card.json").read_text())
    ages = card["age_range"]
    assert 16 <= ages[0] < ages[1] <= 77  # LRN Eq. 1: the MORPH training set's youngest and oldest


def test_lrn_chalearn_epsilon_error(data_root, cache_dir, tmp_path, capsys):
    res, md = _run("lrn_resnet10_tiny_chalearn", data_root, cache_dir, tmp_path / "cl", capsys, LRN_SMALL)
    eps = res["figures"][1]
    assert eps["metric"] == "epsilon_error" and 0.0 < eps["ours_mean"] < 1.0 and eps["paper"] == 0.274
    assert res["folds"][0]["n"] == 6 and res["folds"][0]["split"] == "val"
    assert list(res["folds"][0]["generations"]) == ["gen1", "gen2", "gen3"]
    assert res["folds"][0]["generations"]["gen3"]["epsilon_error"] == res["folds"][0]["epsilon_error"]


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "ssrnet_morhp", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["agekit reproduce: unknown experiment 'ssrnet_morhp' (did you mean ssrnet_morph?); "
                   "`agekit reproduce --list` lists them"]
    assert main(["reproduce", "ssrnet_morph", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "imdb") in err[0] and "not found" in err[0]
    assert main(["reproduce", "ssrnet_morph"]) == 2
    assert "needs --data-root" in capsys.readouterr().err
