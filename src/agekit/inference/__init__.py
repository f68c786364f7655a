"""Inference: the :class:`Estimator` predictor, shipped weights and model cards, video and webcam,
and the ``agekit predict`` / ``export`` / ``bench`` commands."""
from __future__ import annotations

__all__ = ["Estimator", "shipped_weights"]


def __getattr__(name: str):
    # Keep ``import agekit.inference`` light: onnxruntime and the face pipeline load on use.
    if name == "Estimator":
        from agekit.inference.estimator import Estimator

        return Estimator
    if name == "shipped_weights":
        from agekit.inference.weights import shipped_weights

        return shipped_weights
    raise AttributeError(name)
