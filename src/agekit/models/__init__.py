"""The networks of the five papers and their baselines; importing this registers them all."""
from agekit.models import ssrnet, c3ae, hsr, lrn, lmtcnn, baselines, compact  # noqa: F401
