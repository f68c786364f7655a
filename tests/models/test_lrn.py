"""LRN backbones (Table 2 of the paper) and the Eq. 18-20 age decoder."""
from __future__ import annotations

import math

import pytest
import torch

from agekit.models.complexity import count_params
from agekit.models.lrn import LRNResNet, decode_age
from agekit.models.registry import create_model, list_models, model_entry
from agekit.preprocessing import IMAGENET

# Table 2 / Table 1 (# of parameters, millions).
PAPER_M = {"lrn_resnet10": 4.9, "lrn_resnet18": 11.2, "lrn_resnet10_tiny": 1.2, "lrn_resnet18_tiny": 2.8}
# Exact counts of our networks: backbone (conv1 .. conv5_x) and with 101-age (0-100) heads.
BACKBONE = {
    "lrn_resnet10": 4_905_792,
    "lrn_resnet18": 11_176_512,
    "lrn_resnet10_tiny": 1_230_240,
    "lrn_resnet18_tiny": 2_798_880,
}


def backbone_params(model: LRNResNet) -> int:
    return count_params(model.stem) + count_params(model.layers)


@pytest.mark.parametrize("name", sorted(PAPER_M))
def test_param_counts_match_table_2(name: str) -> None:
    model = create_model(name)
    width = model.fc_reg.in_features
    assert backbone_params(model) == BACKBONE[name]
    assert count_params(model) == BACKBONE[name] + (width + 1) * 101 + width + 1
    # Table 1 is on MORPH (ages 16-77, 62 logits): rounded to 0.1M, all four print as in the paper.
    morph = create_model(name, min_age=16, max_age=77)
    assert round(count_params(morph) / 1e6, 1) == PAPER_M[name]
    # With the IMDB-WIKI range (0-100) the figures truncate to the paper's.
    assert math.floor(count_params(model) / 1e5) / 10 == PAPER_M[name]
    if name != "lrn_resnet10_tiny":
        assert count_params(morph) == pytest.approx(PAPER_M[name] * 1e6, rel=0.02)
    else:
        # 1,246,xxx: 3.9% above "1.2M" yet within its printed precision (1.15M-1.25M).
        assert 1.15e6 <= count_params(morph) < 1.25e6


def test_resnet18_backbone_equals_the_standard_resnet18() -> None:
    # torchvision's resnet18 has 11,689,512 parameters, of which the 1000-way fc holds 513,000.
    assert backbone_params(create_model("lrn_resnet18")) == 11_689_512 - 513_000


def test_tiny_halves_every_width_and_conv1_is_7x7_32() -> None:
    tiny = create_model("lrn_resnet10_tiny")
    conv1 = tiny.stem[0]
    assert conv1.kernel_size == (7, 7) and conv1.out_channels == 32 and conv1.stride == (2, 2)
    assert [stage[0].conv2.out_channels for stage in tiny.layers] == [32, 64, 128, 256]
    assert [len(stage) for stage in create_model("lrn_resnet18_tiny").layers] == [2, 2, 2, 2]
    assert [len(stage) for stage in tiny.layers] == [1, 1, 1, 1]


def test_decoder_on_a_hand_made_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))  # ages 10, 11, 12
    s = torch.tensor([0.25])
    age, y_ldl, y_reg = decode_age(logits, s, min_age=10, max_age=12)
    torch.testing.assert_close(y_ldl, torch.tensor([10.7]))  # 10*0.5 + 11*0.3 + 12*0.2 (Eq. 18)
    torch.testing.assert_close(y_reg, torch.tensor([10.5]))  # (12 - 10) * 0.25 + 10 (Eq. 19)
    torch.testing.assert_close(age, torch.tensor([10.6]))  # mean (Eq. 20)
    # tau = 2 takes square roots of the probabilities before renormalising
    _, soft, _ = decode_age(logits, s, 10, 12, temperature=2.0)
    r = [math.sqrt(0.5), math.sqrt(0.3), math.sqrt(0.2)]
    torch.testing.assert_close(soft, torch.tensor([10 + (r[1] + 2 * r[2]) / sum(r)]))
    with pytest.raises(ValueError, match="do not cover"):
        decode_age(logits, s, 0, 100)


def test_forward_decodes_eq_20() -> None:
    model = LRNResNet(min_age=10, max_age=12, input_size=64).eval()
    with torch.no_grad():
        model.fc_ldl.weight.zero_()
        model.fc_ldl.bias.copy_(torch.log(torch.tensor([0.5, 0.3, 0.2])))
        model.fc_reg.weight.zero_()
        model.fc_reg.bias.fill_(0.25)
        out = model(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(out.age, torch.full((2,), 10.6))
    torch.testing.assert_close(out.probs, torch.tensor([[0.5, 0.3, 0.2]] * 2))
    torch.testing.assert_close(out.bin_ages, torch.tensor([10.0, 11.0, 12.0]))
    torch.testing.assert_close((out.probs * out.bin_ages).sum(1), torch.full((2,), 10.7))
    torch.testing.assert_close(out.regression, torch.full((2,), 0.25))


@pytest.mark.parametrize("name,size", [("lrn_resnet10_tiny", 224), ("lrn_resnet18", 112), ("lrn_resnet10", 64)])
def test_shapes_and_backward(name: str, size: int) -> None:
    model = create_model(name, input_size=size)
    assert model.input_size == (3, size, size) and model.preprocess.size == size
    out = model(torch.rand(2, 3, size, size))
    assert out.logits.shape == out.probs.shape == (2, 101)
    assert out.bin_ages.shape == (101,) and out.regression.shape == (2,) and out.age.shape == (2,)
    assert out.features.shape == (2, model.fc_reg.in_features)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(2))
    (out.age.sum() + out.logits.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resolution_alias_age_range_and_errors() -> None:
    model = create_model("lrn_resnet10_tiny", resolution=112, min_age=0, max_age=70)
    assert model.input_size == (3, 112, 112) and model.num_ages == 71
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 3, 112, 112))
    with pytest.raises(ValueError, match="max_age"):
        LRNResNet(min_age=50, max_age=10)


def test_registry_entries() -> None:
    assert set(PAPER_M) <= set(list_models(family="lrn"))
    for name in PAPER_M:
        e = model_entry(name)
        assert e.input_size == (3, 224, 224) and e.preprocess == IMAGENET
        assert e.paper == "LRN (Pattern Recognition 2020)"


def test_small_stem_for_64_px_crops() -> None:
    """stem='small' (agekit option): 3x3 stride-1 first conv, so conv5_x sees 4x4 maps at 64 px instead of 2x2."""
    from agekit.outputs import ModelOutput

    paper = create_model("lrn_resnet18", input_size=64)
    small = create_model("lrn_resnet18", input_size=64, stem="small")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(paper) == 11_228_838 and n(paper) - n(small) == 64 * 3 * (7 * 7 - 3 * 3)  # 7,680 fewer weights
    x = torch.randn(2, 3, 64, 64)
    assert small.layers(small.stem(x)).shape[-2:] == (4, 4)
    assert paper.layers(paper.stem(x)).shape[-2:] == (2, 2)
    assert isinstance(small(x), ModelOutput)
    with pytest.raises(ValueError, match="stem"):
        create_model("lrn_resnet18", stem="cifar")
