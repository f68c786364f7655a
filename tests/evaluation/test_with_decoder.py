"""``agekit.evaluation.decoders.with_decoder`` (``tools/with_decoder.py``): a trained DLDL checkpoint switched to the
median of its predicted distribution, checked on a hand-worked distribution, for a distilled student, and refused
where the method has no such decoder."""
from __future__ import annotations

import pytest
import torch

from agekit.evaluation.decoders import with_decoder
from agekit.models.checkpoint import load_checkpoint, save_checkpoint
from agekit.models.registry import create_model
from agekit.outputs import ModelOutput
from agekit.training.teacher import method_for_loaded


def _hand_worked() -> ModelOutput:
    # ages 0..3 with mass 0.1, 0.2, 0.3, 0.4 (1-year bins): mean 0.2 + 0.6 + 1.2 = 2.0; cumulative mass 0.1, 0.3, 0.6,
    # so the median lies in bin 2 ([1.5, 2.5)) at 1.5 + (0.5 - 0.3) / 0.3 = 2.1667
    return ModelOutput(probs=torch.tensor([[0.1, 0.2, 0.3, 0.4]]), bin_ages=torch.arange(4.0))


@pytest.fixture
def dldl_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "dldl.safetensors", create_model("agenet_mt"), name="agenet_mt", method="dldl",
                           card={"method_config": {"sigma": 2.0, "l1_weight": 1.0, "gender_weight": 5.0}})


def test_median_decoder_on_a_hand_worked_distribution(dldl_checkpoint, tmp_path):
    dst = tmp_path / "median.safetensors"
    with_decoder(dldl_checkpoint, dst, "median")
    before, after = load_checkpoint(dldl_checkpoint), load_checkpoint(dst)
    m0, m1 = method_for_loaded(before), method_for_loaded(after)
    assert (m0.decoder, m1.decoder) == ("mean", "median")
    assert after.card["decoder"] == "median"
    assert after.card["method_config"] == {"sigma": 2.0, "l1_weight": 1.0, "gender_weight": 5.0, "decoder": "median"}
    assert m0.predict_age(_hand_worked())[0].item() == pytest.approx(2.0, abs=1e-6)
    assert m1.predict_age(_hand_worked())[0].item() == pytest.approx(1.5 + 0.2 / 0.3, abs=1e-5)
    for a, b in zip(before.model.state_dict().values(), after.model.state_dict().values()):  # weights untouched
        assert torch.equal(a, b)


def test_a_distilled_student_gets_the_decoder(tmp_path):
    card = {"method_config": {"student": "dldl", "student_config": {"sigma": 2.0, "l1_weight": 1.0},
                              "teacher_method": None, "tau": 2.0, "alpha": 0.5, "gender_weight": 5.0}}
    src = save_checkpoint(tmp_path / "s.safetensors", create_model("agenet_mt"), name="agenet_mt", method="distill",
                          card=card)
    dst = tmp_path / "s_median.safetensors"
    with_decoder(src, dst, "median")
    m = method_for_loaded(load_checkpoint(dst))
    assert m.student_method.decoder == "median"
    assert m.predict_age(_hand_worked())[0].item() == pytest.approx(2.1667, abs=1e-4)


def test_a_method_without_that_decoder_is_refused(tmp_path):
    src = save_checkpoint(tmp_path / "ssr.safetensors", create_model("ssrnet"), name="ssrnet", method="ssr")
    dst = tmp_path / "ssr_median.safetensors"
    with pytest.raises(TypeError):
        with_decoder(src, dst, "median")
    assert not dst.exists()
