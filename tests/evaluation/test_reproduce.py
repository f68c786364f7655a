"""``agekit reproduce``: every named experiment end to end on tiny generated datasets in the published layouts.

Each run prepares the faces, trains every stage (pre-training included) for one batch, evaluates every
fold and writes the table with the paper's figure beside ours.
"""
from __future__ import annotations

import json

import pytest

from agekit.cli import main
from agekit.evaluation.reproduce import EXPERIMENTS, get_experiment, scaled_overrides

# one batch a stage; --detector cropped: the drawn faces need no detector (the tests without it prepare each dataset
# as the paper did: IMDB-WIKI at its given face boxes, FG-NET with dlib and the whole-image fallback)
TINY_BASE = ["--epochs-scale", "0.001", "--workers", "0", "--device", "cpu",
             "--set", "trainer.limit_train_batches=1", "--set", "trainer.limit_val_batches=1",
             "--set", "trainer.progress_bar=false", "--set", "data.batch_size=4", "--set", "data.eval_batch_size=8"]
TINY = [*TINY_BASE, "--detector", "cropped"]


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


def _run(name, data_root, cache_dir, out, capsys, extra=(), tiny=TINY, measured=True):
    assert main(["reproduce", name, "--data-root", str(data_root), "--out", str(out), "--cache-dir", str(cache_dir),
                 *tiny, *extra]) == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    exp = get_experiment(name)
    assert [f["metric"] for f in res["figures"]] == [f.metric for f in exp.figures]
    for f, fig in zip(res["figures"], exp.figures):
        assert f["paper"] == fig.paper and f["folds"] == (len(res["folds"]) if f["ours_mean"] is not None else 0)
        assert not measured or f["ours_mean"] is not None
        assert f"{fig.paper:.2f}" in md or f"{fig.paper:.3f}" in md
    assert "Known differences" in md and "scaled by 0.001" in md
    assert res["command"].startswith(f"agekit reproduce {name} --data-root ") and f"`{res['command']}`" in md
    assert "detector 'cropped'" in md or tiny is not TINY
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
        le, md = _run(name, data_root, cache_dir, tmp_path / "le", capsys, ["--ca-def", "le"])  # the CLI's choice
        assert le["ca_definition"] == "le" and "--ca-def le: CA(n) = share of faces with |error| <= n" in md
        report = json.loads((tmp_path / "le" / "eval" / "all" / "report.json").read_text())
        assert report["metrics"]["ca_definition"]["name"] == "le"


@pytest.mark.slow
def test_c3ae_fgnet_ten_runs(data_root, cache_dir, tmp_path, capsys):
    res, md = _run("c3ae_full_fgnet", data_root, cache_dir, tmp_path / "fg", capsys)
    assert [r["fold"] for r in res["folds"]] == [f"run{i}" for i in range(10)]
    assert all(r["n"] == 30 for r in res["folds"])
    assert [s["stage"] for s in res["stages"]][:2] == ["imdb", "wiki"] and len(res["stages"]) == 12


def test_c3ae_fgnet_leave_one_person_out_as_published(data_root, tmp_path, capsys):
    """Every person's fold (4 generated subjects, 8 photos each), the MAE pooled over all images; the faces prepared
    as published: IMDB-WIKI cut at its own face_location boxes (no detector), FG-NET with dlib and the whole photo
    (edges repeated) where dlib finds no face, every count in the table."""
    res, md = _run("c3ae_full_fgnet_lopo", data_root, tmp_path / "caches", tmp_path / "lopo", capsys, tiny=TINY_BASE)
    assert [r["fold"] for r in res["folds"]] == ["fold001", "fold002", "fold003", "fold004"]
    assert all(r["n"] == 8 for r in res["folds"]) and res["test_images"] == 32
    assert [s["stage"] for s in res["stages"]] == ["imdb", "wiki"] + ["fgnet"] * 4
    assert [s["train_rows"] for s in res["stages"][2:]] == [24] * 4  # the other three persons
    fig = res["figures"][0]
    assert fig["pooled"] and fig["ours_mean"] == pytest.approx(
        sum(r["mae"] * r["n"] for r in res["folds"]) / 32)
    assert "all test images pooled" in md
    imdb, fgnet = res["datasets"]["imdb"], res["datasets"]["fgnet"]
    assert imdb["detector"] == "given" and imdb["counts"]["records"] == 10 and imdb["counts"]["bad_records"] == 1
    assert imdb["bad_by_reason"] == {"face_score # < #": 1} and imdb["rows"] == 9
    assert fgnet["detector"] == "dlib" and fgnet["fallback"] == "cropped"
    assert fgnet["rows"] == 32 and fgnet["counts"]["images_dropped"] == 0  # nothing dropped: counts do not change
    assert "| imdb | 10 | 1 (face_score # < #: 1) | 9 | 0 |" in md
    assert "repeat its edge pixels" in md and "C3AE reports no leave-one-person-out figure" in md


def test_on_utkface_replaces_the_chain_and_says_so(tmp_path, capsys):
    """``--on utkface``: IMDB -> WIKI becomes one UTKFace pre-training stage, the target trains on UTKFace's training
    part and is tested on its test part; a figure the labels cannot give (the epsilon-error) is n/a with the reason."""
    from published_layouts import make_utkface

    make_utkface(tmp_path / "data" / "utkface", 20)
    res, md = _run("ssrnet_morph", tmp_path / "data", tmp_path / "c", tmp_path / "ssr", capsys,
                   ["--on", "utkface"], tiny=TINY_BASE)
    assert [s["stage"] for s in res["stages"]] == ["utkface_pretrain", "utkface"] and res["on"] == "utkface"
    assert res["stages"][0]["train_rows"] == 14 and res["folds"][0]["n"] == 4  # 70 / 10 / 20 of 20 images
    assert any("preprocess.margin=0" in o for o in res["stages"][1]["overrides"])
    assert "run on UTKFace instead of the paper's data: the chain IMDB -> WIKI -> MORPH II becomes" in md
    assert res["datasets"]["utkface"]["detector"] == "cropped" and " --on utkface " in res["command"]
    res, md = _run("lrn_resnet10_tiny_chalearn", tmp_path / "data", tmp_path / "c", tmp_path / "lrn", capsys,
                   ["--on", "utkface", "--set", "model.config.input_size=32"], tiny=TINY_BASE, measured=False)
    assert res["figures"][0]["ours_mean"] is not None and res["figures"][1]["ours_mean"] is None
    assert "epsilon_error: not measured, the test images lack the labels it needs" in md
    # LMTCNN on UTKFace: the ages become Adience's 8 groups for training and testing, so every figure is measured
    res, md = _run("lmtcnn_1_1_adience", tmp_path / "data", tmp_path / "c", tmp_path / "lmtcnn", capsys,
                   ["--on", "utkface"], tiny=TINY_BASE)
    assert [s["stage"] for s in res["stages"]] == ["utkface"] and res["folds"][0]["n"] == 4
    assert any("data.age_groups=adience" in o for o in res["stages"][0]["overrides"])
    assert "its ages are mapped to the 8 Adience age groups" in md
    assert main(["reproduce", "ssrnet_morph", "--on", "imdb", "--data-root", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "--on must be one of ['utkface']" in capsys.readouterr().err


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


def test_every_experiment_has_an_end_to_end_test():
    """Each named experiment is run by one of the tests above on its tiny published-layout dataset."""
    from pathlib import Path

    text = Path(__file__).read_text()
    assert [name for name in EXPERIMENTS if f'"{name}"' not in text] == []
