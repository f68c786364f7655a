"""HSR-Net / SepHSR-Net / BSepHSR-Net against the paper's Tables 5, 6, 7, 8, 9, 10 and 12.

Parameter counts must equal the paper's figure truncated to 0.1K; "Memory" is the float32
size of parameters plus BN running statistics in KiB; "MACC" is reproduced by
:func:`paper_macc` below (see its docstring for the convention the paper used).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from agekit.models.complexity import count_macs, count_params, fp32_bytes
from agekit.models.hsr import HSRNet, paper_param_formula, stage_bins
from agekit.models.registry import create_model, list_models, model_entry
from agekit.preprocessing import HSR as HSR_SPEC

# (conv, p, q, k) -> (params K, memory KB, MACC M), as printed.
TABLE5 = {  # single resolution; Table 7 repeats the (p, 10) rows, Table 12 the params
    ("standard", 30, 10): (46.4, 183, 58.7), ("standard", 30, 15): (48.4, 191, 58.8),
    ("standard", 48, 10): (110.8, 435, 145.7), ("standard", 48, 16): (113.3, 445, 145.8),
    ("standard", 48, 24): (116.6, 458, 145.8), ("standard", 60, 10): (169.9, 667, 225.3),
    ("standard", 60, 20): (174.3, 684, 225.4), ("standard", 60, 30): (178.7, 701, 225.4),
    ("standard", 72, 10): (242.0, 949, 322.1), ("standard", 72, 24): (248.5, 974, 322.2),
    ("standard", 72, 36): (254.1, 996, 322.3), ("standard", 90, 10): (374.3, 1467, 499.7),
    ("standard", 90, 30): (384.4, 1506, 499.9), ("standard", 90, 45): (391.9, 1535, 500.1),
    ("sep", 30, 10): (11.9, 48, 12.8), ("sep", 30, 15): (13.9, 56, 12.8),
    ("sep", 48, 10): (21.0, 85, 26.2), ("sep", 48, 16): (23.5, 94, 26.3),
    ("sep", 48, 24): (26.9, 108, 26.3), ("sep", 60, 10): (28.9, 116, 37.6),
    ("sep", 60, 20): (33.3, 133, 37.7), ("sep", 60, 30): (37.7, 150, 37.7),
    ("sep", 72, 10): (38.2, 153, 50.8), ("sep", 72, 24): (44.7, 178, 51.0),
    ("sep", 72, 36): (50.3, 200, 51.1), ("sep", 90, 10): (54.8, 219, 74.3),
    ("sep", 90, 30): (64.9, 258, 74.6), ("sep", 90, 45): (72.4, 287, 74.8),
}
TABLE6 = {  # 3-resolution; Table 8 repeats a subset, Table 11 the params
    ("standard", 30, 10): (47.6, 188, 176.2), ("standard", 30, 15): (50.2, 198, 176.2),
    ("standard", 48, 10): (112.7, 443, 437.1), ("standard", 48, 16): (116.4, 457, 437.3),
    ("standard", 48, 24): (121.3, 476, 437.4), ("standard", 60, 10): (172.3, 676, 675.8),
    ("standard", 60, 20): (179.1, 703, 676.1), ("standard", 60, 30): (185.9, 729, 676.3),
    ("standard", 72, 10): (244.8, 960, 966.2), ("standard", 72, 24): (255.4, 1.0, 966.6),
    ("standard", 72, 36): (264.4, 1.0, 967.0), ("standard", 90, 10): (377.9, 1.5, 1498.9),
    ("standard", 90, 30): (395.2, 1.5, 1499.6), ("standard", 90, 45): (408.1, 1.6, 1500.2),
    ("sep", 30, 10): (13.1, 53, 38.4), ("sep", 30, 15): (15.7, 63, 38.5),
    ("sep", 48, 10): (23.0, 92, 78.7), ("sep", 48, 16): (26.6, 106, 78.8),
    ("sep", 48, 24): (31.5, 126, 78.9), ("sep", 60, 10): (31.3, 125, 112.7),
    ("sep", 60, 20): (38.1, 152, 113.0), ("sep", 60, 30): (44.9, 179, 113.2),
    ("sep", 72, 10): (41.1, 164, 152.5), ("sep", 72, 24): (51.6, 205, 152.9),
    ("sep", 72, 36): (60.7, 241, 153.2), ("sep", 90, 10): (58.4, 233, 223.0),
    ("sep", 90, 30): (75.7, 300, 223.7), ("sep", 90, 45): (88.6, 351, 224.2),
}
TABLE10 = {  # BSepHSR, 3-resolution
    ("bsep", 30, 10): (13.0, 52, 37.8), ("bsep", 60, 10): (31.0, 124, 111.5),
    ("bsep", 72, 24): (51.3, 204, 151.5), ("bsep", 90, 30): (75.2, 298, 221.9),
}
# Table 6 prints "1.0MB", "1.5MB", "1.6MB" for the largest rows: KiB / 1000, one decimal.
MB_ROWS = {("standard", 72, 24), ("standard", 72, 36), ("standard", 90, 10), ("standard", 90, 30), ("standard", 90, 45)}

ROWS = [(c, p, q, 1, v) for (c, p, q), v in TABLE5.items()]
ROWS += [(c, p, q, 3, v) for (c, p, q), v in TABLE6.items()]
ROWS += [(c, p, q, 3, v) for (c, p, q), v in TABLE10.items()]
PREFIX = {"standard": "hsr", "sep": "sephsr", "bsep": "bsephsr"}


def row_name(conv: str, p: int, q: int, k: int) -> str:
    return f"{PREFIX[conv]}_{p}_{q}" + (f"_k{k}" if k > 1 else "")


def paper_macc(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """The paper's MACC: agekit's ``ptflops`` convention (conv+linear MACs plus bias, BN, ReLU, avg-pool ops)."""
    return count_macs(model, input_size, convention="ptflops")


@pytest.mark.parametrize("conv,p,q,k,paper", ROWS, ids=[row_name(*r[:4]) for r in ROWS])
def test_params_and_memory_match_tables_5_6_10(conv: str, p: int, q: int, k: int, paper: tuple) -> None:
    params_k, memory, _ = paper
    model = create_model(row_name(conv, p, q, k))
    n = count_params(model)
    assert n == paper_param_formula(p, q, conv, k)
    assert math.floor(n / 100) / 10 == pytest.approx(params_k), f"{n} params, paper {params_k}K"
    kib = fp32_bytes(model) / 1024  # parameters + BN running statistics, float32
    if (conv, p, q) in MB_ROWS and k == 3:
        assert round(kib / 1000, 1) == pytest.approx(memory), f"{kib:.1f} KiB, paper {memory}MB"
    else:
        assert abs(kib - memory) <= 1.0, f"{kib:.1f} KiB, paper {memory}KB"


def test_closed_forms_of_the_facts_file() -> None:
    assert paper_param_formula(30, 10) == 46490
    assert paper_param_formula(30, 10, "sep") == 11990
    assert paper_param_formula(90, 10, "sep") == 54890
    assert paper_param_formula(30, 10, "sep", k=3) == 13190
    assert paper_param_formula(30, 10, "bsep", k=3) == 13040
    assert count_params(HSRNet(30, 10).backbone) == 45 * 900 + 45 * 30
    assert count_params(HSRNet(30, 10, conv="sep").backbone) == 5 * 900 + 95 * 30
    assert count_params(HSRNet(30, 10, conv="bsep").backbone) == 5 * 900 + 90 * 30


def test_macc_matches_tables_5_6_10() -> None:
    worst = 0.0
    for conv, p, q, k, (_, _, macc) in ROWS:
        with torch.device("meta"):  # shapes only: the counts need no arithmetic
            model = HSRNet(p, q, conv=conv, k=k)
        got = paper_macc(model, model.input_size) / 1e6
        worst = max(worst, abs(got / macc - 1))
        assert got == pytest.approx(macc, rel=0.005), f"{row_name(conv, p, q, k)}: {got:.2f}M vs {macc}M"
    assert worst < 0.005


def test_conv_linear_macs_by_hand() -> None:
    # HSR(30,10): 64^2*30*27 + 64^2*900*9 + 2*32^2*900*9 + 2*16^2*900*9, heads 2*(64*30*10 + 1600 + 200 + 200)
    backbone = 4096 * 30 * 27 + 4096 * 8100 + 2 * 1024 * 8100 + 2 * 256 * 8100
    heads = 2 * (64 * 300 + 1600 + 400)
    model = HSRNet(30, 10)
    assert count_macs(model, (3, 64, 64)) == backbone + heads == 57_273_760
    # ...and the elementwise ops the paper adds: biases 322,560, BN 645,120, ReLU 322,560 (+10+20 in each
    # head), pooling 161,280 (+640+640 in the heads), conv1x1 biases 2*640: 58.73M ("58.7M").
    assert paper_macc(model, (3, 64, 64)) == 57_273_760 + 322_560 + 645_120 + 322_560 + 60 + 161_280 + 1280 + 1280


def test_bins_are_trainable_and_initialised_to_left_end_points() -> None:
    model = HSRNet(30, 10)
    names = {n for n, _ in model.named_parameters()}
    assert {"coarse.bins", "fine.bins"} <= names
    assert torch.equal(model.coarse.bins.detach(), torch.arange(0.0, 100.0, 10.0))
    assert torch.equal(model.fine.bins.detach(), torch.arange(0.0, 10.0, 1.0))
    out = model(torch.rand(2, 3, 64, 64))
    out.age.sum().backward()
    assert model.coarse.bins.grad is not None and model.coarse.bins.grad.abs().sum() > 0
    assert model.fine.bins.grad is not None and model.fine.bins.grad.abs().sum() > 0
    # dL/d bins = sum over the batch of the stage probabilities (Eq. 5 is linear in the bins)
    torch.testing.assert_close(model.coarse.bins.grad.sum(), torch.tensor(2.0))


def test_uniform_distribution_golden_age() -> None:
    model = HSRNet(30, 10, conv="sep").eval()
    for head in (model.coarse, model.fine):
        nn.init.zeros_(head.mlp[-1].weight)  # zero logits -> uniform probabilities 0.1
    out = model(torch.rand(3, 3, 64, 64))
    # coarse: mean(0, 10, ..., 90) = 45; fine: mean(0, ..., 9) = 4.5
    torch.testing.assert_close(out.age, torch.full((3,), 49.5))
    coarse, fine = out.stages
    torch.testing.assert_close(coarse["value"] + fine["value"], out.age)
    torch.testing.assert_close(coarse["probs"], torch.full((3, 10), 0.1))


@pytest.mark.parametrize("conv", ["standard", "sep", "bsep"])
@pytest.mark.parametrize("k", [1, 3])
def test_forward_backward_shapes(conv: str, k: int) -> None:
    model = HSRNet(12, 6, conv=conv, k=k)
    x = torch.rand(4, *model.input_size)
    out = model(x)
    assert out.age.shape == (4,)
    assert out.features.shape == (4, k * 12, 8, 8)
    assert len(out.stages) == 2
    for stage in out.stages:
        assert set(stage) == {"probs", "bins", "value"}
        assert stage["probs"].shape == (4, 10) and stage["bins"].shape == (10,) and stage["value"].shape == (4,)
        torch.testing.assert_close(stage["probs"].sum(1), torch.ones(4))
    out.age.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_shapes_and_errors() -> None:
    single = HSRNet(8, 5).eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(single(x).age, single(x.unsqueeze(1)).age)
    with pytest.raises(ValueError, match=r"\(B, 3, 3, H, W\)"):
        HSRNet(8, 5, k=3)(x)
    with pytest.raises(ValueError, match="k=1"):
        single(torch.rand(2, 2, 3, 64, 64))
    with pytest.raises(ValueError, match="k=1"):
        single(torch.rand(2, 1, 64, 64))
    small = HSRNet(8, 5, image_size=32)
    assert small.preprocess.size == 32 and small(torch.rand(2, 3, 32, 32)).features.shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="fine_depth"):
        HSRNet(8, 5, fine_depth=4)
    with pytest.raises(ValueError, match="conv"):
        HSRNet(8, 5, conv="dw")


def test_k_resolution_concatenates_crop_major_with_shared_backbone() -> None:
    model = HSRNet(8, 5, k=3).eval()
    x = torch.rand(2, 3, 3, 64, 64)
    feats = model(x).features
    for i in range(3):
        torch.testing.assert_close(feats[:, 8 * i : 8 * (i + 1)], model.backbone(x[:, i])[2])
    assert model.coarse.conv.in_channels == model.fine.conv.in_channels == 24
    assert model.preprocess.num_crops == 3 and model.preprocess.ratios == (1.0, 1.45, 1.85)


@pytest.mark.parametrize("s,side", [(1, 32), (2, 16), (3, 8)])
def test_depth_ablation_fine_head_reads_depth_s(s: int, side: int) -> None:
    model = create_model(f"sephsr_30_10_depth3_{s}")
    seen = {}
    model.fine.conv.register_forward_hook(lambda m, i, o: seen.update(fine=i[0].shape))
    model.coarse.conv.register_forward_hook(lambda m, i, o: seen.update(coarse=i[0].shape))
    model(torch.rand(2, 3, 64, 64))
    assert seen["fine"] == (2, 30, side, side) and seen["coarse"] == (2, 30, 8, 8)
    assert count_params(model) == 11990  # AAP(4x4) keeps the head's size (Table 2)


def test_paper_table2_bins_option() -> None:
    p, q = 30, 15
    model = HSRNet(p, q, num_bins=None)
    assert model.coarse.bins.numel() == q
    torch.testing.assert_close(model.coarse.bins.detach(), stage_bins(q, 1))
    torch.testing.assert_close(model.fine.bins.detach()[1], torch.tensor(100.0 / q**2))
    head = (p + 1) * q + 16 * q * q + q * 2 * q + 2 * q * q + q  # conv, q, 2q, q hidden widths, bins
    assert count_params(model) == 45 * p * p + 45 * p + 2 * head
    assert model(torch.rand(2, 3, 64, 64)).stages[0]["probs"].shape == (2, q)


def test_registry_entries() -> None:
    names = set(list_models(family="hsr"))
    expected = {row_name(c, p, q, k) for c, p, q, k, _ in ROWS} | {"hsr", "sephsr", "bsephsr"}
    table9 = ("hsr_60_10", "sephsr_30_10", "sephsr_60_10", "sephsr_90_10")
    expected |= {f"{n}_depth3_{s}" for n in table9 for s in (1, 2, 3)}
    assert expected <= names
    assert len(names) == len(ROWS) + 3 + 12
    assert model_entry("sephsr_30_10_depth3_1").tags == ("table9",) and model_entry("hsr").tags == ("generic",)
    e1, e3 = model_entry("sephsr_30_10"), model_entry("bsephsr_90_30_k3")
    assert e1.input_size == (3, 64, 64) and e1.preprocess == HSR_SPEC
    assert e3.input_size == (3, 3, 64, 64) and e3.preprocess.crops == "kres" and e3.preprocess.num_crops == 3
    assert e1.paper == "HSR-Net (IEEE Access 2023)"
    generic = create_model("sephsr", p=90, q=30, k=3)
    assert count_params(generic) == paper_param_formula(90, 30, "sep", 3) == 75_730
    assert generic.input_size == (3, 3, 64, 64) and generic.preprocess.num_crops == 3


def _random_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


@pytest.mark.parametrize("conv,p,k,s", [("sep", 30, 1, 3), ("standard", 30, 1, 2), ("bsep", 90, 3, 3), ("sep", 60, 3, 1)])
def test_padded_copy_is_the_same_network(conv: str, p: int, k: int, s: int) -> None:
    torch.manual_seed(0)
    model = _random_bn(HSRNet(p, 10, conv=conv, k=k, fine_depth=s))
    padded = model.padded(16).eval()
    p2 = -(-p // 16) * 16
    assert padded.p == p2 and padded.coarse.conv.in_channels == padded.fine.conv.in_channels == k * p2
    assert all(c.out_channels % 16 == 0 for c in padded.backbone.modules() if isinstance(c, nn.Conv2d))
    x = torch.rand(3, *model.input_size)
    with torch.no_grad():
        a, b = model(x), padded(x)
    torch.testing.assert_close(b.age, a.age, atol=1e-4, rtol=0)
    for sa, sb in zip(a.stages, b.stages):
        torch.testing.assert_close(sb["probs"], sa["probs"], atol=1e-6, rtol=0)
    torch.testing.assert_close(b.features[:, :p], a.features[:, :p], atol=1e-5, rtol=0)
    assert float(b.features[:, p:p2].abs().max()) == 0.0  # the extra channels stay zero
    # the original is untouched, and already-aligned networks are returned as they are
    assert model.p == p and count_params(model) == count_params(_random_bn(HSRNet(p, 10, conv=conv, k=k, fine_depth=s)))
    aligned = HSRNet(32, 10, conv="sep")
    assert aligned.padded(16) is aligned


@pytest.mark.parametrize("conv,k", [("sep", 1), ("bsep", 3), ("standard", 1)])
def test_pad_channels_trains_exactly_like_the_unpadded_network(conv: str, k: int) -> None:
    """HSRNet(pad_channels=16) runs 32-channel kernels on 30 real channels: same state dict, outputs, grads, BN stats."""
    torch.manual_seed(0)
    a = HSRNet(30, 10, conv=conv, k=k).train()
    b = HSRNet(30, 10, conv=conv, k=k, pad_channels=16).train()
    assert b.load_state_dict(a.state_dict()) is not None and count_params(b) == count_params(a)
    assert count_macs(b, a.input_size) == count_macs(a, a.input_size)  # the paper's MACs, not the padded kernels'
    with torch.no_grad():
        assert b.eval().backbone(torch.rand(1, 3, 64, 64))[0].shape[1] == 32  # the padded path is really taken
    b.train()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        x = torch.rand(4, *a.input_size)
        torch.manual_seed(step)
        ya = a(x).age
        torch.manual_seed(step)  # the same dropout masks
        yb = b(x).age
        torch.testing.assert_close(yb, ya, atol=1e-4, rtol=1e-5)
        for opt, y in ((opt_a, ya), (opt_b, yb)):
            opt.zero_grad()
            (y - 30.0).abs().mean().backward()
            opt.step()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for n in sa:
        torch.testing.assert_close(sb[n].float(), sa[n].float(), atol=1e-4, rtol=1e-4, msg=n)
    a.eval(), b.eval()
    x = torch.rand(3, *a.input_size)
    torch.testing.assert_close(b(x).age, a(x).age, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b.padded(16)(x).age, a(x).age, atol=1e-4, rtol=1e-5)  # export copy of a padded-run net


def test_pad_channels_validation_and_no_op() -> None:
    with pytest.raises(ValueError, match="pad_channels"):
        HSRNet(30, 10, pad_channels=-1)
    net = HSRNet(32, 10, conv="sep", pad_channels=16)  # already a multiple: plain layers
    assert type(net.backbone.block1[0][0]) is nn.Conv2d
    assert create_model("sephsr_30_10", pad_channels=16).pad_channels == 16


def test_one_crop_graph_starts_at_the_backbone(tmp_path) -> None:
    """A k = 1 network's exported graph feeds its input straight to the first convolution: no Unsqueeze / Gather /
    Concat for the single crop (they cost ~2 % of SepHSR's time in ONNX Runtime)."""
    import onnx

    from agekit.export.onnx import export_onnx
    from agekit.models.checkpoint import LoadedModel

    torch.manual_seed(0)
    net = HSRNet(16, 10, conv="sep").eval()
    rep = export_onnx(LoadedModel(net, "sephsr", {}, net.preprocess, None, {}), tmp_path / "s.onnx", atol=1e-4)
    graph = onnx.load(rep.path).graph
    ops = [n.op_type for n in graph.node]
    assert "Gather" not in ops and "Concat" not in ops and "Unsqueeze" not in ops
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    assert graph.input[0].name in first_conv.input or any(
        graph.input[0].name in n.input and n.output[0] in first_conv.input for n in graph.node)
