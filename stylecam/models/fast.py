"""The real-time CPU net: Johnson's layout made cheap where the FLOPs are.

The classic net spends ~95 GFLOP on a 640x480 frame, mostly in 128-channel 3x3 residual convs and full-size
9x9/3x3 convs. Here: a strided stem (no full-resolution conv on the way in), two downsamplings, three residual
blocks of depthwise-separable convs, and upsampling by pixel shuffle of low-resolution separable convs.
Measured at 320x240 on the 2-core CPU, eager: 5 blocks + nearest-upsample convs 58 ms; 3 blocks 54 ms;
5 blocks + shuffle 35 ms; 3 blocks + shuffle 28 ms (a depthwise conv at full size costs as much as the
whole residual trunk: it is memory-bound).

The look's decoder (``n_down=3, skips, up_blur, out_shuffle``; training/recipes): skips from the encoder, a fixed
blur after every pixel shuffle so flat regions decode flat rather than as the shuffle's lattice, and the RGB
output shuffled up from half size: in OpenVINO bf16 at 640x480 it measured about half the time of the same trunk
with a full-size last stage (interleaved, docs/look.md).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


def _norm(c: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(c, affine=True)


class SepConv(nn.Module):
    """Reflection-padded depthwise kxk conv followed by a pointwise 1x1 conv."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(dilation * (k // 2))
        self.dw = nn.Conv2d(cin, cin, k, stride, groups=cin, bias=False, dilation=dilation)
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
    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.conv1 = SepConv(c, c, dilation=dilation)
        self.in1 = _norm(c)
        self.conv2 = SepConv(c, c, dilation=dilation)
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
        # a float scale: TorchScript's F.interpolate rejects an int (the CUDA path scripts the net)
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))))


class Binomial(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] / 16 blur per channel (edges replicated): it has no response at a 2-pixel
    period, so after a pixel shuffle a flat input's map comes out flat instead of tiled by the four phases."""

    def __init__(self, c: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(k, k) / 16).expand(c, 1, 3, 3).clone(), persistent=False)
        self.c = c

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), groups=self.c)


def _icnr(conv: nn.Conv2d, cout: int) -> None:
    """ICNR init (Aitken et al. 2017) of a conv feeding a x2 pixel shuffle: each output channel's four phases
    (channels c*4 .. c*4+3) start as copies of the first, i.e. as nearest upsampling."""
    with torch.no_grad():
        w, b = conv.weight, conv.bias
        w.copy_(w.view(cout, 4, *w.shape[1:])[:, :1].expand(cout, 4, *w.shape[1:]).reshape_as(w).clone())
        b.copy_(b.view(cout, 4)[:, :1].expand(cout, 4).reshape(-1).clone())


class ShuffleUp(nn.Module):
    """x2 by a low-resolution separable conv to 4 phases + pixel shuffle: no conv at the upsampled size.

    ICNR init (Aitken et al. 2017): the four phases start identical, i.e. as nearest upsampling + conv, so
    training starts free of the sub-pixel checkerboard and the TV loss keeps it away. It does not stay away
    where the photo is flat: the style loss wants texture there and the phases are the only source of it, so a
    flat sky decodes to a lattice with the coarse grid's period (8 px after three shuffles) and its harmonics.
    ``blur`` (a :class:`Binomial` after each shuffle) makes that impossible by construction.
    """

    def __init__(self, cin: int, cout: int, blur: bool = False):
        super().__init__()
        self.conv = SepConv(cin, cout * 4)
        self.norm = _norm(cout)
        self.blur = Binomial(cout) if blur else nn.Identity()
        _icnr(self.conv.pw, cout)

    def forward(self, x):
        return self.blur(F.relu(self.norm(F.pixel_shuffle(self.conv(x), 2))))


class ShuffleOut(nn.Module):
    """The RGB output straight from the half-resolution map: a conv to 4 phases of RGB, pixel shuffle, and (with
    ``blur``) a :class:`Binomial`. Nothing runs at full size on 24 channels, where the full-size decoder stage
    spent about half of the net's time (pixel shuffle, instance norm and the output conv on 307k pixels)."""

    def __init__(self, cin: int, k: int, blur: bool):
        super().__init__()
        self.conv = Conv(cin, 3 * 4, k)
        self.blur = Binomial(3) if blur else nn.Identity()
        _icnr(self.conv.conv, 3)

    def forward(self, x):
        return self.blur(F.pixel_shuffle(self.conv(x), 2))


