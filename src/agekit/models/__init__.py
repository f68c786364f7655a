"""The networks of the five papers, their baselines and agekit's compact networks, and the registry.

Importing this package registers every family: one line per family module below. A new family is one new
module whose factories carry :func:`~agekit.models.registry.register_model`, plus its name in that line.
"""
from agekit.models import baselines, c3ae, compact, hsr, lmtcnn, lrn, ssrnet  # noqa: F401  (registers)
from agekit.models.registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
