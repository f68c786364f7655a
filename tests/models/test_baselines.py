"""Compact baselines: parameter counts against the papers' tables (gaps recorded), heads, shapes."""
from __future__ import annotations

import pytest
import torch

from agekit.models import baselines as B
from agekit.models.complexity import count_bn_running_stats, count_macs, count_params
from agekit.models.registry import create_model, list_models, model_entry

SIZE = (3, 64, 64)


def keras_count(model) -> int:
    """Trainable parameters plus BN moving statistics: what Keras' model.count_params() prints."""
    return count_params(model) + count_bn_running_stats(model)


# C3AE Table 2, M-V2 rows (alpha_pw, alpha_exp): Param. column, reproduced exactly.
@pytest.mark.parametrize(
    "alpha, expansion, published",
    [(0.25, 4, 107129), (0.25, 6, 153561), (0.5, 4, 354713), (0.5, 6, 518857), (0.75, 4, 747961), (0.75, 6, 1102537)],
)
def test_mobilenetv2_c3ae_table2(alpha, expansion, published):
    assert keras_count(B.MobileNetV2(alpha, expansion)) == published


# C3AE Table 2, S-V2 rows (alpha_ra = scale factor, alpha_fa = bottleneck ratio), exact.
@pytest.mark.parametrize(
    "scale, ratio, published",
    [(0.25, 0.5, 76589), (0.25, 1, 464185), (0.5, 0.5, 155753), (0.5, 1, 1284087), (0.75, 0.5, 250829),
     (0.75, 1, 2473043)],
)
def test_shufflenetv2_c3ae_table2(scale, ratio, published):
    assert keras_count(B.ShuffleNetV2(scale, ratio)) == published


def test_ssrnet_table1_densenet_and_mobilenet():
    # C3AE Table 5 gives SSR-Net Table 1's compact models 242.0K (DenseNet) and 226.3K (MobileNet-V1).
    dn = B.DenseNet(19)
    assert keras_count(dn) == 242_009 and count_params(dn) == 237_905
    assert keras_count(B.DenseNet(13)) == 108_377  # the SSR-Net code's other DenseNet (no table)
    mv1 = B.MobileNetV1(0.25)
    assert keras_count(mv1) == 226_309 and count_params(mv1) == 220_837
    # SSR-Net Table 1 prints 1.0 MB (MobileNet) and 1.1 MB (DenseNet) - Keras .h5 files. Gap recorded:
    # float32 weights + BN statistics are 0.905 MB and 0.968 MB (-9.5 % and -12 %).
    assert 4 * keras_count(mv1) / 1e6 == pytest.approx(0.905236)
    assert 4 * keras_count(dn) / 1e6 == pytest.approx(0.968036)


# HSR Table 7 "M-V1(alpha)": 253.1K / 897.1K / 1933.6K / 3362.5K parameters, MACC 3.4/12.5/27.0/47.0M.
# NOT reproduced with the SSR-Net code's MobileNet head. Gap recorded: on the Keras MobileNet body
# the table implies a head of about 129*C + 1.5K parameters (C = 1024*alpha), which no head we
# tried (GAP/flatten + dense stacks, conv+dense, DEX 101-way) matches for all four alphas.
@pytest.mark.parametrize(
    "name, ours, published, rel_gap, macs, published_macc",
    [
        ("mobilenetv1_025", 226_309, 253_100, -0.1059, 3_351_584, 3.4e6),
        ("mobilenetv1_050", 842_421, 897_100, -0.0610, 12_205_600, 12.5e6),
        ("mobilenetv1_075", 1_850_981, 1_933_600, -0.0427, 26_564_640, 27.0e6),
        ("mobilenetv1_100", 3_251_989, 3_362_500, -0.0329, 46_428_704, 47.0e6),
    ],
)
def test_mobilenetv1_hsr_table7_gap(name, ours, published, rel_gap, macs, published_macc):
    model = create_model(name)
    assert keras_count(model) == ours
    assert (ours - published) / published == pytest.approx(rel_gap, abs=5e-4)
    # MACs by hand: MobileNet body at 64x64 (3,328,512 for alpha 0.25) + head 4*C*20 + 80*32 + 32;
    # they agree with the MACC column within 2.5 %.
    got = count_macs(model, SIZE)
    assert got == macs
    assert abs(got - published_macc) / published_macc < 0.025


