"""Complexity accounting on small models whose figures are worked out by hand."""
from __future__ import annotations

import json

import torch
import torch.nn as nn

from agekit.models.complexity import complexity, count_bn_running_stats, count_macs, count_params, fp32_bytes


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # 3*4*9 + 4 = 112 params
        self.bn = nn.BatchNorm2d(4)  # 8 params + 8 running stats
        self.dw = nn.Conv2d(4, 4, 3, groups=4, bias=False)  # 36 params
        self.fc = nn.Linear(4 * 6 * 6, 5)  # 144*5 + 5 = 725 params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dw(self.bn(self.conv(x))).flatten(1))


def test_hand_counted_figures() -> None:
    m = Tiny()
    assert count_params(m) == 112 + 8 + 36 + 725
    assert count_bn_running_stats(m) == 8
    # conv: 4 out * 8*8 positions * 3 in * 9 = 6912; depthwise: 4 * 6*6 * 1 * 9 = 1296; fc: 144 * 5 = 720
    assert count_macs(m, (3, 8, 8)) == 6912 + 1296 + 720
    # params + floating buffers (running mean/var), 4 bytes each; num_batches_tracked is an int buffer
    assert fp32_bytes(m) == 4 * (881 + 8)
    # ptflops convention adds: conv bias 4*8*8 = 256, BN 2 * 256 = 512, fc bias 5
    assert count_macs(m, (3, 8, 8), convention="ptflops") == 6912 + 1296 + 720 + 256 + 512 + 5
    c = complexity(m, (3, 8, 8))
    assert c.params_with_bn_stats == 889
    json.dumps(c.to_dict())


def test_frozen_parameters_are_not_trainable() -> None:
    m = Tiny()
    m.fc.weight.requires_grad_(False)
    assert count_params(m) == 881 - 720
    assert count_params(m, trainable_only=False) == 881


def test_shared_layers_counted_each_time_they_run() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + self.fc(x)

    assert count_macs(Twice(), (3,)) == 12
