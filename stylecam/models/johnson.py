"""Johnson et al. 2016 transformer, laid out module for module as pytorch/examples fast_neural_style.

Module names match that example exactly so its published checkpoints load with ``load_state_dict``
(``conv1.conv2d.weight``, ``in1.weight``, ``res1.conv1.conv2d.weight``, ``deconv1.conv2d.weight`` ...).
RGB in 0..255 in, RGB roughly 0..255 out (callers clamp).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


class ConvLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest upsample then conv: avoids the checkerboard of transposed convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


@register("johnson")
class TransformerNet(nn.Module):
    """The classic net; ``channels`` narrows it (the default is the published 32-64-128)."""

    #: input sides must be a multiple of this for the output to have the input's size
    size_multiple = 4
    #: ``precision="auto"`` on a native-bf16 CPU: no - the fp32 Winograd rewrite (``johnson_cpu``) measured
    #: faster than oneDNN's bf16 here (277 vs 308 ms at 640x480) and is exact
    auto_cpu_bf16 = False

    def __init__(self, channels=(32, 64, 128), n_res: int = 5):
        super().__init__()
        c1, c2, c3 = channels
        self.config = {"channels": [c1, c2, c3], "n_res": n_res}
        self.conv1 = ConvLayer(3, c1, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(c1, affine=True)
        self.conv2 = ConvLayer(c1, c2, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(c2, affine=True)
        self.conv3 = ConvLayer(c2, c3, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(c3, affine=True)
        for i in range(1, n_res + 1):
            setattr(self, f"res{i}", ResidualBlock(c3))
        self.n_res = n_res
        self.deconv1 = UpsampleConvLayer(c3, c2, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(c2, affine=True)
        self.deconv2 = UpsampleConvLayer(c2, c1, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(c1, affine=True)
        self.deconv3 = ConvLayer(c1, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for i in range(1, self.n_res + 1):
            y = getattr(self, f"res{i}")(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    def output_layer(self) -> nn.Conv2d:
        """The last conv; the trainer starts its bias at the style's mean colour."""
        return self.deconv3.conv2d
