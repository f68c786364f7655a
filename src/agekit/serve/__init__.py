"""``agekit serve``: the predictor as an HTTP service (FastAPI + uvicorn) with a web page at ``/``.

Install with ``pip install "agekit[serve]"``. :func:`create_app` builds the ASGI app from a
:class:`ServeConfig`; :class:`Engine` holds the models (loaded once), the bounded queue and the
worker threads that batch photos across concurrent requests.
"""
from __future__ import annotations

__all__ = ["Engine", "ServeConfig", "create_app"]


def __getattr__(name: str):
    if name in ("Engine", "ServeConfig"):
        from agekit.serve import engine

        return getattr(engine, name)
    if name == "create_app":
        from agekit.serve.app import create_app

        return create_app
    raise AttributeError(name)
