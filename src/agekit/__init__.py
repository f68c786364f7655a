"""agekit: compact facial age and gender estimation (SSR-Net, C3AE, HSR, LRN, LMTCNN)."""
import importlib

# Loaded on first use (PEP 562), so that ``import agekit`` and commands such as ``agekit models`` import no torch.
_LAZY = {
    "Complexity": "agekit.models.complexity",
    "complexity": "agekit.models.complexity",
    "model_complexity": "agekit.models.complexity",
    "ModelOutput": "agekit.outputs",
    "PreprocessSpec": "agekit.preprocessing",
    "create_model": "agekit.models.registry",
    "list_models": "agekit.models.registry",
    "model_entry": "agekit.models.registry",
    "register_model": "agekit.models.registry",
    "PhotoResult": "agekit.inference.results",
    "FaceResult": "agekit.inference.results",
}

__version__ = "0.1.0"

__all__ = [
    "Complexity",
    "ModelOutput",
    "PreprocessSpec",
    "complexity",
    "create_model",
    "list_models",
    "model_complexity",
    "model_entry",
    "register_model",
    "Estimator",
    "FaceResult",
    "PhotoResult",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    # The predictor pulls in the face pipeline and onnxruntime: load it on first use only.
    if name == "Estimator":
        from agekit.inference.estimator import Estimator

        return Estimator
    raise AttributeError(name)
