"""The worked example of docs/ARCHITECTURE.md runs: a new model family, dataset adapter and training method, each one
file, registered on import; a cache prepared with the adapter, one epoch of the model trained with the method, the
checkpoint evaluated and exported to ONNX with the parity check.

Each ``python`` block of the document whose first line is ``# file: NAME.py`` is written to a temporary folder as
that file and imported as it stands.
"""
from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def example_files() -> dict[str, str]:
    blocks = re.findall(r"```python\n(# file: (\S+)\n.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return {name: text for text, name in blocks}


def test_the_document_has_the_four_files():
    assert sorted(example_files()) == ["agecsv.py", "huber.py", "run_example.py", "tinynet.py"]


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The example files imported from a temporary folder; the registrations are taken back afterwards."""
    from agekit.data import datasets, protocols
    from agekit.methods import base as methods_base
    from agekit.models import registry

    code = tmp_path / "code"
    code.mkdir()
    for name, text in example_files().items():
        (code / name).write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(methods_base, "_METHODS", dict(methods_base._METHODS))
    monkeypatch.setattr(methods_base, "_DEFAULT_FOR", list(methods_base._DEFAULT_FOR))
    monkeypatch.setattr(datasets, "_ADAPTERS", dict(datasets._ADAPTERS))
    monkeypatch.setattr(protocols, "PROTOCOLS", dict(protocols.PROTOCOLS))
    mods = {m: importlib.import_module(m) for m in ("tinynet", "agecsv", "huber", "run_example")}
    yield mods
    for m in mods:
        sys.modules.pop(m, None)


def _photos(root: Path, n: int = 20) -> None:
    """n drawn face photos (cropped to the face) and labels.csv, plus one listed photo that is missing."""
    import cv2

    from agekit.export.onnx import synthetic_faces

    root.mkdir()
    faces = synthetic_faces(n, 96, seed=1)
    rows = ["file,age,gender"]
    for i, face in enumerate(faces):
        cv2.imwrite(str(root / f"{i:02d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        rows.append(f"{i:02d}.png,{10 + 3 * i},{'mf'[i % 2]}")
    rows.append("missing.png,30,m")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_worked_example_prepares_trains_evaluates_and_exports(example, tmp_path):
    import torch

    import agekit
    from agekit.data.datasets import get_adapter
    from agekit.models.checkpoint import load_checkpoint

    assert "tinynet" in agekit.list_models("tiny*")
    root = tmp_path / "photos"
    _photos(root)
    samples, bad = get_adapter("agecsv")(root).scan()
    assert len(samples) == 20 and [b.reason for b in bad] == ["labels.csv line 22: no such photo"]

    model = agekit.create_model("tinynet")  # every parameter gets a gradient
    model(torch.rand(2, 3, 32, 32)).age.sum().backward()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())

    result, report, export = example["run_example"].run(root, tmp_path / "out")
    assert load_checkpoint(result.final).method == "huber"
    m = report["metrics"]
    assert report["meta"]["model"] == "tinynet" and report["meta"]["method"] == "huber"
    assert m["n"] == report["n_samples"] > 0 and math.isfinite(m["mae"])
    assert set(export.outputs) >= {"age", "uncertainty"} and max(export.parity.values()) < 1e-3
    assert '"model": "tinynet"' in Path(export.path).with_suffix(".json").read_text()
