"""Winograd F(m x m, 3x3) convolution in channels-last layout, built from a few large torch ops.

Why: a dense 3x3 conv does 9 multiply-adds per output and input channel; F(4,3) does 36 per 4x4 output tile
(2.25 per output), as 36 independent (tiles x C) @ (C x K) matrix products that run near the CPU's peak.
The tile transforms are matrix products too: one strided copy gathers the overlapping input tiles, then
B^T is applied along tile rows and along tile columns by two skinny GEMMs (and A^T likewise on the way out,
followed by one copy that interleaves the output tiles). All of it runs per band of tile rows so that the
transformed band stays in cache. On the 2-core AVX2 target, 128->128 channels at 160x120: 33 ms (1 thread)
/ 19 ms (2 threads) against 62 / 31 ms for oneDNN's direct conv; elementwise transforms were 1.5-2x slower
and needed ~100x the ops (every op is a fork/join of the thread pool, costly on a busy machine).

The fp32 error of F(4,3) is ~5x a direct conv's (the transforms scale by up to 8 and 1/24), ~1e-5 of the
output magnitude. Transforms: Cook-Toom on the points of Lavin & Gray 2016 (0, +-1, +-2, [+-1/2,] inf).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction

import torch

M = 4  # default outputs per tile side (see ``matrices`` for the others)
CHUNK_BYTES = 4 << 20  # transformed input per chunk of tile rows: the chunk's intermediates stay in cache
_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}

Alloc = Callable[[str, tuple], torch.Tensor]


def _empty(tag: str, shape: tuple) -> torch.Tensor:
    return torch.empty(shape)


@functools.cache
def matrices(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F(m, 3) transforms in fp64 for m in 2, 4, 6: B^T (n x n), G (n x 3), A^T (m x n), n = m + 2, with
    A^T [(G g) * (B^T d)] the 3-tap correlation of d with g. A^T and G follow from the points (Cook-Toom);
    B^T solves that identity (its entries are dyadic, so rounding to 1/1024 makes it exact)."""
    pts = [Fraction(x) for x in _POINTS[m]]
    n = m + 2
    at = [[float(x ** i) for x in pts] + [float(i == m - 1)] for i in range(m)]
    g = []
    for j, x in enumerate(pts):
        f = Fraction(1)
        for k, y in enumerate(pts):
            if k != j:
                f *= x - y
        g.append([float(x ** k / f) for k in range(3)])
    g.append([0.0, 0.0, 1.0])
    at, g = torch.tensor(at, dtype=torch.float64), torch.tensor(g, dtype=torch.float64)
    lhs = torch.stack([at[i] * g[:, k] for i in range(m) for k in range(3)])
    rhs = torch.tensor([[float(j == i + k) for j in range(n)] for i in range(m) for k in range(3)],
                       dtype=torch.float64)
    bt = torch.round(torch.linalg.lstsq(lhs, rhs).solution * 1024) / 1024
    assert torch.allclose(lhs @ bt, rhs, atol=1e-12), "transform construction failed"
    return bt, g, at


def weight_transform(w: torch.Tensor, m: int = M) -> torch.Tensor:
    """(K, C, 3, 3) conv weight -> (n*n, C, K): G w G^T per point, computed in fp64 then rounded once."""
    g = matrices(m)[1]
    u = torch.einsum("ia,kcab,jb->ijck", g, w.detach().double(), g)
    return u.reshape(-1, w.shape[1], w.shape[0]).float().contiguous()


def tile_size(u: torch.Tensor) -> int:
    """Outputs per tile side of ``weight_transform`` weights."""
    return round(u.shape[0] ** 0.5) - 2


