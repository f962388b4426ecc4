"""The real-time CPU net: Johnson's layout made cheap where the FLOPs are.

The classic net spends ~95 GFLOP on a 640x480 frame, mostly in 128-channel 3x3 residual convs and full-size
9x9/3x3 convs. Here: a strided stem (no full-resolution conv on the way in), three downsamplings, residual
blocks of depthwise-separable convs, and depthwise-separable upsampling convs. ~40x fewer FLOPs.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from . import register


def _norm(c: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(c, affine=True)


class SepConv(nn.Module):
    """Reflection-padded depthwise kxk conv followed by a pointwise 1x1 conv."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.dw = nn.Conv2d(cin, cin, k, stride, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pw(self.dw(self.pad(x)))


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        return self.conv(self.pad(x))


class SepResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = SepConv(c, c)
        self.in1 = _norm(c)
        self.conv2 = SepConv(c, c)
        self.in2 = _norm(c)

    def forward(self, x):
        y = F.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(y)) + x


class Up(nn.Module):
    """Nearest x2 then a conv (separable or plain): no transposed-conv checkerboard."""

    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        self.conv = SepConv(cin, cout) if separable else Conv(cin, cout, 3)
        self.norm = _norm(cout)

    def forward(self, x):
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))))


@register("fast")
class FastNet(nn.Module):
    def __init__(self, channels=(16, 32, 64), n_res: int = 5, stem_kernel: int = 5, separable_up: bool = True,
                 out_kernel: int = 3, n_down: int = 2):
        super().__init__()
        if n_down not in (2, 3):
            raise ValueError(f"n_down must be 2 or 3, got {n_down}")
        c1, c2, c3 = channels
        self.config = {"channels": [c1, c2, c3], "n_res": n_res, "stem_kernel": stem_kernel,
                       "separable_up": separable_up, "out_kernel": out_kernel, "n_down": n_down}
        self.size_multiple = 2 ** n_down
        self.down1 = Conv(3, c1, stem_kernel, stride=2)
        self.in1 = _norm(c1)
        self.down2 = Conv(c1, c2, 3, stride=2)
        self.in2 = _norm(c2)
        # With two downsamplings the third conv keeps the 1/4 grid: more detail for the content to survive.
        self.down3 = Conv(c2, c3, 3, stride=2 if n_down == 3 else 1)
        self.in3 = _norm(c3)
        self.res = nn.Sequential(*[SepResBlock(c3) for _ in range(n_res)])
        self.up1 = Up(c3, c2, separable_up)
        self.up2 = Up(c2, c1, separable_up)
        self.up3 = Up(c1, c1, separable_up) if n_down == 3 else nn.Identity()
        self.out = Conv(c1, 3, out_kernel)

    def forward(self, x):
        y = F.relu(self.in1(self.down1(x)))
        y = F.relu(self.in2(self.down2(y)))
        y = F.relu(self.in3(self.down3(y)))
        y = self.res(y)
        y = self.up3(self.up2(self.up1(y)))
        return self.out(y)

    def output_layer(self) -> nn.Conv2d:
        return self.out.conv
