"""Evaluation helpers beyond ``agekit evaluate``: other decoders of a predicted age distribution, the papers table."""
