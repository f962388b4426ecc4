"""Exact CPU rewrites of the stylization nets: the same math in layouts this CPU computes fast.

Measured on a 2-core AVX2 CPU, the classic net wastes most of its time where convolutions have few channels
and many pixels (9x9 convs with 3 channels in or out, 3x3 convs at full resolution after a nearest upsample)
- they run at a fraction of the GFLOP/s of the 128-channel residual convs. Every rewrite here is algebraic,
so outputs differ from the plain net by fp32 rounding only:

* space-to-depth: a kxk conv on a map with few channels equals, after ``pixel_unshuffle(s)``, a conv with
  s*s times the channels and a ~k/s kernel on an s-times smaller grid (then ``pixel_shuffle`` back);
* sub-pixel upsampling: nearest x2 then a reflection-padded 3x3 conv equals one 2x2 conv on the
  replicate-padded LOW-resolution map producing the 4 output phases (2.25x fewer FLOPs, no upsampled copy);
* instance norm + ReLU fused into one pass with an in-place activation.

FastNet gets these layer swaps. The classic TransformerNet goes further, as one channels-last pipeline with
Winograd residual convs and instance norms folded into their neighbours (``johnson_cpu``).

``optimize_for_cpu(model)`` returns a new module (the given one is not modified) with the same
``size_multiple``; sizes the rewrite cannot take run through the plain net.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

# -- weight transforms ----------------------------------------------------------------------------------------
def space_to_depth_weight(w: torch.Tensor, s: int, stride: int) -> torch.Tensor:
    """(Co, Ci, K, K) conv weight at stride 1 or ``s`` -> weight of the same conv on ``pixel_unshuffle(x, s)``.

    Output phase q (stride 1 only) at coarse position I reads input phase p at coarse offset d where
    ``s*d + p = q + k``; channel order follows pixel_unshuffle / pixel_shuffle (``c*s*s + row*s + col``).
    """
    co, ci, k, _ = w.shape
    phases_out = s if stride == 1 else 1
    kk = -(-(k + phases_out - 1) // s)
    out = w.new_zeros(co, phases_out, phases_out, ci, s, s, kk, kk)
    for qh in range(phases_out):
        for qw in range(phases_out):
            for kh in range(k):
                dh, ph = divmod(qh + kh, s)
                for kw in range(k):
                    dw, pw = divmod(qw + kw, s)
                    out[:, qh, qw, :, ph, pw, dh, dw] = w[:, :, kh, kw]
    return out.reshape(co * phases_out * phases_out, ci * s * s, kk, kk).contiguous()


def subpixel_taps(w: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, 3, 3) weight of a conv after nearest x2 -> (4, Co, Ci, 2, 2): per output phase (a, b) the 2x2
    low-resolution window taps (phase 0 rows: L[i-1] gets w0, L[i] gets w1+w2; phase 1: L[i] w0+w1, L[i+1] w2)."""
    rows = [lambda t: torch.stack([t[:, :, 0], t[:, :, 1] + t[:, :, 2]], 2),
            lambda t: torch.stack([t[:, :, 0] + t[:, :, 1], t[:, :, 2]], 2)]
    cols = [lambda t: torch.stack([t[..., 0], t[..., 1] + t[..., 2]], -1),
            lambda t: torch.stack([t[..., 0] + t[..., 1], t[..., 2]], -1)]
    return torch.stack([cols[b](rows[a](w)) for a in range(2) for b in range(2)])


