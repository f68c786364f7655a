"""Bridges to other engines: :mod:`agekit.integrations.ray` maps the predictor over a Ray Dataset (``agekit[ray]``)."""