def tiles(h: int, w: int, m: int = M) -> tuple[int, int]:
    """Tile rows and columns covering an h x w output."""
    return -(-h // m), -(-w // m)


def padded_shape(h: int, w: int, c: int, m: int = M) -> tuple[int, int, int]:
    """The (rows, cols, C) map ``conv3x3`` reads for an h x w output: whole tiles plus the 1-pixel halo."""
    th, tw = tiles(h, w, m)
    return m * th + 2, m * tw + 2, c


def input_transform(xp: torch.Tensor, m: int = M, alloc: Alloc = _empty) -> torch.Tensor:
    """Padded map (m*th+2, m*tw+2, C) -> V (n*n, th*tw, C), V[n*i+j] = B^T d B at point (i, j) per tile."""
    hp, wp, c = xp.shape
    n = m + 2
    th, tw = (hp - 2) // m, (wp - 2) // m
    assert xp.stride() == (wp * c, c, 1), "a contiguous (rows, cols, C) map"
    bt = matrices(m)[0].float()
    d = alloc("winograd.a", (n * n, th * tw, c))
    d.view(n, n, th, tw, c).copy_(xp.as_strided((n, n, th, tw, c), (wp * c, c, m * wp * c, m * c, 1)))
    r = alloc("scratch", (n * n, th * tw, c))
    torch.mm(bt, d.view(n, -1), out=r.view(n, -1))  # along tile rows: (i, v, tiles, C)
    return torch.bmm(bt.expand(n, n, n), r.view(n, n, -1), out=d.view(n, n, -1)).view(n * n, th * tw, c)


def output_transform(prod: torch.Tensor, th: int, tw: int, out: torch.Tensor, alloc: Alloc = _empty,
                     shift: torch.Tensor | None = None) -> torch.Tensor:
    """M (n*n, th*tw, K) -> ``out`` (m*th, m*tw, K): A^T M A per tile, written in place, minus ``shift``
    (per channel) if given."""
    k = prod.shape[-1]
    n = round(prod.shape[0] ** 0.5)
    m = n - 2
    at = matrices(m)[2].float()
    half = alloc("winograd.a", (m * n, th * tw, k))  # V is consumed by now
    torch.mm(at, prod.view(n, -1), out=half.view(m, -1))  # along tile rows: (a, j, tiles, K)
    full = alloc("scratch", (m * m, th * tw, k))
    torch.bmm(at.expand(m, m, n), half.view(m, n, -1), out=full.view(m, m, -1))
    src = full.view(m, m, th, tw, k).permute(2, 0, 3, 1, 4)
    if shift is not None:
        torch.sub(src, shift, out=out.view(th, m, tw, m, k))
    else:
        out.view(th, m, tw, m, k).copy_(src)
    return out


def conv3x3(xp: torch.Tensor, u: torch.Tensor, out: torch.Tensor | None = None,
            alloc: Alloc = _empty, center: bool = False, chunk_bytes: int | None = None) -> torch.Tensor:
    """Valid 3x3 conv of a contiguous channels-last map shaped by ``padded_shape``, with ``weight_transform``
    weights -> (m*th, m*tw, K); crop to the wanted size. No bias: every caller feeds an instance norm, which
    removes it, and for the same reason ``center`` may subtract a per-channel constant near the mean: the
    norm's statistics then need no shifting pass of their own. ``alloc(tag, shape)`` supplies the scratch
    tensors (reused buffers, say); "scratch" is free again when this returns.

    Works through bands of tile rows: each band's transforms and products stay in the L3 cache, which
    matters more than op count once two threads share the memory bandwidth."""
    m = tile_size(u)
    p, c, k = u.shape
    th, tw = (xp.shape[0] - 2) // m, (xp.shape[1] - 2) // m
    assert xp.shape[0] == m * th + 2 and xp.shape[1] == m * tw + 2, "pad the map to whole tiles first"
    if out is None:
        out = xp.new_empty(m * th, m * tw, k)
    step = max(1, (CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // (p * tw * max(c, k) * 4))
    shift = None
    for r0 in range(0, th, step):
        n = min(step, th - r0)
        v = input_transform(xp[m * r0:m * (r0 + n) + 2], m, alloc)
        prod = torch.bmm(v, u, out=alloc("winograd.m", (p, n * tw, k)))
        band = output_transform(prod, n, tw, out[m * r0:m * (r0 + n)], alloc, shift)
        if center and shift is None:  # one constant per channel for the whole map, from the first band
            shift = band[::max(1, band.shape[0] // 8), ::max(1, band.shape[1] // 8)].mean((0, 1))
            band.sub_(shift)
    return out
