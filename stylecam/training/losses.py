"""Perceptual losses as composable modules (content, Gram style, total variation), normalized as found here.

Style per layer: ||G(out) - G(style)||^2 / ||G(style)||^2, averaged over layers, with G = F F^T / (h w).
Content: ||F(out) - F(photo)||^2 / ||F(photo)||^2. The ratios make the weights portable across loss nets.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def gram(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    f = f.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def _rel_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ||a - b||^2 / ||b||^2, averaged over the batch."""
    dims = tuple(range(1, a.dim()))
    return ((a - b).pow(2).sum(dims) / b.pow(2).sum(dims).clamp_min(1e-8)).mean()


class StyleLoss(nn.Module):
    """Gram-matrix distance to fixed target Grams (one per loss-net layer), averaged over the layers with
    ``layer_weights`` (default: equal, as ``evaluate`` measures it)."""

    def __init__(self, target_feats: Sequence[torch.Tensor], layer_weights: Sequence[float] | None = None):
        super().__init__()
        for i, f in enumerate(target_feats):
            self.register_buffer(f"g{i}", gram(f.detach()))
        self.n = len(target_feats)
        w = [1.0] * self.n if layer_weights is None else [float(v) for v in layer_weights]
        if len(w) != self.n or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"style_layer_weights must be {self.n} non-negative numbers, not all 0; got {w}")
        self.register_buffer("w", torch.tensor(w) / sum(w))

    def per_layer(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The distance at each layer (a 1-D tensor), before the layers are averaged."""
        return torch.stack([_rel_sq(gram(f), getattr(self, f"g{i}").expand(f.shape[0], -1, -1))
                            for i, f in enumerate(feats)])

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return (self.per_layer(feats) * self.w).sum()


class ContentLoss(nn.Module):
    def forward(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _rel_sq(feat.float(), target.float().detach())


class TVLoss(nn.Module):
    """Mean squared difference between neighbouring pixels (images in 0..1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def _scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    # float: antialiased resizing has no bf16 kernel (it runs under the trainer's autocast)
    return x if scale == 1.0 else F.interpolate(x.float(), scale_factor=scale, mode="bilinear", antialias=True,
                                                align_corners=False)


class PerceptualLoss(nn.Module):
    """content_weight * content + style_weight * style + tv_weight * TV, on images in 0..1.

    ``style_scales``: the style term is averaged over the output and painting both resized by each factor. At
    full size alone a fine periodic hatch matches the painting's Grams; at half size that hatch averages away,
    so the half-size term asks for the painting's strokes at twice the size instead.
    """

    def __init__(self, loss_net: nn.Module, style_image: torch.Tensor, content_weight: float = 1.0,
                 style_weight: float = 10.0, tv_weight: float = 10.0, style_scales: Sequence[float] = (1.0,),
                 style_layer_weights: Sequence[float] | None = None):
        super().__init__()
        self.loss_net = loss_net
        self.scales = tuple(float(s) for s in style_scales)
        with torch.no_grad():
            self.styles = nn.ModuleList(StyleLoss(loss_net(_scaled(style_image, s))[0], style_layer_weights)
                                        for s in self.scales)
        self.content = ContentLoss()
        self.tv = TVLoss()
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}

    def forward(self, output: torch.Tensor, photo: torch.Tensor) -> Dict[str, torch.Tensor]:
        out_style, out_content = self.loss_net(output)
        with torch.no_grad():
            _, photo_content = self.loss_net(photo)
        style = [loss(out_style if s == 1.0 else self.loss_net(_scaled(output, s))[0])
                 for s, loss in zip(self.scales, self.styles)]
        parts = {"content": self.content(out_content, photo_content), "style": torch.stack(style).mean(),
                 "tv": self.tv(output)}
        parts["total"] = sum(self.weights[k] * parts[k] for k in ("content", "style", "tv"))
        return parts


class ShiftConsistencyLoss(nn.Module):
    """Temporal stability without optical flow (after Gupta et al. 2017, arXiv 1705.02092): the net's output
    for a shifted, noisy copy of the photo must be the shifted output. A stride-2 stem makes strokes depend on
    the sampling phase, so without this a 1 px camera move redraws every stroke (measured on the shipped gogh
    before this term: mean |change| 0.05 for a 1 px shift against 0.016 for sensor-like noise of sigma 4).

    ``forward(net, photo, output)``: photo and output 0..255 (B,3,H,W); returns the mean squared difference
    on 0..1, away from a ``margin`` where padding differs. ``generator`` makes the shifts and noise repeatable.

    ``warp="affine"``: instead of a whole-pixel shift, a random sub-pixel translation (up to ``max_shift`` px),
    rotation (``rotate`` degrees) and zoom (``zoom``), applied to the photo and to the output by bilinear
    resampling: a camera's motion between frames is mostly a fraction of a pixel, which whole-pixel shifts
    never show the net. Measured on gogh's recipe it changed neither the look nor the flicker (within 3%,
    docs/look.md), so recipes keep ``shift``.
    """

    def __init__(self, max_shift: int = 3, noise: float = 4.0, margin: int = 8, multiple: int = 4,
                 warp: str = "shift", rotate: float = 1.0, zoom: float = 0.02):
        super().__init__()
        if warp not in ("shift", "affine"):
            raise ValueError(f"temporal_warp must be 'shift' or 'affine', got {warp!r}")
        self.max_shift, self.noise, self.margin, self.multiple = max_shift, noise, margin, multiple
        self.warp, self.rotate, self.zoom = warp, rotate, zoom

    def forward(self, net: nn.Module, photo: torch.Tensor, output: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        pair = self._affine_pair if self.warp == "affine" else self._shift_pair
        moved_in, target, m = pair(photo, output, generator)
        if self.noise > 0:
            noise = torch.randn(moved_in.shape, generator=generator).to(moved_in.device, moved_in.dtype) * self.noise
            moved_in = (moved_in + noise).clamp(0, 255)
        moved = net(moved_in)
        h, w = target.shape[-2:]
        d = (moved[..., m:h - m, m:w - m].float() - target[..., m:h - m, m:w - m].float()) / 255.0
        return d.pow(2).mean()

    def _shift_pair(self, photo: torch.Tensor, output: torch.Tensor,
                    generator: torch.Generator | None) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """The photo shifted by whole pixels (cropped to the net's size multiple), the same crop of the output,
        and the margin to leave out."""
        s = self.max_shift
        h, w = photo.shape[-2:]
        ch, cw = (h - s) // self.multiple * self.multiple, (w - s) // self.multiple * self.multiple
        dy, dx = (int(v) for v in torch.randint(0, s + 1, (2,), generator=generator))
        return photo[..., dy:dy + ch, dx:dx + cw], output[..., dy:dy + ch, dx:dx + cw], self.margin

    def _affine_pair(self, photo: torch.Tensor, output: torch.Tensor,
                     generator: torch.Generator | None) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """The photo and the output under one random sub-pixel affine warp, and the margin to leave out (the
        warp's largest displacement on top of the padding margin)."""
        b, _, h, w = photo.shape
        u = torch.rand(4, generator=generator) * 2 - 1
        tx, ty = float(u[0]) * self.max_shift, float(u[1]) * self.max_shift
        angle = math.radians(float(u[2]) * self.rotate)
        z = 1.0 + float(u[3]) * self.zoom
        # normalized coordinates (align_corners=False): one pixel is 2/w horizontally, 2/h vertically
        c, s_ = math.cos(angle) / z, math.sin(angle) / z
        theta = torch.tensor([[c, -s_ * h / w, 2 * tx / w], [s_ * w / h, c, 2 * ty / h]], dtype=torch.float32)
        grid = F.affine_grid(theta[None].expand(b, 2, 3), [b, 3, h, w], align_corners=False).to(photo.device)
        warp = lambda x: F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",  # noqa: E731
                                       align_corners=False)
        m = self.margin + int(math.ceil(self.max_shift + self.zoom * max(h, w) + math.sin(abs(angle)) * max(h, w)))
        return warp(photo).to(photo.dtype), warp(output), m