# -- rewritten layers ------------------------------------------------------------------------------------------
class SpaceToDepthConv(nn.Module):
    """Reflection pad + kxk conv (stride 1 or s) computed on ``pixel_unshuffle(s)`` of the padded input."""

    def __init__(self, conv: nn.Conv2d, pad: int, s: int):
        super().__init__()
        stride = conv.stride[0]
        assert conv.groups == 1 and stride in (1, s) and conv.kernel_size[0] == conv.kernel_size[1]
        self.plain = conv
        self.k, self.pad, self.s, self.stride = conv.kernel_size[0], pad, s, stride
        phases = s * s if stride == 1 else 1
        self.kk = -(-(self.k + (s if stride == 1 else 1) - 1) // s)
        self.weight = nn.Parameter(space_to_depth_weight(conv.weight.detach(), s, stride), requires_grad=False)
        b = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        self.bias = nn.Parameter(b.repeat_interleave(phases).contiguous(), requires_grad=False)

    def forward(self, x):
        p, s = self.pad, self.s
        h, w = x.shape[-2:]
        ho, wo = (h + 2 * p - self.k) // self.stride + 1, (w + 2 * p - self.k) // self.stride + 1
        if self.stride == 1 and (h % s or w % s):
            return self.plain(F.pad(x, [p] * 4, mode="reflect"))
        # coarse grid the conv reads: output size + kernel - 1, in fine pixels
        nh = s * ((ho if self.stride != 1 else ho // s) + self.kk - 1)
        nw = s * ((wo if self.stride != 1 else wo // s) + self.kk - 1)
        x = F.pad(x, [p] * 4, mode="reflect")
        eh, ew = nh - x.shape[-2], nw - x.shape[-1]
        if eh < 0 or ew < 0:  # rows/columns the conv never reads
            x = x[..., :min(nh, x.shape[-2]), :min(nw, x.shape[-1])]
        if eh > 0 or ew > 0:  # zeros that only meet the zero taps past the kernel's edge
            x = F.pad(x, [0, max(ew, 0), 0, max(eh, 0)])
        y = F.conv2d(F.pixel_unshuffle(x, s), self.weight, self.bias)
        return F.pixel_shuffle(y, s) if self.stride == 1 else y


class SubpixelUpConv(nn.Module):
    """Nearest x2 + reflection pad 1 + 3x3 conv, computed at low resolution as one 2x2 conv producing all
    four output phases, then interleaved. Reflection of the upsampled map == replication of the low-res one.
    ``depthwise`` convs keep their groups (channel-major phases); dense ones use phase-major outputs."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        self.co = conv.out_channels
        self.depthwise = conv.groups > 1
        assert not self.depthwise or conv.groups == conv.in_channels == conv.out_channels
        taps = subpixel_taps(conv.weight.detach())  # (4, Co, Ci/g, 2, 2)
        if self.depthwise:
            taps = taps.transpose(0, 1)  # (Co, 4, 1, 2, 2): each group's 4 phases adjacent
        self.weight = nn.Parameter(taps.reshape(4 * self.co, -1, 2, 2).contiguous(), requires_grad=False)
        b = conv.bias.detach() if conv.bias is not None else None
        if b is not None:
            b = b.repeat_interleave(4) if self.depthwise else b.repeat(4)
            b = nn.Parameter(b.contiguous(), requires_grad=False)
        self.bias = b
        self.groups = conv.groups

    def forward(self, x):
        n, _, h, w = x.shape
        o = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), self.weight, self.bias, groups=self.groups)
        if self.depthwise:
            o = o.view(n, self.co, 4, h + 1, w + 1).transpose(1, 2)
        else:
            o = o.view(n, 4, self.co, h + 1, w + 1)
        out = x.new_empty(n, self.co, h, 2, w, 2)
        for a in range(2):
            for b in range(2):
                out[:, :, :, a, :, b] = o[:, 2 * a + b, :, a:a + h, b:b + w]
        return out.view(n, self.co, 2 * h, 2 * w)


class NormReLU(nn.Module):
    """Instance norm then ReLU in place (one fewer full-size tensor than ``relu(norm(x))``)."""

    def __init__(self, norm: nn.InstanceNorm2d, relu: bool = True):
        super().__init__()
        self.weight, self.bias, self.eps, self.relu = norm.weight, norm.bias, norm.eps, relu

    def forward(self, x):
        y = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        return y.relu_() if self.relu else y


# -- whole nets ------------------------------------------------------------------------------------------------
class FastUp(nn.Module):
    """FastNet's ``Up`` (nearest x2, [separable] reflection-padded 3x3 conv, norm, ReLU) at low resolution."""

    def __init__(self, up: nn.Module):
        super().__init__()
        from .fast import SepConv

        if isinstance(up.conv, SepConv):
            self.first, self.pw = SubpixelUpConv(up.conv.dw), up.conv.pw
        else:
            self.first, self.pw = SubpixelUpConv(up.conv.conv), None
        self.norm = NormReLU(up.norm)

    def forward(self, x):
        y = self.first(x)
        return self.norm(self.pw(y) if self.pw is not None else y)


def _optimize_fast(net: nn.Module) -> nn.Module:
    """FastNet keeps its forward; its stem and upsampling layers are swapped for exact rewrites."""
    from .fast import Up

    net = copy.deepcopy(net)
    k = net.down1.conv.kernel_size[0]
    net.down1 = SpaceToDepthConv(net.down1.conv, k // 2, 2)
    for name in ("up1", "up2", "up3"):
        if isinstance(getattr(net, name), Up):  # n_down=2 nets have no third upsampling; ShuffleUp is already low-res
            setattr(net, name, FastUp(getattr(net, name)))
    return net


def optimize_for_cpu(model: nn.Module) -> nn.Module:
    """A loaded johnson or fast net -> an equivalent module that is faster on CPU (eval mode, no grads).
    Unknown architectures are returned unchanged."""
    from .fast import FastNet
    from .johnson import TransformerNet

    model = model.eval()
    if isinstance(model, TransformerNet):
        from .johnson_cpu import CpuJohnson

        out = CpuJohnson(model)
    elif isinstance(model, FastNet):
        out = _optimize_fast(model)
    else:
        return model
    out.eval().requires_grad_(False)
    out.arch_name = getattr(model, "arch_name", None)
    return out
