"""The classic TransformerNet as one channels-last CPU pipeline, exact up to fp32 rounding.

On top of the rewrites in ``optimize`` (sub-pixel upsampling, space-to-depth for the output conv):

* channels-last maps throughout (oneDNN is up to 2x faster on them here) and the residual 3x3 convs as
  Winograd F(4,3) (``winograd``);
* every conv bias that an instance norm follows is dropped, and so is every per-channel constant added to
  the residual trunk: a constant map stays constant through reflection padding and a conv, and the next
  instance norm subtracts it (in2's shift, the mean terms below);
* norm + ReLU is one pass: with a = gamma / sigma > 0, relu(a (x - mu) + beta) = a * max(x, m) - a * m,
  m = mu - beta / a. The factor a goes into the next conv's weights (a per-input-channel scale of a small
  tensor) and -a * m is a constant; gamma < 0 is made positive beforehand by negating the producing conv's
  output channel. That single ``max`` writes straight into the next conv's padded input buffer, whose
  border is then copied, so padding, upsampling interleave and space-to-depth cost no extra pass.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import winograd
from .nhwc import as_hwc, as_nchw, buffer, channel_stats, fill_border, phase_stats

CL = torch.channels_last


def _positive(w: torch.Tensor, norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and norm gamma with negative gammas flipped (conv output channel negated too)."""
    sign = torch.where(norm.weight.detach() < 0, -1.0, 1.0)
    return w.detach() * sign.view(-1, 1, 1, 1), norm.weight.detach() * sign


def _subpixel_weight(w: torch.Tensor) -> torch.Tensor:
    from .optimize import subpixel_taps

    taps = subpixel_taps(w)  # (4 phases, Co, Ci, 2, 2)
    return taps.reshape(-1, *taps.shape[2:]).contiguous()


