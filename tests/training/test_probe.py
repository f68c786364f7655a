"""Training precision and layout from a measured probe: the faster setting wins (fake timings), noise within the
margin keeps the plainer one, bf16 is a candidate only on CPUs with native bf16, a run with ``trainer.precision:
auto`` / ``channels_last: auto`` records the probe and a resumed run keeps its choice; the GEMM gauges give real
rates."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agekit.training import probe as probe_mod
from agekit.training.probe import candidates, gemm_peak, pick_fastest, probe, resolve_auto, time_training_steps

FP32, FP32_CL, BF16, BF16_CL = ("32-true", False), ("32-true", True), ("bf16-mixed", False), ("bf16-mixed", True)


def test_pick_fastest_takes_the_faster_and_keeps_the_plainer_within_the_margin():
    assert pick_fastest({FP32: 100.0, FP32_CL: 180.0, BF16: 150.0, BF16_CL: 240.0}) == BF16_CL
    assert pick_fastest({FP32: 100.0, FP32_CL: 102.0}, margin=0.03) == FP32  # 2 % is noise
    assert pick_fastest({FP32: 100.0, FP32_CL: 104.0}, margin=0.03) == FP32_CL
    with pytest.raises(ValueError, match="no probe timings"):
        pick_fastest({})


def test_candidates_follow_the_cpu(monkeypatch):
    monkeypatch.setattr(probe_mod, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert candidates("auto", "auto") == [FP32, FP32_CL]  # no native bf16: emulated bf16 never pays
    monkeypatch.setattr(probe_mod, "cpu_flags", lambda: {"avx512_bf16"})
    assert candidates("auto", "auto") == [FP32, FP32_CL, BF16, BF16_CL]
    assert candidates("bf16-mixed", "auto") == [BF16, BF16_CL] and candidates("auto", False) == [FP32, BF16]


def test_probe_chooses_the_faster_of_fake_timings_in_interleaved_rounds_and_leaves_the_rng(monkeypatch):
    monkeypatch.setattr(probe_mod, "cpu_flags", lambda: {"avx512_bf16"})
    speed = {FP32: 300.0, FP32_CL: 310.0, BF16: 420.0, BF16_CL: 700.0}
    calls = []

    def timer(model, shape, batch, precision, channels_last, steps, warmup, device):
        calls.append((precision, channels_last))
        return speed[(precision, channels_last)] * (0.9 if len(calls) <= 4 else 1.0)  # the first round is slower

    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    res = probe(lambda: torch.nn.Linear(2, 2), (2,), 8, timer=timer)
    assert (res.precision, res.channels_last) == BF16_CL and res.timings[BF16_CL] == 700.0  # best of the rounds
    assert calls[:4] == [FP32, FP32_CL, BF16, BF16_CL] and calls[4:] == calls[:4][::-1]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert res.to_dict()["images_per_s"]["bf16-mixed + channels-last"] == 700.0


def test_compile_auto_times_the_chosen_setting_compiled_and_keeps_what_is_faster(monkeypatch):
    monkeypatch.setattr(probe_mod, "cpu_flags", lambda: set())  # float32 only: the layouts are the candidates
    calls = []

    def timer(model, shape, batch, precision, channels_last, steps, warmup, device, compile=False):
        calls.append((channels_last, compile, warmup))
        return {(False, False): 300.0, (True, False): 500.0, (True, True): 900.0}[(channels_last, compile)]

    res = probe(lambda: torch.nn.Linear(2, 2), (2,), 8, compile="auto", timer=timer)
    assert (res.precision, res.channels_last, res.compile, res.compiled) == ("32-true", True, True, 900.0)
    # two layout rounds, then the chosen layout plain and compiled in interleaved rounds, the compile warmed up longer
    assert calls[4:] == [(True, False, 2), (True, True, 3), (True, True, 1), (True, False, 1)]
    assert res.to_dict()["images_per_s"]["32-true + channels-last + torch.compile"] == 900.0
    assert res.to_dict()["compile"] is True

    def slower(model, shape, batch, precision, channels_last, steps, warmup, device, compile=False):
        return 500.0 * (1.02 if compile else 1.0)  # within the margin: the plainer setting is kept

    assert probe(lambda: torch.nn.Linear(2, 2), (2,), 8, channels_last=True, compile="auto", timer=slower).compile is False

    def broken(model, shape, batch, precision, channels_last, steps, warmup, device, compile=False):
        if compile:
            raise RuntimeError("InductorError: no C++ compiler\nmore")
        return 400.0

    res = probe(lambda: torch.nn.Linear(2, 2), (2,), 8, channels_last=True, compile="auto", timer=broken)
    assert res.compile is False and res.compiled is None
    assert res.notes == ["torch.compile failed, not used: RuntimeError: InductorError: no C++ compiler"]


def test_time_training_steps_trains_a_real_network():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 1))
    w = net[0].weight.detach().clone()
    v = time_training_steps(net, (3, 8, 8), 4, "32-true", True, steps=2, warmup=1)
    assert v > 0 and not torch.equal(net[0].weight.detach(), w)  # the steps updated it


def test_gemm_gauges_give_real_rates():
    for backend in ("torch", "onnxruntime"):
        assert 0.05 < gemm_peak(1, backend, n=128, repeats=3) < 10_000  # GMAC/s
    with pytest.raises(ValueError, match="backend must be"):
        gemm_peak(1, "numpy")


@pytest.fixture(scope="module")
def agenet_cache(tmp_path_factory):
    from agekit.data.cache import write_cache
    from agekit.training.engine import resolve_spec

    spec = resolve_spec("agenet", None)
    n = 8
    rng = np.random.default_rng(0)
    meta = {"age": np.linspace(5, 80, n).astype(np.float32), "hash": np.array([f"{i:040x}" for i in range(n)]),
            "source": np.array([f"{i}.jpg" for i in range(n)])}
    root = tmp_path_factory.mktemp("cache")
    write_cache(root, meta, {spec.view_key: rng.integers(0, 256, (n, spec.size, spec.size, 3), dtype=np.uint8)},
                {"utkface": {"train": np.arange(6), "val": np.arange(6, 8), "test": np.arange(6, 8)}},
                {"dataset": "tiny"})
    return root


def test_auto_precision_and_layout_are_probed_recorded_and_kept_on_resume(agenet_cache, tmp_path, capsys):
    from agekit.training.engine import train

    # the layout probed (two candidates keep the test short; the precision's candidates are tested above)
    over = ["trainer.progress_bar=false", "data.batch_size=2", "trainer.limit_train_batches=1", "trainer.max_epochs=1",
            f"data.cache={agenet_cache}", "trainer.precision=32-true", "trainer.channels_last=auto"]
    res = train("agenet_utkface", tmp_path / "a", overrides=over)
    rec = json.loads((tmp_path / "a" / "probe.json").read_text())
    assert res.card["probe"] == rec and sorted(rec["images_per_s"]) == ["32-true", "32-true + channels-last"]
    assert (res.card["precision"], res.card["channels_last"]) == (rec["precision"], rec["channels_last"])
    assert "channels_last: auto" not in (tmp_path / "a" / "recipe.yaml").read_text()  # the run's recipe names its choice
    assert "probe (" in capsys.readouterr().out
    # a run folder that holds a probe (a resumed run) keeps its choice, whatever a new probe would say
    from agekit.training.recipes import load_recipe, parse_recipe

    (tmp_path / "a" / "probe.json").write_text(json.dumps({**rec, "precision": "bf16-mixed", "channels_last": True}))
    r = parse_recipe(load_recipe("agenet_utkface", ["trainer.precision=auto", "trainer.channels_last=auto"]))
    kept, again = resolve_auto(r, tmp_path / "a")
    assert (kept.trainer.precision, kept.trainer.channels_last) == ("bf16-mixed", True) and again["precision"] == "bf16-mixed"
    assert "probe: keeping bf16-mixed + channels-last" in capsys.readouterr().out


def test_auto_is_refused_on_several_devices_and_bad_values_in_recipes():
    from agekit.training.recipes import RecipeError, load_recipe, parse_recipe

    r = parse_recipe(load_recipe("agenet_utkface", ["trainer.precision=auto", "trainer.devices=2"]))
    with pytest.raises(ValueError, match="measured in one process"):
        resolve_auto(r)
    assert parse_recipe(load_recipe("agenet_utkface", ["trainer.channels_last=auto"])).trainer.channels_last == "auto"
    with pytest.raises((RecipeError, ValueError)):
        parse_recipe(load_recipe("agenet_utkface", ["trainer.precision=fastest"]))
