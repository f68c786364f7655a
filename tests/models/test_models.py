"""Every registered model: forward and backward on CPU, right output shapes, finite values, and a gradient on every
trainable parameter (timm's rule).

Parametrised over the registry, so a newly registered model is covered automatically.
"""
from __future__ import annotations

import fnmatch

import pytest
import torch

import agekit
from agekit.outputs import ModelOutput

ALL = agekit.list_models()

# Models whose parameters may get an exactly zero gradient on one random batch at initialisation, with the reason
# (every parameter must still be reached by the backward pass):
ZERO_GRADIENT_AT_INIT = {
    # the released code's ReLU on each stage's fusion (s_mix * x_mix, 3 units) and on p: a stage whose units are all
    # negative on a batch passes no gradient back (dead at initialisation on random input); faithful to SSR-Net
    "ssrnet*": "ReLU on SSR-Net's 3-unit stage fusion and on p (released code)",
}


def test_registry_is_populated() -> None:
    families = {agekit.model_entry(n).family for n in ALL}
    assert {"ssrnet", "c3ae", "hsr", "lrn", "lmtcnn", "baseline"} <= families
    assert len(ALL) == len(set(ALL))


def test_unknown_model_error_names_the_registry() -> None:
    with pytest.raises(KeyError, match="list_models"):
        agekit.create_model("no_such_network")


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str) -> None:
    entry = agekit.model_entry(name)
    model = agekit.create_model(name)
    size = tuple(getattr(model, "input_size", None) or entry.input_size)
    assert entry.preprocess is not None, f"{name} has no preprocessing spec"
    spec = getattr(model, "preprocess", entry.preprocess)
    # k-crop models take (B, k, 3, H, W): the spec and the input size must agree.
    if spec.num_crops > 1:
        assert size[0] == spec.num_crops and len(size) == 4
    else:
        assert len(size) == 3 and size[1] == size[2] == spec.size
    batch = 2
    x = torch.rand(batch, *size) * (255.0 if spec.scale == 1.0 else 1.0)
    model.train()
    out = model(x)
    assert isinstance(out, ModelOutput)
    tensors = out.tensors()
    assert tensors, "model returned no tensors"
    heads = [t for k, t in tensors.items() if k in ("age", "gender_prob", "gender_logits", "age_group_logits")]
    assert heads, f"{name} returns none of age / gender / age-group outputs"
    if out.age is not None:
        assert out.age.shape == (batch,)
    if out.gender_prob is not None:
        assert out.gender_prob.shape == (batch,)
    if out.gender_logits is not None:
        assert out.gender_logits.shape == (batch, 2)
    if out.age_group_logits is not None:
        assert out.age_group_logits.shape[0] == batch
    if out.probs is not None:
        assert out.bin_ages is not None and out.probs.shape[-1] == out.bin_ages.shape[-1]
    for k, t in tensors.items():
        assert torch.isfinite(t).all(), f"{name}: non-finite {k}"
    # every output head, each element weighted differently (a plain sum can cancel, e.g. softmax probabilities)
    loss = sum((t.float() * torch.linspace(0.5, 1.5, t.numel()).reshape(t.shape)).sum()
               for t in tensors.values() if t.requires_grad and t.is_floating_point())
    loss.backward()
    # timm's rule: every trainable parameter is reached by the backward pass; and here its gradient is non-zero
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached, f"{name}: no gradient reached {unreached[:8]}"
    if not any(fnmatch.fnmatch(name, pattern) for pattern in ZERO_GRADIENT_AT_INIT):
        zero = [n for n, p in model.named_parameters() if p.requires_grad and not torch.any(p.grad != 0)]
        assert not zero, f"{name}: zero gradient in {zero[:8]}"
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"
    model.eval()
    with torch.no_grad():
        out_eval = model(x)
    for k, t in out_eval.tensors().items():
        assert torch.isfinite(t).all(), f"{name} (eval): non-finite {k}"
