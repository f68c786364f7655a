"""agekit's compact network (AgeNet), the DLDL-v2 method and the cosine schedule: numbers by hand."""
from __future__ import annotations

import math

import pytest
import torch

import agekit
from agekit.methods import get_method
from agekit.methods.baselines import gaussian_label_distribution
from agekit.outputs import ModelOutput
from agekit.training.module import build_optimizer, build_scheduler, cosine_with_warmup


def test_agenet_parameter_count_by_hand():
    # conv+BN: 3*9*16 + 32 | 16*9*32 + 64 | 32*9*32 + 64 | 32*9*48 + 96 | 48*9*48 + 96 | 48*9*64 + 128
    # 1x1 64->32 + 64 | fc 512->32 (+32) | fc 32->101 (+101)
    convs = (432 + 32) + (4608 + 64) + (9216 + 64) + (13824 + 96) + (20736 + 96) + (27648 + 128) + (2048 + 64)
    head = 512 * 32 + 32 + 32 * 101 + 101
    m = agekit.create_model("agenet")
    assert sum(p.numel() for p in m.parameters()) == convs + head == 98_805 < 100_000
    g = agekit.create_model("agenet_gender")  # + 512*16 + 16 + 16*2 + 2
    assert sum(p.numel() for p in g.parameters()) == 98_805 + 8_242
    mt = agekit.create_model("agenet_mt")  # + 32*2 + 2: gender from the age head's hidden layer
    assert sum(p.numel() for p in mt.parameters()) == 98_805 + 66 < 100_000
    assert mt(torch.rand(2, 3, 64, 64)).gender_logits.shape == (2, 2)
    with pytest.raises(ValueError, match="exclude"):
        agekit.create_model("agenet", gender_hidden=8, gender_shared=True)


def test_agenet_mt_x2_parameter_count_by_hand():
    # one member, widths 12-24-32-44, squeeze 16: conv+BN 3*9*12 + 24 | 12*9*24 + 48 | 24*9*24 + 48 | 24*9*32 + 64 |
    # 32*9*32 + 64 | 32*9*44 + 88 | 1x1 44->16 + 32 | fc 256->32 (+32) | fc 32->101 (+101) | gender fc 32->2 (+2)
    member = (348 + 2640 + 5232 + 6976 + 9280 + 12760 + 736) + (8192 + 32) + (3232 + 101) + 66
    m = agekit.create_model("agenet_mt_x2")
    assert member == 49_595
    assert sum(p.numel() for p in m.parameters()) == 2 * member == 99_190 < 100_000


def test_agenet_ensemble_averages_its_members(tmp_path):
    from agekit.models.checkpoint import load_checkpoint, save_checkpoint
    from agekit.training.ensemble import combine_checkpoints

    cfg = {"widths": [12, 24, 32, 44], "squeeze": 16}
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = agekit.create_model("agenet_mt", **cfg).eval()
        with torch.no_grad():  # members that disagree: different biases on the age bins and the gender logits
            net.head.fc2.bias.copy_(torch.randn(101) * 3)
            net.gender_fc.bias.copy_(torch.tensor([seed - 1.0, 1.0 - seed]))
        paths.append(str(save_checkpoint(tmp_path / f"m{seed}.pt", net, name="agenet_mt", config=cfg, method="dldl",
                                         card={"recipe": "r", "val_metrics": {"val/mae": 5.0 + seed}})))
    ens = load_checkpoint(combine_checkpoints(paths, str(tmp_path / "ens.pt")))
    assert ens.name == "agenet_mt_x2" and ens.config["members"] == 3 and ens.method == "dldl"
    assert [m["val_metrics"]["val/mae"] for m in ens.card["ensemble_of"]] == [5.0, 6.0, 7.0]
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        outs = [load_checkpoint(p).model(x) for p in paths]
        out = ens.model(x)
    ages = torch.stack([o.age for o in outs])
    assert ages.std(0).min() > 0.5  # the members do disagree
    torch.testing.assert_close(out.age, ages.mean(0), rtol=0, atol=1e-4)  # expectation of the mean distribution
    torch.testing.assert_close(out.probs, torch.stack([o.probs for o in outs]).mean(0))
    torch.testing.assert_close(out.logits.softmax(1), out.probs)
    female = torch.stack([o.gender_logits.softmax(1) for o in outs]).mean(0)
    torch.testing.assert_close(out.gender_logits.softmax(1), female)
    # members of different widths (a wide and a narrow network) keep their own configs
    wide = agekit.create_model("agenet_mt").eval()
    other = save_checkpoint(tmp_path / "other.pt", wide, name="agenet_mt", config={}, method="dldl")
    mixed = load_checkpoint(combine_checkpoints([paths[0], str(other)], str(tmp_path / "mixed.pt")))
    assert mixed.config["member"] == [cfg, {}]
    assert sum(p.numel() for p in mixed.model.parameters()) == 49_595 + sum(p.numel() for p in wide.parameters())
    with torch.no_grad():
        want = (load_checkpoint(paths[0]).model(x).age + wide(x).age) / 2
        torch.testing.assert_close(mixed.model(x).age, want, rtol=0, atol=1e-4)
    l1 = save_checkpoint(tmp_path / "l1.pt", wide, name="agenet_mt", config={}, method="l1")
    with pytest.raises(ValueError, match="members must match"):
        combine_checkpoints([paths[0], str(l1)], str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="3 members but 2 member configs"):
        agekit.create_model("agenet_mt_x2", members=3, member=[cfg, cfg])


