"""Held-out quality numbers: each style's style/content/TV losses on photos the trainer never saw.

    python -m stylecam.training.evaluate weights/gogh.safetensors weights/gogh_classic.safetensors

The photos are the trainer's own holdout (same selection rule), so fast and classic nets trained from the same
recipe family are compared on identical, unseen inputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from PIL import Image

from stylecam import weights as weights_io
from stylecam.engine import run_padded

from .data import find_images, holdout, load_rgb, to_tensor
from .losses import PerceptualLoss
from .lossnets import build_loss_net

ROOT = Path(__file__).resolve().parents[2]  # the repository (recipes, docs, ../shared)
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "content"


def square(im: Image.Image, size: int) -> Image.Image:
    s = size / min(im.size)
    im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))), Image.BICUBIC)
    x, y = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    return im.crop((x, y, x + size, y + size))


@torch.no_grad()
def evaluate(weights: Path, photos: Sequence[Path], size: int = 256, loss_net: str | None = None) -> Dict[str, float]:
    model, info = weights_io.load(weights)
    style_image = ROOT / info.training.get("style_image", "")
    if not style_image.is_file():
        raise SystemExit(f"{weights}: its style image {style_image} is not available")
    from .train import style_tensor

    net_name = loss_net or info.training.get("loss_net", "efficientnet-lite0")
    recipe = info.recipe
    crit = PerceptualLoss(build_loss_net(net_name), style_tensor(str(style_image), recipe.get("style_size", 256)),
                          recipe.get("content_weight", 1.0), recipe.get("style_weight", 10.0),
                          recipe.get("tv_weight", 10.0))
    sums: Dict[str, float] = {}
    for p in photos:
        x = to_tensor(square(load_rgb(p), size))[None]
        y = run_padded(model, x).clamp(0, 255)
        for k, v in crit(y / 255.0, x / 255.0).items():
            sums[k] = sums.get(k, 0.0) + float(v) / len(photos)
    return {k: round(v, 5) for k, v in sums.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    photos = holdout(find_images(args.dataset), args.holdout)
    results = {w: evaluate(Path(w), photos, args.size) for w in args.weights}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'weights':40s} {'style':>9s} {'content':>9s} {'tv':>9s} {'total':>9s}   ({len(photos)} held-out photos)")
        for w, r in results.items():
            print(f"{w:40s} {r['style']:9.4f} {r['content']:9.4f} {r['tv']:9.5f} {r['total']:9.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
