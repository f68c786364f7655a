"""Golden-value tests of the training methods (numbers worked out by hand in the comments)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agekit.methods import (
    default_method_for,
    distillation_loss,
    get_method,
    homologous_stagewise_age,
    kl_divergence,
    list_methods,
    slack_l1,
    soft_stagewise_age,
    soft_target,
    stage_targets_from_distribution,
    two_point_encode,
)
from agekit.outputs import ModelOutput


def batch(age, gender=None, age_group=None, age_std=None):
    n = len(age)
    return {
        "age": torch.tensor(age, dtype=torch.float32),
        "gender": torch.tensor(gender if gender is not None else [-1] * n, dtype=torch.long),
        "age_group": torch.tensor(age_group if age_group is not None else [-1] * n, dtype=torch.long),
        "age_std": torch.tensor(age_std if age_std is not None else [float("nan")] * n, dtype=torch.float32),
    }


# ----------------------------------------------------------------------------- C3AE
def test_two_point_encoding_of_68_is_02_08():
    # C3AE Sec. 3.2: y = 68, K = 10 -> 0.2 on bin 60 and 0.8 on bin 70
    enc = two_point_encode(torch.tensor([68.0, 70.0, 110.0, float("nan")]))
    assert enc.shape == (4, 12)
    assert enc[0, 6].item() == pytest.approx(0.2, abs=1e-6)
    assert enc[0, 7].item() == pytest.approx(0.8, abs=1e-6)
    assert enc[0].sum().item() == pytest.approx(1.0)
    assert enc[1, 7].item() == pytest.approx(1.0)  # exactly on a bin
    assert enc[2, 11].item() == pytest.approx(1.0)  # last bin
    assert enc[3].abs().sum().item() == 0.0  # unknown age
    # the expectation of the encoding over the bins is the age itself
    assert (enc[:3] * torch.arange(0, 120, 10.0)).sum(1).tolist() == pytest.approx([68.0, 70.0, 110.0], abs=1e-4)


def test_kl_term_by_hand():
    # KL([0.2, 0.8] || [0.5, 0.5]) = 0.2 ln 0.4 + 0.8 ln 1.6 = 0.192745
    kl = kl_divergence(torch.tensor([[0.2, 0.8]]), torch.tensor([[0.5, 0.5]]))
    assert kl.item() == pytest.approx(0.2 * math.log(0.4) + 0.8 * math.log(1.6), abs=1e-6)
    assert kl.item() == pytest.approx(0.192745, abs=1e-5)


class _W1Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Linear(4, 12)
        nn.init.constant_(self.w1.weight, -0.1)  # ||W1||_1 = 48 * 0.1 = 4.8 (bias not counted)
        nn.init.constant_(self.w1.bias, 5.0)


def test_c3ae_loss_golden():
    # age 68, predicted 70, uniform distribution over 12 bins:
    # L1 = 2; KL = 0.2 ln(0.2*12) + 0.8 ln(0.8*12) = 1.984504; alpha = 10
    out = ModelOutput(age=torch.tensor([70.0]), probs=torch.full((1, 12), 1 / 12))
    m = get_method("c3ae")
    total, parts = m.loss(out, batch([68.0]))
    kl = 0.2 * math.log(2.4) + 0.8 * math.log(9.6)
    assert kl == pytest.approx(1.984504, abs=1e-6)
    assert parts["l1"].item() == pytest.approx(2.0)
    assert parts["kl"].item() == pytest.approx(10 * kl, abs=1e-4)
    assert total.item() == pytest.approx(2.0 + 10 * kl, abs=1e-4)
    # Eq. 4 sparsity: alpha * lambda * ||W1||_1 = 10 * 0.01 * 4.8 = 0.48
    m2 = get_method("c3ae", sparsity=0.01)
    total2, parts2 = m2.loss(out, batch([68.0]), model=_W1Model())
    assert parts2["w1_l1"].item() == pytest.approx(0.48, abs=1e-5)
    assert total2.item() == pytest.approx(2.0 + 10 * kl + 0.48, abs=1e-4)
    with pytest.raises(ValueError, match="w1"):
        m2.loss(out, batch([68.0]), model=nn.Linear(2, 2))


def test_c3ae_predict_uncertainty():
    # 0.5 on 60 and 0.5 on 70: mean 65, std 5
    probs = torch.zeros(1, 12)
    probs[0, 6] = probs[0, 7] = 0.5
    res = get_method("c3ae").predict(ModelOutput(age=torch.tensor([64.0]), probs=probs))
    assert res["age"].item() == pytest.approx(64.0)  # W2's age, not the expectation
    assert res["uncertainty"].item() == pytest.approx(5.0, abs=1e-5)


# ----------------------------------------------------------------------------- SSR / HSR
def test_ssr_fusion_example():
    # SSR-Net Sec. 3.2 example: V = 90, two stages of 3 bins (widths 30 and 10).
    p1, p2 = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    z3, z1 = torch.zeros(1, 3), torch.zeros(1)
    # middle age (1 * 30) + relatively older (2 * 10) = 50
    assert soft_stagewise_age([p1, p2], [z3, z3], [z1, z1], V=90).item() == pytest.approx(50.0)
    # Eq. 6 shift: eta_1 = 0.5 on bin 1 -> 1.5 * 30 + 2 * 10 = 65
    eta1 = torch.tensor([[0.0, 0.5, 0.0]])
    assert soft_stagewise_age([p1, p2], [eta1, z3], [z1, z1], V=90).item() == pytest.approx(65.0)
    # Eq. 4 scale: delta_1 = 0.5 -> sbar_1 = 4.5: 1 * 90/4.5 + 2 * 90/(4.5*3) = 20 + 13.333
    d1 = torch.tensor([0.5])
    assert soft_stagewise_age([p1, p2], [z3, z3], [d1, z1], V=90).item() == pytest.approx(20 + 40 / 3, abs=1e-4)


def test_ssr_divisor_guard():
    # delta -> -1 makes sbar -> 0; the guard keeps the age finite
    p = torch.tensor([[0.0, 0.0, 1.0]])
    age = soft_stagewise_age([p], [torch.zeros(1, 3)], [torch.tensor([-1.0])], V=101)
    assert torch.isfinite(age).all()


def test_ssr_l1_loss_and_unknown_ages():
    age = torch.tensor([30.0, 50.0, 7.0], requires_grad=True)
    total, parts = get_method("ssr").loss(ModelOutput(age=age), batch([32.0, 45.0, float("nan")]))
    assert total.item() == pytest.approx((2 + 5) / 2)  # the NaN age is left out
    total.backward()
    assert torch.isfinite(age.grad).all() and age.grad[2].item() == 0.0


def test_ssr_decodes_from_stages_when_no_age():
    st = ({"p": torch.tensor([[0.0, 1.0, 0.0]]), "eta": torch.zeros(1, 3), "delta": torch.zeros(1)},)
    res = get_method("ssr", V=90).predict(ModelOutput(stages=st))
    assert res["age"].item() == pytest.approx(30.0)


def test_ssr_gender():
    # V = 1: gender_prob = P(male); target = 1 - gender. |0.8 - 1| and |0.8 - 0| -> mean 0.5
    out = ModelOutput(gender_prob=torch.tensor([0.8, 0.8, 0.3]))
    total, _ = get_method("ssr_gender").loss(out, batch([1.0, 2.0, 3.0], gender=[0, 1, -1]))
    assert total.item() == pytest.approx(0.5)
    res = get_method("ssr_gender").predict(out)
    assert res["gender_female"].tolist() == pytest.approx([0.2, 0.2, 0.7])
    assert "age" not in res


def test_hsr_stagewise_age_and_loss():
    # coarse 0.5 on 10 and 0.5 on 20 -> 15; fine one-hot on 3 -> 3; age 18
    coarse = torch.zeros(1, 10)
    coarse[0, 1] = coarse[0, 2] = 0.5
    fine = torch.zeros(1, 10)
    fine[0, 3] = 1.0
    bins_c, bins_f = torch.arange(0, 100, 10.0), torch.arange(10.0)
    age = homologous_stagewise_age([coarse, fine], [bins_c, bins_f])
    assert age.item() == pytest.approx(18.0)
    st = ({"probs": coarse, "bins": bins_c, "value": None}, {"probs": fine, "bins": bins_f, "value": None})
    total, parts = get_method("hsr").loss(ModelOutput(stages=st), batch([20.0]))
    assert parts["l1"].item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------- LRN
def test_lrn_soft_target_with_tau():
    # softmax([0, 2] / 2) = [1, e] / (1 + e) = [0.268941, 0.731059]
    p = soft_target(torch.tensor([[0.0, 2.0]]), tau=2.0)
    assert p[0].tolist() == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], abs=1e-6)
    assert p[0, 0].item() == pytest.approx(0.268941, abs=1e-6)


def test_slack_l1_by_hand():
    # Eq. 15: max(0, |0.5 - 0.4| - 0.05) = 0.05; slack 0.2 -> 0
    s, y = torch.tensor([0.5, 0.5]), torch.tensor([0.4, 0.4])
    assert slack_l1(s, y, torch.tensor([0.05, 0.2])).tolist() == pytest.approx([0.05, 0.0], abs=1e-7)


def _lrn_out(logits, s):
    return ModelOutput(logits=torch.tensor(logits), regression=torch.tensor(s), bin_ages=torch.tensor([0.0, 1.0, 2.0]))


def test_lrn_ancestor_loss_eq16():
    # 3 ages 0..2, uniform p: CE = ln 3; y = (1 - 0)/(2 - 0) = 0.5, s = 0.75: lambda * 0.25 = 1
    m = get_method("lrn")  # generation 1, tau 2, alpha 0.5, lambda 4
    total, parts = m.loss(_lrn_out([[0.0, 0.0, 0.0]], [0.75]), batch([1.0]))
    assert parts["ce"].item() == pytest.approx(math.log(3), abs=1e-6)
    assert parts["l1"].item() == pytest.approx(1.0, abs=1e-6)
    assert total.item() == pytest.approx(math.log(3) + 1.0, abs=1e-6)
    assert not m.needs_teacher


def test_lrn_refinery_loss_eq17():
    # teacher and student logits [0, 2, 0], tau 2: p = [1, e, 1] / (2 + e) for both.
    p = [1 / (2 + math.e), math.e / (2 + math.e), 1 / (2 + math.e)]
    soft_ce = -sum(pi * math.log(pi) for pi in p)  # Eq. 7 = entropy here, 0.975318
    hard_ce = -math.log(p[1])  # Eq. 8, age 1 -> bin 1, 0.551444
    assert soft_ce == pytest.approx(0.975318, abs=1e-5) and hard_ce == pytest.approx(0.551444, abs=1e-5)
    # slack: teacher s = 0.6 -> |0.6 - 0.5| = 0.1; student s = 0.75 -> 0.25 - 0.1 = 0.15; * 4 = 0.6
    m = get_method("lrn", generation=2)
    assert m.needs_teacher
    teacher = _lrn_out([[0.0, 2.0, 0.0]], [0.6])
    total, parts = m.loss(_lrn_out([[0.0, 2.0, 0.0]], [0.75]), batch([1.0]), teacher=teacher)
    assert parts["ce"].item() == pytest.approx(0.5 * soft_ce + 0.5 * hard_ce, abs=1e-5)
    assert parts["slack_l1"].item() == pytest.approx(0.6, abs=1e-5)
    assert total.item() == pytest.approx(0.5 * soft_ce + 0.5 * hard_ce + 0.6, abs=1e-5)
    with pytest.raises(ValueError, match="teacher"):
        m.loss(_lrn_out([[0.0, 2.0, 0.0]], [0.75]), batch([1.0]))


def test_lrn_decoder_eq20():
    # p = [1, e, 1]/(2 + e) over ages 0, 1, 2: Eq. 18 = 1; Eq. 19 = 2 * 0.75 + 0 = 1.5; Eq. 20 = 1.25
    out = _lrn_out([[0.0, 2.0, 0.0]], [0.75])
    res = get_method("lrn").predict(out)
    assert res["age"].item() == pytest.approx(1.25, abs=1e-6)
    assert res["uncertainty"].item() == pytest.approx(math.sqrt(2 / (2 + math.e)), abs=1e-6)
    assert get_method("lrn", decoder="ldl").predict(out)["age"].item() == pytest.approx(1.0, abs=1e-6)
    assert get_method("lrn", decoder="reg").predict(out)["age"].item() == pytest.approx(1.5, abs=1e-6)


def test_lrn_gradients_finite_with_unknown_age():
    logits = torch.zeros(2, 3, requires_grad=True)
    s = torch.tensor([0.3, 0.9], requires_grad=True)
    out = ModelOutput(logits=logits, regression=s, bin_ages=torch.tensor([0.0, 1.0, 2.0]))
    teacher = _lrn_out([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [0.5, 0.2])
    total, _ = get_method("lrn", generation=3).loss(out, batch([2.0, float("nan")]), teacher=teacher)
    total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(s.grad).all()
    assert s.grad[1].item() == 0.0 and logits.grad[1].abs().sum().item() == 0.0


def test_distillation_into_hsr_stages():
    # the teacher puts all mass on age 37: coarse target = bin 30, fine target = bin 7
    logits = torch.full((1, 101), -1e4)
    logits[0, 37] = 0.0
    teacher = ModelOutput(logits=logits, bin_ages=torch.arange(101.0), age=torch.tensor([37.0]))
    bins = [torch.arange(0, 100, 10.0), torch.arange(10.0)]
    tg = stage_targets_from_distribution(soft_target(logits, 2.0), teacher.bin_ages, bins)
    assert tg[0][0, 3].item() == pytest.approx(1.0) and tg[1][0, 7].item() == pytest.approx(1.0)
    # half on 37, half on 42: coarse 0.5 / 0.5 on 30 / 40, fine 0.5 / 0.5 on 7 / 2
    p = torch.zeros(1, 101)
    p[0, 37] = p[0, 42] = 0.5
    tg = stage_targets_from_distribution(p, teacher.bin_ages, bins)
    assert tg[0][0, 3].item() == pytest.approx(0.5) and tg[0][0, 4].item() == pytest.approx(0.5)
    assert tg[1][0, 7].item() == pytest.approx(0.5) and tg[1][0, 2].item() == pytest.approx(0.5)
    # a student that matches the teacher exactly has zero KL; its L1 to the teacher's age is |35 - 37|
    st = ({"probs": torch.nn.functional.one_hot(torch.tensor([3]), 10).float(), "bins": bins[0]},
          {"probs": torch.nn.functional.one_hot(torch.tensor([7]), 10).float(), "bins": bins[1]})
    parts = distillation_loss(ModelOutput(age=torch.tensor([35.0]), stages=st), teacher, tau=2.0)
    assert parts["kd_stage"].item() == pytest.approx(0.0, abs=1e-5)
    assert parts["kd_l1"].item() == pytest.approx(2.0)


def test_distillation_logits_kl_and_method():
    # same logits -> KL 0; the "distill" method mixes (1 - alpha) * student L1 and alpha * KD terms
    t = ModelOutput(logits=torch.tensor([[0.0, 2.0, 0.0]]), regression=torch.tensor([0.5]),
                    bin_ages=torch.tensor([0.0, 1.0, 2.0]))
    s = ModelOutput(age=torch.tensor([2.0]), logits=torch.tensor([[0.0, 2.0, 0.0]]))
    assert distillation_loss(s, t, tau=2.0)["kd_kl"].item() == pytest.approx(0.0, abs=1e-6)
    m = get_method("distill", student="l1", alpha=0.5)
    total, parts = m.loss(s, batch([1.5]), teacher=t)
    # teacher age by Eq. 20 = (1 + (2 * 0.5 + 0)) / 2 = 1; student L1 = 0.5; KD L1 = |2 - 1| = 1
    assert parts["l1"].item() == pytest.approx(0.25)
    assert parts["kd_l1"].item() == pytest.approx(0.5, abs=1e-6)
    assert total.item() == pytest.approx(0.75, abs=1e-5)


def test_project_distribution_two_point_rule():
    from agekit.methods.base import project_distribution

    src = torch.arange(101.0)
    dst = torch.arange(0.0, 120.0, 10.0)  # C3AE's 12 bins
    p = torch.zeros(2, 101)
    p[0, 68] = 1.0
    p[1, 5] = p[1, 100] = 0.5
    q = project_distribution(p, src, dst)
    assert q.shape == (2, 12) and torch.allclose(q.sum(1), torch.ones(2))
    assert q[0, 6].item() == pytest.approx(0.2) and q[0, 7].item() == pytest.approx(0.8)
    assert q[0].sum().item() - q[0, 6].item() - q[0, 7].item() == pytest.approx(0.0, abs=1e-7)
    assert q[1, 0].item() == pytest.approx(0.25) and q[1, 1].item() == pytest.approx(0.25)
    assert q[1, 10].item() == pytest.approx(0.5)
    assert torch.allclose((q * dst).sum(1), (p * src).sum(1))  # the expectation is kept
    # onto the same bins: unchanged; ages past the last bin go to it
    assert torch.allclose(project_distribution(p, src, src), p)
    r = torch.tensor([[0.0, 1.0]])
    assert project_distribution(r, torch.tensor([0.0, 95.0]), torch.tensor([0.0, 50.0, 90.0])).tolist() == [[0.0, 0.0, 1.0]]


def test_distillation_onto_other_bins_and_ensemble_teacher_age():
    # a 101-bin teacher sure of 68 and a C3AE student with 0.2 / 0.8 on 60 / 70: zero KL at tau 1
    t_logits = torch.full((1, 101), -1e4)
    t_logits[0, 68] = 0.0
    teacher = ModelOutput(age=torch.tensor([66.0]), logits=t_logits, bin_ages=torch.arange(101.0))
    sp = torch.full((1, 12), 1e-9)
    sp[0, 6], sp[0, 7] = 0.2, 0.8
    student = ModelOutput(age=torch.tensor([60.0]), logits=sp.log(), bin_ages=torch.arange(0.0, 120.0, 10.0))
    parts = distillation_loss(student, teacher, tau=1.0)
    assert parts["kd_kl"].item() == pytest.approx(0.0, abs=1e-5)
    assert parts["kd_l1"].item() == pytest.approx(6.0)
    # a uniform student: KL = sum t log(t / (1/12)) = log 12 + 0.2 log 0.2 + 0.8 log 0.8
    student = ModelOutput(age=torch.tensor([60.0]), logits=torch.zeros(1, 12), bin_ages=torch.arange(0.0, 120.0, 10.0))
    want = math.log(12) + 0.2 * math.log(0.2) + 0.8 * math.log(0.8)
    assert distillation_loss(student, teacher, tau=1.0)["kd_kl"].item() == pytest.approx(want, abs=1e-5)
    # teacher_method None: the teacher's own age (an ensemble's mean) is the KD L1 target
    m = get_method("distill", student="c3ae", teacher_method=None, tau=1.0, alpha=0.5)
    _, parts = m.loss(student, batch([60.0]), teacher=teacher)
    assert parts["kd_l1"].item() == pytest.approx(0.5 * 6.0)


def test_teacher_ensemble_means_ages_and_finest_distributions():
    from agekit.training.teacher import TeacherEnsemble, teacher_paths

    class Fixed(nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x):
            return self.out

    def one_hot_101(age):
        lg = torch.full((1, 101), -1e4)
        lg[0, age] = 0.0
        return ModelOutput(age=torch.tensor([float(age)]), logits=lg, probs=lg.softmax(1), bin_ages=torch.arange(101.0))

    c3ae = ModelOutput(age=torch.tensor([48.0]), logits=torch.zeros(1, 12), probs=torch.full((1, 12), 1 / 12),
                       bin_ages=torch.arange(0.0, 120.0, 10.0))
    ens = TeacherEnsemble([Fixed(c3ae), Fixed(one_hot_101(30)), Fixed(one_hot_101(36))],
                          [get_method("c3ae"), get_method("dldl"), get_method("dldl")])
    out = ens(torch.zeros(1, 3, 64, 64))
    assert out.age.item() == pytest.approx((48 + 30 + 36) / 3)
    assert out.bin_ages.numel() == 101  # the finest bins; the 12-bin member gives only its age
    assert out.probs[0, 30].item() == pytest.approx(0.5) and out.probs[0, 36].item() == pytest.approx(0.5)
    assert torch.allclose(out.logits.softmax(1), out.probs)
    assert teacher_paths("a.pt, b.pt") == ["a.pt", "b.pt"] and teacher_paths(["a.pt"]) == ["a.pt"]
    with pytest.raises(ValueError):
        teacher_paths(" , ")


# ----------------------------------------------------------------------------- classifiers
def test_lmtcnn_multitask_and_levi_hassner():
    out = ModelOutput(age_group_logits=torch.zeros(2, 8), gender_logits=torch.zeros(2, 2))
    b = batch([float("nan")] * 2, gender=[1, -1], age_group=[3, 5])
    total, parts = get_method("lmtcnn").loss(out, b)
    assert parts["age_group_ce"].item() == pytest.approx(math.log(8), abs=1e-6)
    assert parts["gender_ce"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert total.item() == pytest.approx(math.log(16), abs=1e-6)
    assert get_method("levi_hassner_age").loss(out, b)[0].item() == pytest.approx(math.log(8), abs=1e-6)
    assert get_method("levi_hassner_gender").loss(out, b)[0].item() == pytest.approx(math.log(2), abs=1e-6)
    logits = torch.tensor([[0.0, 3.0, 0, 0, 0, 0, 0, 0]])
    res = get_method("lmtcnn").predict(ModelOutput(age_group_logits=logits, gender_logits=torch.tensor([[0.0, math.log(3)]])))
    assert res["age_group"].item() == 1 and res["age_group_probs"].shape == (1, 8)
    assert res["gender_female"].item() == pytest.approx(0.75, abs=1e-6)


def test_dex_and_l1():
    out = ModelOutput(logits=torch.zeros(1, 101))
    total, parts = get_method("dex").loss(out, batch([40.0]))
    assert total.item() == pytest.approx(math.log(101), abs=1e-5)
    res = get_method("dex").predict(out)
    assert res["age"].item() == pytest.approx(50.0, abs=1e-4)
    # std of the uniform distribution over 0..100 = sqrt((101^2 - 1) / 12)
    assert res["uncertainty"].item() == pytest.approx(math.sqrt((101**2 - 1) / 12), abs=1e-3)
    total, _ = get_method("l1").loss(ModelOutput(age=torch.tensor([10.0, 20.0])), batch([12.0, 26.0]))
    assert total.item() == pytest.approx(4.0)


def test_distribution_median_golden_and_median_decoder():
    from agekit.methods.base import distribution_median

    bins = torch.arange(4.0)
    # cumsum 0.1 / 0.3 / 0.7 / 1: the median falls in bin 2 (covering 1.5..2.5), 0.2 of its 0.4 in -> 2.0
    p = torch.tensor([[0.1, 0.2, 0.4, 0.3], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 0.5]])
    # uniform over -0.5..3.5 -> 1.5; all mass in bin 2 -> its middle; half in bin 0 -> bin 0's upper edge, 0.5
    torch.testing.assert_close(distribution_median(p, bins), torch.tensor([2.0, 1.5, 2.0, 0.5]))
    # uneven bins: widths from the neighbours (20, 15, 10); all mass on the 30-bin -> its middle, 30
    assert distribution_median(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([10.0, 30.0, 40.0])).item() == pytest.approx(30.0)
    out = ModelOutput(logits=torch.tensor([[0.1, 0.2, 0.4, 0.3]]).log())
    mean = get_method("dex").predict(out)["age"].item()
    assert mean == pytest.approx(1.9, abs=1e-5)
    for name in ("dex", "dldl"):
        res = get_method(name, decoder="median").predict(out)
        assert res["age"].item() == pytest.approx(2.0, abs=1e-5)
        assert res["uncertainty"].item() == pytest.approx(math.sqrt(0.89), abs=1e-5)  # the std either way
    # a distilled student decodes with its own method's decoder
    d = get_method("distill", student="dldl", student_config={"decoder": "median"}, teacher_method=None)
    assert d.predict(out)["age"].item() == pytest.approx(2.0, abs=1e-5)
    with pytest.raises(ValueError, match="decoder"):
        get_method("dldl", decoder="mode")


# ----------------------------------------------------------------------------- registry
def test_registry_and_defaults():
    expected = {"ssr", "ssr_gender", "hsr", "c3ae", "lrn", "lmtcnn", "levi_hassner_age", "levi_hassner_gender", "dex",
                "l1", "dldl"}
    assert expected <= set(list_methods())
    cases = {
        "ssrnet": "ssr", "ssrnet_gender": "ssr_gender", "c3ae_plain": "c3ae", "c3ae_context": "c3ae",
        "hsr": "hsr", "sephsr_30_10": "hsr", "bsephsr_k3": "hsr", "lrn_resnet10_tiny": "lrn",
        "lmtcnn_1_1": "lmtcnn", "levi_hassner_age": "levi_hassner_age",
        "levi_hassner_gender": "levi_hassner_gender", "levi_hassner": "lmtcnn", "dex_vgg16": "dex",
        "mobilenetv2_c3ae": "c3ae", "mobilenetv1_025": "l1", "densenet_ssr": "l1", "agenet": "dldl",
    }
    for model, method in cases.items():
        assert default_method_for(model) == method, model
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")
    with pytest.raises(TypeError, match="no options"):
        get_method("c3ae", alhpa=3)
    assert get_method("c3ae", alpha=5).config["alpha"] == 5


# ----------------------------------------------------------------------------- with the real networks
@pytest.mark.parametrize(
    "model_name, keys",
    [("ssrnet", {"age"}), ("ssrnet_gender", {"gender_female"}), ("c3ae_plain", {"age", "uncertainty"}),
     ("hsr_30_10", {"age"}), ("lrn_resnet10_tiny", {"age", "uncertainty"}),
     ("lmtcnn_1_1", {"age_group", "age_group_probs", "gender_female"})],
)
def test_default_method_trains_registered_model(model_name, keys):
    from agekit.models.registry import create_model, list_models, model_entry

    if model_name not in list_models():
        pytest.skip(f"{model_name} is not registered")
    model = create_model(model_name).train()
    config = {"sparsity": 1e-4} if model_name.startswith("c3ae") else {}  # exercises model.w1
    method = get_method(default_method_for(model_name), **config)
    size = (3, 64, 64) if model_name.startswith("lrn") else model_entry(model_name).input_size  # GAP: any size
    x = torch.rand(2, *size)
    out = model(x)
    total, parts = method.loss(out, batch([23.0, float("nan")], gender=[1, -1], age_group=[2, -1]), model=model)
    assert torch.isfinite(total) and parts
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert set(method.predict(out)) == keys


def test_teacher_member_gets_its_own_normalisation():
    # the student feeds RGB / 255; a BGR member with mean/std must see its own input, as at its training
    from agekit.preprocessing import PreprocessSpec, normalize
    from agekit.training.teacher import Renormalize

    class Echo(nn.Module):
        def forward(self, x):
            return x

    student = PreprocessSpec(size=4, color="RGB")
    member = PreprocessSpec(size=4, color="BGR", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    raw = torch.rand(2, 3, 4, 4) * 255
    got = Renormalize(Echo(), student, member)(normalize(raw, student))
    want = normalize(raw, member, input_color="RGB")
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got[:, 0], (raw[:, 2] / 255 - 0.5) / 0.2, atol=1e-5)  # B first
    with pytest.raises(ValueError, match="per-image"):
        Renormalize(Echo(), PreprocessSpec(size=4, per_image_standardize=True), member)


def test_inference_decoder_of_a_distilled_student_uses_its_card():
    # the predictor builds the method from the card's options: a distilled AgeNet decodes as DLDL, not HSR
    from agekit.methods import load_method

    card = {"method_config": {"student": "dldl", "student_config": {"sigma": 2.0}, "teacher_method": None, "tau": 2.0}}
    m = load_method("distill", "agenet_mt", card)
    assert m.student_method.name == "dldl" and m.teacher_decoder is None
    assert load_method("distill", "agenet_mt").student_method.name == "hsr"  # the bare default
    lg = torch.full((1, 101), -1e4)
    lg[0, 40] = lg[0, 42] = 0.0
    out = ModelOutput(logits=lg, probs=lg.softmax(1), bin_ages=torch.arange(101.0), age=torch.tensor([41.0]))
    assert m.predict(out)["age"].item() == pytest.approx(41.0)
    assert load_method("c3ae", "c3ae_wide", {"method_config": {"alpha": 10.0, "generation": 2}}).alpha == 10.0


def test_load_method_refuses_card_options_the_method_does_not_take():
    # a card is decoded with its own options or not at all: never silently with the defaults
    from agekit.methods import load_method

    with pytest.raises(ValueError, match="c3ae_wide.*no_such_option"):
        load_method("c3ae", "c3ae_wide", {"method_config": {"no_such_option": 1.0}})
    with pytest.raises(ValueError, match="unknown method"):
        load_method("no_such_method", "c3ae_wide", {})


def test_methods_state_their_labels_and_default_models():
    from agekit.methods import default_method_for
    from agekit.methods.base import get_registered

    assert get_registered("ssr_gender").required_labels == ("gender",)
    assert get_registered("levi_hassner_age").required_labels == ("age_group",)
    assert get_registered("lmtcnn").required_labels == ()
    assert get_registered("dldl").required_labels == ("age",)
    # the most specific glob wins: ssrnet*gender* over ssrnet*, an exact name over a glob
    assert default_method_for("ssrnet_gender") == "ssr_gender" and default_method_for("ssrnet") == "ssr"
    assert default_method_for("levi_hassner") == "lmtcnn" and default_method_for("levi_hassner_age") == "levi_hassner_age"
    assert default_method_for("resnet18") == "l1"


def test_gender_distillation_is_the_cross_entropy_to_the_teacher_by_hand():
    """gender_distill x -sum_c q_c log p_c (Hinton et al. 2015, Eq. 2 at T = 1), on every sample."""
    from agekit.methods.base import get_registered
    from agekit.outputs import ModelOutput

    m = get_registered("l1")(gender_distill=2.0, gender_weight=0.0)
    student = ModelOutput(age=torch.tensor([30.0, 40.0]), gender_logits=torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]]))
    teacher = ModelOutput(age=torch.tensor([30.0, 40.0]),
                          gender_logits=torch.tensor([[0.2, 0.8], [0.5, 0.5]]).log())
    batch = {"age": torch.tensor([30.0, 40.0]), "gender": torch.tensor([-1, -1])}  # unlabelled: the teacher still counts
    _, parts = m.loss(student, batch, teacher=teacher)
    # face 1: p = (1/2, 1/2): CE = ln 2 = 0.6931; face 2: p = (1/4, 3/4), q = (1/2, 1/2): (ln 4 + ln 4/3) / 2 = 0.8370
    assert parts["gender_kd"].item() == pytest.approx(2.0 * (0.693147 + 0.836988) / 2, abs=1e-5)
    assert "gender_kd" not in m.loss(student, batch, teacher=None)[1]
    assert "gender_kd" not in get_registered("l1")().loss(student, batch, teacher=teacher)[1]  # off by default


def test_feature_distillation_is_one_minus_the_cosine_of_the_hint_by_hand():
    """feature_distill x mean(1 - cos(hint, teacher features)): orthogonal 1, parallel 0 (any length)."""
    from agekit.methods.base import get_registered
    from agekit.outputs import ModelOutput

    m = get_registered("l1")(feature_distill=3.0)
    student = ModelOutput(age=torch.tensor([30.0, 40.0]), extras={"hint": torch.tensor([[1.0, 0.0], [1.0, 1.0]])})
    teacher = ModelOutput(age=torch.tensor([30.0, 40.0]), features=torch.tensor([[0.0, 5.0], [2.0, 2.0]]))
    _, parts = m.loss(student, {"age": torch.tensor([30.0, 40.0])}, teacher=teacher)
    assert parts["feature_kd"].item() == pytest.approx(3.0 * (1.0 + 0.0) / 2)
    assert "feature_kd" not in m.loss(ModelOutput(age=student.age), {"age": student.age}, teacher=teacher)[1]
