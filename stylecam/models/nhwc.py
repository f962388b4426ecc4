"""Channels-last helpers for the CPU rewrite: reused buffers, instance-norm statistics, pad borders.

Maps are 3-D (H, W, C) tensors, the memory layout oneDNN convolves fastest on this CPU (2x for the stride-2
and 9x9 convs compared with NCHW) and the one where every per-channel op runs on contiguous channel vectors.
"""
from __future__ import annotations

import threading

import torch

_local = threading.local()


def buffer(tag: str, shape, zero: bool = False) -> torch.Tensor:
    """A float32 tensor kept between calls, one per tag and thread (pipeline workers run the same module
    concurrently). Why: a fresh >32 MB tensor comes from mmap and costs ~30 ms of page faults per frame.
    ``zero`` buffers start zeroed and keep their exact shape (callers leave the zero margins alone); the
    others are views of one growing block, so a tag may serve maps of different shapes. Tag "scratch" is
    shared by helpers that finish with it before returning (statistics, Winograd transforms)."""
    bufs = _local.__dict__.setdefault("bufs", {})
    shape = tuple(shape)
    n = 1
    for s in shape:
        n *= s
    t = bufs.get(tag)
    with torch.inference_mode(False):  # an inference tensor could not be written outside inference mode
        if zero:
            if t is None or tuple(t.shape) != shape:
                bufs[tag] = t = torch.zeros(shape)
            return t
        if t is None or t.numel() < n:
            bufs[tag] = t = torch.empty(n)
        return t[:n].view(shape)


def as_nchw(x: torch.Tensor) -> torch.Tensor:
    """(H, W, C) -> a (1, C, H, W) channels-last view, what F.conv2d takes. The batch stride must be the
    full map's (``[None]`` gives C): oneDNN takes a ~6x slower path on the odd stride."""
    return x.unsqueeze(0).permute(0, 3, 1, 2)


def as_hwc(x: torch.Tensor) -> torch.Tensor:
    """A (1, C, H, W) channels-last tensor -> its (H, W, C) view."""
    return x[0].permute(1, 2, 0)


def _sums(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel sums of t and t^2 over (rows, cols); t is overwritten by its square."""
    s1 = t.sum((0, 1))
    return s1, t.mul_(t).sum((0, 1))


def _shift(x: torch.Tensor) -> torch.Tensor:
    """A per-channel value near the mean of x (h, w, C), from an ~8x8 sample."""
    return x[::max(1, x.shape[0] // 8), ::max(1, x.shape[1] // 8)].mean((0, 1))


def channel_stats(x: torch.Tensor, centered: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of an (h, w, C) map.

    Why not torch.var_mean: its Welford loop is not vectorized over channels-last data (60-120 ms on a
    640x480x32 map, ~15 ms here); native_group_norm is fast but sums raw squares, which cancels
    catastrophically when a channel's mean is large against its spread. Here the sums are of x minus a
    per-channel shift near the mean; ``centered`` says x was already shifted (one pass fewer).
    """
    shift = torch.zeros(x.shape[-1]) if centered else _shift(x)
    t = buffer("scratch", x.shape)
    if centered:
        s1, s2 = x.sum((0, 1)), torch.mul(x, x, out=t).sum((0, 1))
    else:
        s1, s2 = _sums(torch.sub(x, shift, out=t))
    return _finish(shift, s1, s2, x.shape[0] * x.shape[1])


def _finish(shift, s1, s2, n):
    m1 = s1.double() / n
    return (shift.double() + m1).float(), (s2.double() / n - m1 * m1).clamp_(min=0).float()


def phase_stats(o: torch.Tensor, groups: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics of a sub-pixel conv output as the upsampled map would have them.

    o is (h+1, w+1, 4*C) with phase q = 2a+b in channels [qC, (q+1)C) and valid at rows a..a+h-1, cols
    b..b+w-1. One pass sums the whole map; the row and column each phase does not use are subtracted after.
    """
    hp, wp, cc = o.shape
    c = cc // groups
    h, w = hp - 1, wp - 1
    shift = _shift(o).view(groups, c).mean(0)
    t = torch.sub(o, shift.repeat(groups), out=buffer("scratch", o.shape))
    totals = []
    for square in (False, True):
        if square:
            t.mul_(t)
        full = t.sum((0, 1)).double().view(groups, c)
        rows, cols = t[[0, h]].sum(1).double(), t[:, [0, w]].sum(0).double()  # (2, 4C) each
        corners = t[[0, h]][:, [0, w]].double()  # (2 rows, 2 cols, 4C)
        parts = []
        for q in range(groups):
            a, b = divmod(q, 2)
            r, k = 1 - a, 1 - b  # index of the excluded row (h when a=0) / column among [0, h] / [0, w]
            sl = slice(q * c, (q + 1) * c)
            parts.append(full[q] - rows[r, sl] - cols[k, sl] + corners[r, k, sl])
        totals.append(torch.stack(parts).sum(0))
    return _finish(shift, totals[0], totals[1], groups * h * w)


def fill_border(buf: torch.Tensor, p: int, h: int, w: int, mode: str) -> torch.Tensor:
    """Fill the p-wide frame around buf[p:p+h, p:p+w] by reflection (edge not repeated) or replication."""
    if p == 0:
        return buf
    mid = buf[:, p:p + w]
    if mode == "reflect" and p == 1:  # no flips needed
        mid[0].copy_(mid[2])
        mid[h + 1].copy_(mid[h - 1])
        rows = buf[:h + 2]
        rows[:, 0].copy_(rows[:, 2])
        rows[:, w + 1].copy_(rows[:, w - 1])
    elif mode == "reflect":
        mid[:p].copy_(mid[p + 1:2 * p + 1].flip(0))
        mid[p + h:p + h + p].copy_(mid[h - 1:h - 1 + p].flip(0))
        rows = buf[:p + h + p]
        rows[:, :p].copy_(rows[:, p + 1:2 * p + 1].flip(1))
        rows[:, p + w:p + w + p].copy_(rows[:, w - 1:w - 1 + p].flip(1))
    elif mode == "replicate":
        mid[:p].copy_(mid[p:p + 1].expand_as(mid[:p]))
        mid[p + h:p + h + p].copy_(mid[p + h - 1:p + h].expand_as(mid[:p]))
        rows = buf[:p + h + p]
        rows[:, :p].copy_(rows[:, p:p + 1].expand_as(rows[:, :p]))
        rows[:, p + w:p + w + p].copy_(rows[:, p + w - 1:p + w].expand_as(rows[:, :p]))
    else:
        raise ValueError(mode)
    return buf