class _Norm(nn.Module):
    """An instance norm's constants; ``fold`` turns a map's statistics into the (a, m) of the docstring."""

    def __init__(self, gamma: torch.Tensor, norm: nn.InstanceNorm2d):
        super().__init__()
        self.register_buffer("gamma", gamma.clone())
        self.register_buffer("beta", norm.bias.detach().clone())
        self.eps = norm.eps

    def fold(self, stats: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = stats
        a = self.gamma * torch.rsqrt(var + self.eps)
        m = torch.where(a > 0, mean - self.beta / a, torch.zeros_like(mean))
        return a, m

    def constant(self, a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """relu(norm(x)) - a * max(x, m): -a*m, or relu(beta) where gamma = 0 (the channel is constant)."""
        return torch.where(a > 0, -a * m, self.beta.clamp(min=0))


class _Residual(nn.Module):
    def __init__(self, block: nn.Module, tile: int):
        super().__init__()
        w1, g1 = _positive(block.conv1.conv2d.weight, block.in1)
        self.register_buffer("u1", winograd.weight_transform(w1, tile))
        self.register_buffer("u2", winograd.weight_transform(block.conv2.conv2d.weight, tile))
        self.n1 = _Norm(g1, block.in1)
        self.register_buffer("g2", block.in2.weight.detach().clone())
        self.eps2 = block.in2.eps


class CpuJohnson(nn.Module):
    """TransformerNet -> the pipeline of the module docstring. Batch 1 per call (larger batches loop);
    sides that are not multiples of 4 or below 16 run through the plain net. ``tile``: Winograd F(tile, 3).

    Scratch maps are kept per thread between calls (``nhwc.buffer``): ~140 MB at 640x480. F(6,3) was
    measured slower in the whole net than F(4,3) (907 vs 876 ms at 640x480, 1 thread)."""

    def __init__(self, net: nn.Module, tile: int = winograd.M):
        super().__init__()
        from .optimize import space_to_depth_weight

        self.tile = tile
        self.size_multiple = net.size_multiple
        self.plain = net
        w, g = _positive(net.conv1.conv2d.weight, net.in1)
        self.register_buffer("w1", w)
        self.n1 = _Norm(g, net.in1)
        w, g = _positive(net.conv2.conv2d.weight, net.in2)
        self.register_buffer("w2", w)
        self.n2 = _Norm(g, net.in2)
        w, g = _positive(net.conv3.conv2d.weight, net.in3)
        self.register_buffer("w3", w)
        self.n3 = _Norm(g, net.in3)
        self.res = nn.ModuleList(_Residual(blk, tile) for blk in net.res)
        w, g = _positive(net.deconv1.conv2d.weight, net.in4)
        self.register_buffer("wd1", _subpixel_weight(w))
        self.n4 = _Norm(g, net.in4)
        w, g = _positive(net.deconv2.conv2d.weight, net.in5)
        self.register_buffer("wd2", _subpixel_weight(w))
        self.n5 = _Norm(g, net.in5)
        out = net.deconv3.conv2d
        co, ci = out.out_channels, out.in_channels
        w = space_to_depth_weight(out.weight.detach(), 2, 1)  # input channels c*4 + phase
        self.register_buffer("wd3", w.view(co * 4, ci, 4, *w.shape[2:]).transpose(1, 2)
                             .reshape(co * 4, ci * 4, *w.shape[2:]).contiguous())  # -> phase*C + c
        self.register_buffer("bd3", out.bias.detach().clone())
        self.register_buffer("tapsum3", out.weight.detach().sum((2, 3)))
        self.c1, self.c2 = net.conv1.conv2d.out_channels, net.conv2.conv2d.out_channels

    def forward(self, x):
        h, w = x.shape[-2:]
        if h % 4 or w % 4 or h < 16 or w < 16 or x.dtype != torch.float32:
            return self.plain(x)
        if x.shape[0] != 1:
            return torch.cat([self.forward(x[i:i + 1]) for i in range(x.shape[0])])
        return self._one(x)

    def _one(self, x):
        h, w = x.shape[-2:]
        # stem: 9x9 -> norm -> 3x3/2 -> norm -> 3x3/2 -> norm
        y = as_hwc(F.conv2d(F.pad(x, [4] * 4, mode="reflect").contiguous(memory_format=CL), self.w1))
        a, m = self.n1.fold(channel_stats(y))
        p = buffer("johnson.full", (h + 2, w + 2, self.c1))
        torch.maximum(y, m, out=p[1:h + 1, 1:w + 1])
        y = as_hwc(F.conv2d(as_nchw(fill_border(p, 1, h, w, "reflect")), self.w2 * a.view(1, -1, 1, 1), stride=2))
        a, m = self.n2.fold(channel_stats(y))
        h2, w2 = y.shape[:2]
        p = buffer("johnson.half", (h2 + 2, w2 + 2, self.c2))
        torch.maximum(y, m, out=p[1:h2 + 1, 1:w2 + 1])
        y = as_hwc(F.conv2d(as_nchw(fill_border(p, 1, h2, w2, "reflect")), self.w3 * a.view(1, -1, 1, 1), stride=2))
        a, m = self.n3.fold(channel_stats(y))
        z = self._trunk(y, a, m)
        return self._decoder(z, h, w)

    def _trunk(self, y, a, m):
        """Residual blocks on two ping-pong padded buffers; returns the last one, replicate-padded by 1."""
        h, w, c = y.shape
        shape = winograd.padded_shape(h, w, c, self.tile)
        za, zb, r = (buffer(f"johnson.{t}", shape, zero=True) for t in ("za", "zb", "r"))
        th, tw = winograd.tiles(h, w, self.tile)
        out = buffer("johnson.c", (self.tile * th, self.tile * tw, c))
        torch.maximum(y, m, out=za[1:h + 1, 1:w + 1]).mul_(a)
        for i, blk in enumerate(self.res):
            fill_border(za, 1, h, w, "reflect")
            y = winograd.conv3x3(za, blk.u1, out, buffer, center=True)[:h, :w]
            a, m = blk.n1.fold(channel_stats(y, centered=True))
            torch.maximum(y, m, out=r[1:h + 1, 1:w + 1])
            y = winograd.conv3x3(fill_border(r, 1, h, w, "reflect"), blk.u2 * a.view(1, -1, 1), out, buffer,
                                 center=True)[:h, :w]
            _, var = channel_stats(y, centered=True)
            torch.addcmul(za[1:h + 1, 1:w + 1], y, blk.g2 * torch.rsqrt(var + blk.eps2), out=zb[1:h + 1, 1:w + 1])
            za, zb = zb, za
        return fill_border(za, 1, h, w, "replicate")[:h + 2, :w + 2]

    def _decoder(self, z, h, w):
        """Two sub-pixel upsampling convs and the space-to-depth output conv; each norm pass de-interleaves
        the four phases straight into the next conv's input."""
        hq, wq = z.shape[0] - 2, z.shape[1] - 2
        o = as_hwc(F.conv2d(as_nchw(z), self.wd1))  # (hq+1, wq+1, 4*C): phase-major channels
        c = o.shape[-1] // 4
        phases = [o[a:a + hq, b:b + wq, (2 * a + b) * c:(2 * a + b + 1) * c] for a in range(2) for b in range(2)]
        a, m = self.n4.fold(phase_stats(o))
        p = buffer("johnson.half", (2 * hq + 2, 2 * wq + 2, c))
        inner = p[1:2 * hq + 1, 1:2 * wq + 1].view(hq, 2, wq, 2, c)
        for q, ph in enumerate(phases):
            torch.maximum(ph, m, out=inner[:, q // 2, :, q % 2])
        fill_border(p, 1, 2 * hq, 2 * wq, "replicate")
        o = as_hwc(F.conv2d(as_nchw(p), self.wd2 * a.view(1, -1, 1, 1)))
        hh, wh = 2 * hq, 2 * wq
        c = o.shape[-1] // 4
        phases = [o[a:a + hh, b:b + wh, (2 * a + b) * c:(2 * a + b + 1) * c] for a in range(2) for b in range(2)]
        a, m = self.n5.fold(phase_stats(o))
        # the output conv's input: full-res map reflect-padded by 4, stored space-to-depth (phase-major)
        p = buffer("johnson.full", (hh + 4, wh + 4, 2, 2, c))
        for q, ph in enumerate(phases):
            torch.maximum(ph, m, out=p[2:hh + 2, 2:wh + 2, q // 2, q % 2])
        for i in range(4):  # full-res row Y is p[Y // 2, :, Y % 2]; reflect the rows, then the columns
            for dst, src in ((i, 8 - i), (h + 4 + i, h + 2 - i)):
                p[dst // 2, :, dst % 2].copy_(p[src // 2, :, src % 2])
        for i in range(4):
            for dst, src in ((i, 8 - i), (w + 4 + i, w + 2 - i)):
                p[:, dst // 2, :, dst % 2].copy_(p[:, src // 2, :, src % 2])
        bias = self.bd3 + self.tapsum3 @ self.n5.constant(a, m)
        co = bias.shape[0]
        y = F.conv2d(as_nchw(p.view(hh + 4, wh + 4, 4 * c)), self.wd3 * a.repeat(4).view(1, -1, 1, 1),
                     bias.repeat_interleave(4))
        out = y.new_empty(1, co, h, w)
        out[0].view(co, hh, 2, wh, 2).copy_(as_hwc(y).reshape(hh, wh, co, 2, 2).permute(2, 0, 3, 1, 4))
        return out
