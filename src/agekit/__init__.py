"""agekit: compact facial age and gender estimation (SSR-Net, C3AE, HSR, LRN, LMTCNN)."""
from agekit.complexity import Complexity, complexity, model_complexity
from agekit.outputs import ModelOutput
from agekit.preprocessing import PreprocessSpec
from agekit.registry import create_model, list_models, model_entry, register_model

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
]


def __getattr__(name: str):
    # The predictor pulls in the face pipeline and onnxruntime: load it on first use only.
    if name == "Estimator":
        from agekit.inference.estimator import Estimator

        return Estimator
    raise AttributeError(name)
