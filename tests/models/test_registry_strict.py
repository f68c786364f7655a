"""Every registered model exports to ONNX with parity against PyTorch (:func:`agekit.export.onnx.export_onnx`
asserts it at batch 1 and the full batch). Forward and backward for every model are in ``test_models.py``.

Parametrised over ``list_models()``: a model added or renamed is covered without editing this file.
"""
from __future__ import annotations

import pytest
import torch

import agekit
from agekit.methods import default_method_for
from agekit.models.checkpoint import LoadedModel

ALL = agekit.list_models()


@pytest.mark.slow  # all 107 models: about 3 CPU-minutes
@pytest.mark.parametrize("name", ALL)
def test_onnx_export_parity(name: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from agekit.export.onnx import export_onnx

    torch.manual_seed(0)
    model = agekit.create_model(name).eval()
    entry = agekit.model_entry(name)
    spec = getattr(model, "preprocess", entry.preprocess)
    loaded = LoadedModel(model, name, {}, spec, default_method_for(name), {})
    # export_onnx asserts parity (atol 1e-4 years / probability units) at batch 1 and the full batch
    report = export_onnx(loaded, tmp_path / f"{name}.onnx", n_samples=3)
    assert report.parity and all(v <= 1e-3 for v in report.parity.values()), report.parity
    assert set(report.outputs) & {"age", "gender_female", "age_group_probs"}
