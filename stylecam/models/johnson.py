"""Johnson et al. 2016 transformer, laid out module for module as pytorch/examples fast_neural_style.

Parameter names match that example exactly so its published checkpoints load with ``load_state_dict``
(``conv1.conv2d.weight``, ``in1.weight``, ``res1.conv1.conv2d.weight``, ``deconv1.conv2d.weight`` ...); the
residual blocks live in one ``nn.Sequential`` (TorchScript cannot look up ``res{i}`` by a computed name), and
two state-dict hooks translate ``res.0.`` <-> ``res1.``. RGB in 0..255 in, RGB roughly 0..255 out (callers clamp).
"""
from __future__ import annotations

import re

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
        # a float: TorchScript's F.interpolate takes Optional[float] (an int fails to script, i.e. on CUDA)
        self.upsample = float(upsample) if upsample else None
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


def _rename(state_dict, pattern: str, repl) -> None:
    """Renames keys in place, keeping their order (state dicts are ordered)."""
    items = [(re.sub(pattern, repl, k), v) for k, v in state_dict.items()]
    state_dict.clear()
    state_dict.update(items)


def _to_examples_names(module, state_dict, prefix, local_metadata):
    """state_dict() hook: ``res.0.x`` -> ``res1.x``, so saved files keep the pytorch/examples names."""
    _rename(state_dict, rf"^{re.escape(prefix)}res\.(\d+)\.", lambda m: f"{prefix}res{int(m.group(1)) + 1}.")


def _from_examples_names(module, state_dict, prefix, *args):
    """load_state_dict() pre-hook: ``res1.x`` -> ``res.0.x``."""
    _rename(state_dict, rf"^{re.escape(prefix)}res(\d+)\.", lambda m: f"{prefix}res.{int(m.group(1)) - 1}.")


@register("johnson")
class TransformerNet(nn.Module):
    """The classic net; ``channels`` narrows it (the default is the published 32-64-128)."""

    #: input sides must be a multiple of this for the output to have the input's size
    size_multiple = 4
    #: ``backend="auto"`` on the CPU in fp32 (the exact mode, and the default where bf16 does not pay): PyTorch
    #: with the exact Winograd rewrite (``johnson_cpu``), which measured faster than OpenVINO fp32 on a Xeon and
    #: level with it on a Zen 4. Where bf16 pays (``engine.cpu_bf16_pays``) the default is OpenVINO bf16, 2x the
    #: rewrite there (docs/bench.txt).
    cpu_backend = "torch"

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
        self.res = nn.Sequential(*[ResidualBlock(c3) for _ in range(n_res)])
        self.register_state_dict_post_hook(_to_examples_names)
        self.register_load_state_dict_pre_hook(_from_examples_names)
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
        y = self.res(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    def output_layer(self) -> nn.Conv2d:
        """The last conv; the trainer starts its bias at the style's mean colour."""
        return self.deconv3.conv2d
