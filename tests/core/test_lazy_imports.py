"""Imports go at the top of the file; an import inside a function is allowed only for a stated reason.

Every ``import`` inside a function or method of src/agekit is checked against two lists:

- ``LAZY_MODULES``: optional extras and heavy libraries that a module imports only on the path that needs them,
  each with its reason (the predictor must not import torch; an extra may be absent);
- ``LAZY_AGEKIT``: the modules that import agekit's own stages on first use, each with its reason (a command
  imports a stage only when it runs, so that ``agekit --help`` and ``agekit predict`` start fast and torch-free).

Anything else (the standard library, or an agekit module imported inside a function elsewhere) belongs at the
top of its file. Run: ``python -m pytest tests/core/test_lazy_imports.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# top-level package -> why it may be imported inside a function
LAZY_MODULES = {
    "torch": "the predictor (ONNX Runtime backend) and `import agekit` stay torch-free",
    "torchmetrics": "training only",
    "lightning": "training only (the `train` extra)",
    "tensorboard": "an optional logger",
    "kornia": "training augmentation only",
    "onnx": "export only",
    "onnxruntime": "inference backends are chosen at run time; `agekit train` does not need ONNX Runtime",
    "onnxscript": "export only",
    "dlib": "an optional detector backend (the `dlib` extra)",
    "mediapipe": "an optional detector backend",
    "h5py": "reading Keras .h5 files only (`agekit convert`)",
    "scipy": "reading IMDB-WIKI .mat files only",
    "ray": "the `ray` extra",
    "pyarrow": "the `ray` extra (Parquet output)",
    "uvicorn": "the `serve` extra",
    "fastapi": "the `serve` extra",
    "safetensors": "weight files are read with numpy when the safetensors package is absent",
    "tqdm": "progress bars only when a long job runs",
    "cv2": "OpenCV starts its thread pool on import: worker processes import it after they set their thread count",
    "PIL": "photo decoding is imported on the path that reads photos",
}

# agekit module -> why it imports agekit's stages inside functions
LAZY_AGEKIT = {
    "agekit": "the package root re-exports names of later stages on first use (PEP 562)",
    "agekit.inference": "re-exports the estimator on first use (PEP 562)",
    "agekit.serve": "re-exports the app on first use (PEP 562)",
    "agekit.cli": "each subcommand imports its stage when it runs (fast `--help`, torch-free `predict`)",
    "agekit.data.cli": "each subcommand imports its stage when it runs",
    "agekit.evaluation.cli": "each subcommand imports its stage when it runs",
    "agekit.inference.cli": "each subcommand imports its stage when it runs (torch-free `predict`)",
    "agekit.serve.cli": "the server imports the app when it starts",
    "agekit.training.cli": "each subcommand imports its stage when it runs",
    "agekit.zoo": "`agekit models` reads the committed table; the registry is imported only to rebuild it",
    "agekit.inference.cards": "writing a card measures the network through the registry (torch); reading one "
                              "stays torch-free",
    "agekit.inference.estimator": "the torch backend and the ONNX export are imported only when asked for",
    "agekit.integrations.ray": "Ray workers build their estimator inside the worker process",
    "agekit.serve.engine": "the server's worker processes build their estimator after the fork",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def function_level_imports() -> list[tuple[str, int, str]]:
    """(module, line, imported module) for every import inside a function of src/agekit."""
    out = []
    for path in sorted((SRC / "agekit").rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    out += [(name, node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    out.append((name, node.lineno, "agekit" if node.level else (node.module or "")))
    return sorted(set(out))


def violations() -> list[str]:
    bad = []
    for name, line, target in function_level_imports():
        top = target.split(".")[0]
        if top == "agekit":
            if name not in LAZY_AGEKIT:
                bad.append(f"{name}:{line} imports {target} inside a function (move it to the top of the file)")
        elif top not in LAZY_MODULES:
            bad.append(f"{name}:{line} imports {target} inside a function (move it to the top of the file)")
    return bad


def test_every_function_level_import_has_a_stated_reason():
    assert violations() == []


def test_the_checker_finds_a_function_level_import(tmp_path, monkeypatch):
    pkg = tmp_path / "agekit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("import os\n\n\ndef f():\n    import json\n    from agekit import x\n    import torch\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    found = function_level_imports()
    assert found == [("agekit.mod", 5, "json"), ("agekit.mod", 6, "agekit"), ("agekit.mod", 7, "torch")]
    assert violations() == ["agekit.mod:5 imports json inside a function (move it to the top of the file)",
                            "agekit.mod:6 imports agekit inside a function (move it to the top of the file)"]


def test_the_lists_name_only_modules_that_exist():
    names = {_module_name(p) for p in (SRC / "agekit").rglob("*.py")}
    assert set(LAZY_AGEKIT) <= names