def test_dex_head_expectation_golden():
    head = B.DEXHead(4)
    torch.testing.assert_close(head.bin_ages(), torch.arange(101, dtype=torch.float32))
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.zero_()
    out = head(torch.randn(2, 4))
    torch.testing.assert_close(out.age, torch.full((2,), 50.0))  # uniform over 0..100
    with torch.no_grad():
        head.fc.bias[30] = 50.0  # all the mass on the bin of age 30
    assert head(torch.randn(1, 4)).age.item() == pytest.approx(30.0, abs=1e-3)
    # Two bins, equal mass on 20 and 40 -> 30.
    with torch.no_grad():
        head.fc.bias.fill_(-1e4)
        head.fc.bias[20] = head.fc.bias[40] = 0.0
    assert head(torch.randn(1, 4)).age.item() == pytest.approx(30.0, abs=1e-4)


def test_cascade_head_golden():
    head = B.CascadeHead(3)
    with torch.no_grad():
        head.w1.weight.zero_()
        head.w1.bias.fill_(-1e4)
        head.w1.bias[2] = head.w1.bias[3] = 0.0  # two-point 0.5 / 0.5 on bins 20 and 30
        head.w2.weight.copy_(torch.arange(12.0).view(1, 12) * 10)
        head.w2.bias.zero_()
    out = head(torch.randn(2, 3))
    torch.testing.assert_close(out.age, torch.full((2,), 25.0))
    torch.testing.assert_close(out.bin_ages, torch.arange(12.0) * 10)
    assert out.logits.shape == out.probs.shape == (2, 12)


def test_channel_shuffle_and_make_divisible():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert B.channel_shuffle(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert [B.make_divisible(v) for v in (4, 8, 18, 24, 240)] == [8, 8, 24, 24, 240]


def test_registered_baselines_forward_backward():
    names = list_models(family="baseline")
    assert set(names) >= {
        "mobilenetv1_025", "mobilenetv1_050", "mobilenetv1_075", "mobilenetv1_100", "dex_mobilenetv1_025",
        "mobilenetv2_c3ae", "shufflenetv2_c3ae", "densenet_ssr",
    }
    for name in ("mobilenetv1_025", "dex_mobilenetv1_025", "mobilenetv2_c3ae", "shufflenetv2_c3ae", "densenet_ssr"):
        assert model_entry(name).input_size == SIZE
        model = create_model(name)
        out = model(torch.randn(2, *SIZE))
        assert out.age.shape == (2,), name
        out.age.sum().backward()
    dex = create_model("dex_mobilenetv1_025").eval()(torch.randn(1, *SIZE))
    assert dex.probs.shape == (1, 101) and 0.0 <= dex.age.item() <= 100.0
    c3 = create_model("mobilenetv2_c3ae").eval()(torch.randn(1, *SIZE))
    assert c3.logits.shape == (1, 12)


def test_any_backbone_takes_dex_head_and_bad_config_errors():
    for model in (B.MobileNetV2(0.25, 4, head="dex"), B.ShuffleNetV2(0.25, 0.5, head="dex"), B.DenseNet(13, head="dex")):
        out = model.eval()(torch.randn(1, *SIZE))
        assert out.probs.shape == (1, 101)
    with pytest.raises(ValueError, match="head"):
        B.MobileNetV1(0.25, head="softmax")
    with pytest.raises(ValueError, match="bottleneck_ratio"):
        B.ShuffleNetV2(0.25, 0.75)
    with pytest.raises(ValueError, match="depth"):
        B.DenseNet(20)