def test_agenet_output_is_the_expectation():
    m = agekit.create_model("agenet_gender").eval()
    out = m(torch.rand(3, 3, 64, 64))
    assert out.logits.shape == (3, 101) and out.gender_logits.shape == (3, 2)
    assert torch.allclose(out.age, (out.probs * torch.arange(101.0)).sum(1), atol=1e-4)
    assert torch.allclose(out.probs.sum(1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="same length"):
        agekit.create_model("agenet", widths=(8, 16), blocks=(0,))


def test_gaussian_label_distribution_by_hand():
    # sigma 1 over bins 0..4 for age 2: weights e^-2, e^-0.5, 1, e^-0.5, e^-2
    d = gaussian_label_distribution(torch.tensor([2.0]), torch.arange(5.0), 1.0)[0]
    w = torch.tensor([math.exp(-2), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2)])
    assert torch.allclose(d, w / w.sum(), atol=1e-6)


def test_dldl_loss_golden():
    method = get_method("dldl", sigma=1.0, l1_weight=1.0)
    bins = torch.arange(5.0)
    target = gaussian_label_distribution(torch.tensor([2.0]), bins, 1.0)
    # predicting the label distribution exactly: KL 0 and expectation 2 -> L1 |2 - 2| = 0
    out = ModelOutput(logits=target.log(), bin_ages=bins)
    b = {"age": torch.tensor([2.0])}
    total, parts = method.loss(out, b)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-6) and parts["l1"].item() == pytest.approx(0.0, abs=1e-5)
    # uniform prediction: KL = sum t log t + log 5, expectation 2 (symmetric) -> L1 0; label 3 -> L1 1
    out = ModelOutput(logits=torch.zeros(1, 5), bin_ages=bins)
    _, parts = method.loss(out, b)
    t = target[0]
    assert parts["kl"].item() == pytest.approx(float((t * t.log()).sum() + math.log(5)), abs=1e-5)
    total, parts = method.loss(out, {"age": torch.tensor([3.0])})
    assert parts["l1"].item() == pytest.approx(1.0, abs=1e-5)
    # an unknown age contributes nothing
    total, parts = method.loss(ModelOutput(logits=torch.zeros(2, 5), bin_ages=bins), {"age": torch.tensor([3.0, float("nan")])})
    assert parts["l1"].item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(total)
    assert method.predict(out)["age"].item() == pytest.approx(2.0, abs=1e-5)


def test_cosine_with_warmup_factors_by_hand():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = cosine_with_warmup(opt, epochs=10, warmup=2)
    f = [s.lr_lambdas[0](e) for e in (0, 1, 2, 6, 10, 12)]
    # warm-up 1/3, 2/3; then 0.5 (1 + cos(pi t)) with t = (e - 2) / 8: 1, 0.5, 0, 0
    assert f == pytest.approx([1 / 3, 2 / 3, 1.0, 0.5, 0.0, 0.0], abs=1e-9)
    sched = build_scheduler(opt, {"name": "cosine", "epochs": 10, "warmup": 0, "min_factor": 0.1}, "val/mae")
    assert sched["scheduler"].lr_lambdas[0](10) == pytest.approx(0.1)
    assert isinstance(build_optimizer([torch.nn.Parameter(torch.zeros(1))], {"name": "adamw", "lr": 0.1}), torch.optim.AdamW)
    with pytest.raises(ValueError, match="cosine"):
        build_scheduler(opt, {"name": "nope"}, "val/mae")