@register("fast")
class FastNet(nn.Module):
    def __init__(self, channels=(16, 32, 64), n_res: int = 3, stem_kernel: int = 5, separable_up: bool = True,
                 out_kernel: int = 3, n_down: int = 2, up_mode: str = "shuffle",
                 skips: bool | Sequence[int] = False,
                 up_blur: bool = False, out_shuffle: bool = False, dilations: Sequence[int] | None = None):
        super().__init__()
        if n_down not in (2, 3):
            raise ValueError(f"n_down must be 2 or 3, got {n_down}")
        if up_mode not in ("nearest", "shuffle"):
            raise ValueError(f"up_mode must be 'nearest' or 'shuffle', got {up_mode!r}")
        if skips and n_down != 3:
            raise ValueError("skips need n_down = 3 (the decoder's maps then match the encoder's in size and width)")
        c1, c2, c3 = channels
        self.config = {"channels": [c1, c2, c3], "n_res": n_res, "stem_kernel": stem_kernel,
                       "separable_up": separable_up, "out_kernel": out_kernel, "n_down": n_down, "up_mode": up_mode}
        if up_blur and up_mode != "shuffle":
            raise ValueError("up_blur is for up_mode 'shuffle' (nearest upsampling has no phases to tile)")
        if out_shuffle and (n_down != 3 or up_mode != "shuffle"):
            raise ValueError("out_shuffle replaces the third shuffle stage: it needs n_down = 3 and up_mode 'shuffle'")
        # recorded only when on: older configs stay as they were
        for key, on in (("skips", skips), ("up_blur", up_blur), ("out_shuffle", out_shuffle)):
            if on:
                self.config[key] = True
        scales = [2, 4] if skips else []
        # skips = [2] or [4]: only the skip from the encoder's 1/2 or 1/4 map (pilots gogh_s2, gogh_s4, docs/look.md)
        if isinstance(skips, (list, tuple)):
            if not skips or any(k not in (2, 4) for k in skips):
                raise ValueError(f"skips takes true, false or a list of the scales 2 and 4, got {skips}")
            scales = self.config["skips"] = sorted({int(k) for k in skips})
        if dilations is not None:
            if len(dilations) != n_res or any(d != int(d) or d < 1 for d in dilations):
                raise ValueError(f"dilations needs one whole number >= 1 per residual block ({n_res}), got {dilations}")
            self.config["dilations"] = [int(d) for d in dilations]
        dilated = self.config.get("dilations", [1] * n_res)
        # Skips add the encoder's maps to the decoder's at the same size: without them a flat region decodes from
        # a constant coarse grid, and the style loss's texture there comes out as a lattice with the grid's period.
        self.skip2, self.skip4 = 2 in scales, 4 in scales
        self.size_multiple = 2 ** n_down
        self.down1 = Conv(3, c1, stem_kernel, stride=2)
        self.in1 = _norm(c1)
        self.down2 = Conv(c1, c2, 3, stride=2)
        self.in2 = _norm(c2)
        # With two downsamplings the third conv keeps the 1/4 grid: more detail for the content to survive.
        self.down3 = Conv(c2, c3, 3, stride=2 if n_down == 3 else 1)
        self.in3 = _norm(c3)
        # Dilated blocks widen what one output pixel sees at the trunk's scale, for structures as large as the
        # painting's (VGG16's relu4_3 features, the layer the fast nets leave furthest from the painting).
        self.res = nn.Sequential(*[SepResBlock(c3, d) for d in dilated])
        # a pad of d on the trunk's map needs more than d pixels there: frames below this side are padded up to it
        self.min_side = self.size_multiple * (max(dilated, default=1) + 1)
        up = (lambda cin, cout: ShuffleUp(cin, cout, up_blur)) if up_mode == "shuffle" else \
            (lambda cin, cout: Up(cin, cout, separable_up))
        self.up1 = up(c3, c2)
        self.up2 = up(c2, c1)
        self.up3 = up(c1, c1) if n_down == 3 and not out_shuffle else nn.Identity()
        self.out = ShuffleOut(c1, out_kernel, up_blur) if out_shuffle else Conv(c1, 3, out_kernel)

    def forward(self, x):
        s1 = F.relu(self.in1(self.down1(x)))
        s2 = F.relu(self.in2(self.down2(s1)))
        y = self.res(F.relu(self.in3(self.down3(s2))))
        y = self.up1(y)
        if self.skip4:
            y = y + s2
        y = self.up2(y)
        if self.skip2:
            y = y + s1
        return self.out(self.up3(y))

    def output_layer(self) -> nn.Conv2d:
        return self.out.conv.conv if isinstance(self.out, ShuffleOut) else self.out.conv
