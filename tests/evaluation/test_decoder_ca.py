"""agekit.evaluation.decoders.window_decode: the CA(k)-optimal window decoder on a distribution worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.evaluation.decoders import window_decode


def test_window_decoder_maximises_the_mass_within_k():
    bins = np.arange(31, dtype=np.float64)
    p = np.zeros((2, 31))
    # ages 20..24 with mass 0.1 / 0.2 / 0.4 / 0.25 / 0.05, each spread over its year: a window of +-1 around a holds
    # 0.6 + 0.05 * (a - 22) for a in [22, 22.5] and falls on either side, so the best centre is 22.5 (mass 0.65)
    p[0, 20:25] = [0.1, 0.2, 0.4, 0.25, 0.05]
    p[1, 7] = 1.0  # all mass in year 7 (6.5..7.5): a window of +-0.5 holds all of it only centred on 7
    a = window_decode(p, bins, 1.0)
    assert a[0] == pytest.approx(22.5, abs=1e-9)
    assert window_decode(p[1:], bins, 0.5)[0] == pytest.approx(7.0, abs=1e-9)
