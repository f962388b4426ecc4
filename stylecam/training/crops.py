"""How far a square crop of the painting is from the whole painting, per VGG16 layer, by crop size.

    python -m stylecam.training.crops PAINTING [--style-size 384] [--sizes 192 256 320 384]

The trainer asks every training crop (``image_size``) to have the Gram matrices of the whole painting (at
``style_size``). A crop of the painting itself is the best any output of that size can do, so its distance is a
floor the style loss cannot go below: at relu4_3 (the painting's largest structures, features 92 px wide, and
within 46 px of a border partly zero padding) a small crop is far from the whole. Choose ``image_size`` where this
floor is small. Distances as ``evaluate`` measures them (:class:`StyleLoss`), over a 3x3 grid of crop positions.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Sequence

import torch

from stylecam.errors import StylecamError

from .data import load_rgb, style_tensor
from .losses import StyleLoss
from .lossnets import VGG16

GRID = 3  # crop positions per axis: corners, edges and the middle


@torch.no_grad()
def crop_floor(net: VGG16, painting: torch.Tensor, sizes: Sequence[int]) -> Dict[int, List[float]]:
    """Crop size -> the style distance per layer of the painting's crops to the whole ``painting`` (1x3xHxW),
    averaged over a grid of positions. Sizes larger than the painting's short side are left out."""
    target = StyleLoss(net(painting)[0])
    h, w = painting.shape[-2:]
    floors = {}
    for c in sizes:
        if c > min(h, w):
            continue
        ys = [round(i * (h - c) / (GRID - 1)) for i in range(GRID)]
        xs = [round(i * (w - c) / (GRID - 1)) for i in range(GRID)]
        crops = torch.cat([painting[..., y:y + c, x:x + c] for y in ys for x in xs])
        floors[c] = target.per_layer(net(crops)[0]).tolist()  # per_layer averages over the batch of crops
    return floors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("painting")
    p.add_argument("--style-size", type=int, default=384, help="the painting's short side (a recipe's style_size)")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256, 320, 384],
                   help="crop sizes (a recipe's image_size)")
    args = p.parse_args(argv)
    try:
        painting = style_tensor(load_rgb(args.painting), args.style_size)
        floors = crop_floor(VGG16(), painting, args.sizes)
    except (StylecamError, OSError, ValueError) as e:
        print(f"crops: error: {e}", file=sys.stderr)
        return 2
    if not floors:
        print(f"crops: error: every crop size is larger than the painting at {args.style_size} px; "
              "give smaller --sizes", file=sys.stderr)
        return 2
    print(f"| crop | {' | '.join(VGG16.layers)} | style |\n|---|---|---|---|---|---|")
    for c, d in floors.items():
        print(f"| {c} | {' | '.join(f'{v:.3f}' for v in d)} | {sum(d) / len(d):.3f} |")
    print(f"\n{args.painting} at {args.style_size} px short side: a crop's VGG16 style distance to the whole painting "
          f"(mean over a {GRID}x{GRID} grid of positions), the floor of a training crop that size.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
