"""Optional parts of agekit and the one line that names the ``pip install`` a missing one needs.

``pip install agekit`` is the predictor alone (ONNX Runtime, OpenCV, dlib, Pillow, numpy). Training, export,
conversion, dataset readers, plots, the HTTP server and Ray each come with an extra; a command that needs one it
lacks stops with one line naming it, e.g. ``agekit train: needs torch: pip install 'agekit[train]'``.
"""
from __future__ import annotations

import importlib.util

# The import names each extra provides (pyproject.toml's [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "lightning", "kornia", "yaml", "pydantic", "scipy", "matplotlib"),
    "export": ("torch", "onnx", "onnxscript"),
    "convert": ("torch", "h5py"),
    "datasets": ("scipy",),
    "report": ("matplotlib",),
    "serve": ("fastapi", "uvicorn", "multipart"),
    "ray": ("ray",),
}

# The extra to name for a module that is missing (when no command-specific extra says otherwise).
MODULE_EXTRA: dict[str, str] = {
    "torch": "train", "lightning": "train", "kornia": "train", "yaml": "train", "pydantic": "train",
    "onnx": "export", "onnxscript": "export", "h5py": "convert", "scipy": "datasets", "matplotlib": "report",
    "fastapi": "serve", "uvicorn": "serve", "multipart": "serve", "ray": "ray",
}

# What each command needs beyond the core install.
COMMAND_EXTRA: dict[str, str] = {
    "train": "train", "evaluate": "train", "teacher-outputs": "train", "export": "export", "bench": "export",
    "convert": "convert", "convert-checkpoint": "convert", "serve": "serve", "reproduce": "train",
}


class MissingExtraError(ModuleNotFoundError):
    """A part of agekit that needs an extra was used without it; ``str()`` is the one line to show."""

    def __init__(self, module: str, extra: str, what: str = "agekit"):
        self.module, self.extra = module, extra
        super().__init__(f"{what} needs {module}, which is not installed: pip install 'agekit[{extra}]'")
        self.name = module


def missing_modules(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found here (without importing them)."""
    if extra not in EXTRAS:
        raise ValueError(f"no extra called {extra!r}; extras: {', '.join(EXTRAS)}")
    missing = []
    for mod in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    return missing


def require_extra(extra: str, what: str = "agekit") -> None:
    """Raise :class:`MissingExtraError` naming ``pip install 'agekit[extra]'`` when a module of ``extra`` is missing.

    ``what`` names the command or option that needs it, e.g. ``"agekit train"`` or ``"--backend torch"``."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(missing[0], extra, what)


def missing_extra_line(error: ModuleNotFoundError, what: str = "agekit", extra: str | None = None) -> str | None:
    """The one line for an import that failed inside agekit, or None when the module is not one of an extra's.

    ``extra``: the extra the command needs (named instead of the module's own when that extra provides it)."""
    if isinstance(error, MissingExtraError):
        return str(error)
    top = (error.name or "").split(".")[0]
    if top not in MODULE_EXTRA:
        return None
    name = extra if extra in EXTRAS and top in EXTRAS[extra] else MODULE_EXTRA[top]
    return str(MissingExtraError(top, name, what))
