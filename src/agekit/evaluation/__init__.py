"""Evaluation: the papers' metrics (:mod:`agekit.evaluation.metrics`), the report with its plots
(:mod:`agekit.evaluation.report`), other decoders of a predicted age distribution and the papers table."""
