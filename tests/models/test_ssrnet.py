"""SSR-Net: parameter counts of the paper, Eq. 7 / Eq. 3 on hand-worked values, the divisor guard."""
from __future__ import annotations

import pytest
import torch

import agekit
from agekit.models.complexity import complexity
from agekit.models.ssrnet import SSRNet, soft_stagewise_regression
from agekit.preprocessing import SSRNET


def _t(rows):
    return [torch.tensor(r, dtype=torch.float32) for r in rows]


def test_parameter_count_is_the_papers() -> None:
    c = complexity(agekit.create_model("ssrnet"), (3, 64, 64))
    # Paper Table 2 (C3AE) / Sec. 4.4: 40,915 in the Keras convention; 384 of them are BN statistics.
    assert c.params_with_bn_stats == 40_915
    assert c.params == 40_531
    # Same network for gender; the ablation drops the eta (3 x 21) and Delta (161 + 2 x 91) layers.
    assert complexity(agekit.create_model("ssrnet_gender"), (3, 64, 64)).params == 40_531
    assert complexity(agekit.create_model("ssrnet_no_dr"), (3, 64, 64)).params == 40_531 - 3 * 21 - (161 + 91 + 91)


def test_figure_stage1_pooling_option() -> None:
    # 2x2 pooling at stage 1: 40 instead of 160 features feed s_mix, x_mix (3 outputs each) and Delta (1).
    m = SSRNet(stage_pool=(2, 4, 8))
    assert complexity(m, (3, 64, 64)).params == 40_531 - (160 - 40) * 7


def test_forward_backward_shapes() -> None:
    m = agekit.create_model("ssrnet")
    out = m(torch.rand(4, 3, 64, 64) * 255)
    assert out.age.shape == (4,) and out.gender_prob is None
    assert len(out.stages) == 3
    for st in out.stages:
        assert st["p"].shape == (4, 3) and st["eta"].shape == (4, 3) and st["delta"].shape == (4,)
        assert (st["p"] >= 0).all() and st["eta"].abs().max() <= 1 and st["delta"].abs().max() <= 1
    out.age.sum().backward()
    assert m.x_stream.blocks[0].conv.weight.grad.abs().sum() > 0
    assert m.stages[2].delta.weight.grad.abs().sum() > 0


def test_gender_variant_returns_p_male() -> None:
    m = agekit.create_model("ssrnet_gender").eval()
    out = m(torch.rand(2, 3, 64, 64) * 255)
    assert out.age is None and out.gender_prob.shape == (2,)
    inv = agekit.create_model("ssrnet_gender", invert_gender=True).eval()
    inv.load_state_dict(m.state_dict())
    assert torch.allclose(inv(torch.zeros(1, 3, 64, 64)).gender_prob, 1 - m(torch.zeros(1, 3, 64, 64)).gender_prob)
    assert agekit.model_entry("ssrnet_gender").preprocess == SSRNET


def test_registry_kwargs_reach_the_network() -> None:
    m = agekit.create_model("ssrnet", stage_num=(3, 4, 5), lambda_local=0.5, lambda_d=0.25, V=90)
    assert m.stage_num == (3, 4, 5) and m.lambda_local == 0.5 and m.lambda_d == 0.25 and m.V == 90
    assert m(torch.rand(2, 3, 64, 64)).stages[2]["p"].shape == (2, 5)
    assert not agekit.create_model("ssrnet", dynamic_range=False).dynamic_range


# Hand-worked Eq. 7 (V = 90, lambda_local = lambda_d = 1):
#   stage 1: p = (0, 1, 0), eta = (0, .5, 0), Delta = .5  -> (1 + .5) / (3 * 1.5)            = 1/3
#   stage 2: p = (0, 0, 2), eta = (0, 0, -.5), Delta = -.5 -> 2 (2 - .5) / (4.5 * 3 * .5)     = 4/9
#   stage 3: p = (1, 0, 0), eta = (.9, 0, 0), Delta = 0   -> .9 / (6.75 * 3)                  = 2/45
#   age = 90 * (15 + 20 + 2) / 45 = 74
P = [[[0, 1, 0]], [[0, 0, 2]], [[1, 0, 0]]]
ETA = [[[0, 0.5, 0]], [[0, 0, -0.5]], [[0.9, 0, 0]]]
DELTA = [[0.5], [-0.5], [0.0]]


def test_eq7_golden_value() -> None:
    age = soft_stagewise_regression(_t(P), _t(ETA), _t(DELTA), (3, 3, 3), V=90, lambda_local=1.0, lambda_d=1.0)
    assert age.item() == pytest.approx(74.0, abs=1e-5)
    # lambda_local = lambda_d = 0.5:
    #   stage 1: 1.25 / (3 * 1.25) = 1/3 ; stage 2: 2 * 1.75 / (3.75 * 3 * .75) = 3.5 / 8.4375 ; stage 3: .45 / 25.3125
    age = soft_stagewise_regression(_t(P), _t(ETA), _t(DELTA), (3, 3, 3), V=90, lambda_local=0.5, lambda_d=0.5)
    assert age.item() == pytest.approx(90 * (1 / 3 + 3.5 / 8.4375 + 0.45 / 25.3125), abs=1e-4)


def test_no_dynamic_range_is_eq3() -> None:
    # Eq. 3 ignores eta and Delta: 90 * (1/3 + 2*2/9 + 0) = 70
    off = soft_stagewise_regression(_t(P), _t(ETA), _t(DELTA), (3, 3, 3), V=90, dynamic_range=False)
    assert off.item() == pytest.approx(70.0, abs=1e-5)
    # ... and so does Eq. 7 with lambda_local = lambda_d = 0
    zero = soft_stagewise_regression(_t(P), _t(ETA), _t(DELTA), (3, 3, 3), V=90, lambda_local=0, lambda_d=0)
    assert zero.item() == pytest.approx(70.0, abs=1e-5)
    # The paper's Sec. 3.2 example: V = 90, s = (3, 3): "middle age" (30) + "relatively older" (+20) = 50
    two = soft_stagewise_regression(_t([[[0, 1, 0]], [[0, 0, 1]]]), None, None, (3, 3), V=90, dynamic_range=False)
    assert two.item() == pytest.approx(50.0, abs=1e-5)
    m = agekit.create_model("ssrnet_no_dr")
    out = m(torch.rand(2, 3, 64, 64))
    assert set(out.stages[0]) == {"p"}


def test_divisor_guard_prevents_blow_up() -> None:
    p, eta, delta = _t([[[0, 0, 1]]]), _t([[[0, 0, 0]]]), _t([[-1.0]])
    unguarded = soft_stagewise_regression(p, eta, delta, (3,), V=1.0, min_range=0)
    assert torch.isinf(unguarded).all()  # 2 / (3 * 0): the released formula
    guarded = soft_stagewise_regression(p, eta, delta, (3,), V=1.0)
    assert guarded.item() == pytest.approx(2 / (3 * 0.1), abs=1e-5)
    # A network whose Delta saturates at -1 stays finite and bounded.
    m = agekit.create_model("ssrnet").eval()
    with torch.no_grad():
        for st in m.stages:
            st.delta.bias.fill_(-1e4)
        age = m(torch.rand(2, 3, 64, 64) * 255).age
    assert torch.isfinite(age).all()
    assert all((st["delta"] == -1).all() for st in m(torch.rand(1, 3, 64, 64)).stages)


def test_bad_stage_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="three stages"):
        SSRNet(stage_num=(3, 3))
    with pytest.raises(ValueError, match="bins"):
        soft_stagewise_regression(_t([[[0, 1]]]), None, None, (3,), dynamic_range=False)
