"""Pictures of a training run: the loss plot and preview grids of held-out photos."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .data import UNREADABLE, load_rgb, to_tensor


def plateau(csv_path: Path, tail: float = 0.2, window: float = 0.1) -> float:
    """How much the total loss fell over the last ``tail`` of the steps, as a fraction: mean total loss over the
    ``window`` of steps ending where the tail starts vs over the last ``window`` (batch losses are noisy).
    The shipped styles' quality bar is < 0.03."""
    with open(csv_path, newline="") as f:
        rows = [(int(r["step"]), float(r["total"])) for r in csv.DictReader(f)]
    n = rows[-1][0]
    start, w = n * (1 - tail), max(1, n * window)
    before = [t for s, t in rows if start - w < s <= start]
    last = [t for s, t in rows if s > n - w]
    return (float(np.mean(before)) - float(np.mean(last))) / float(np.mean(before))


def plot_losses(csv_path: Path, png_path: Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, key in zip(axes, ("total", "style", "content", "tv")):
        v = np.array([float(r[key]) for r in rows])
        ax.plot(steps, v, alpha=0.3, lw=0.8)
        k = max(1, len(v) // 50)
        if len(v) > k:
            ax.plot(steps[k - 1:], np.convolve(v, np.ones(k) / k, mode="valid"), lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def stylize_pil(model: torch.nn.Module, im: Image.Image) -> Image.Image:
    from stylecam.engine import run_padded
    x = to_tensor(im)[None].to(next(model.parameters()).device)
    y = run_padded(model, x).clamp(0, 255)
    return Image.fromarray(y[0].permute(1, 2, 0).round().byte().cpu().numpy())


def preview_grid(model: torch.nn.Module, photos: Sequence[Path], out: Path, size: int = 256) -> None:
    """Row 1 the photos, row 2 their stylizations (short side ``size``)."""
    was_training = model.training
    model.eval()
    tiles = []
    for p in photos:
        try:
            im = load_rgb(p)
        except UNREADABLE:  # the trainer already warned; a preview is no reason to stop training
            continue
        s = size / min(im.size)
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BICUBIC)
        im = im.crop((0, 0, size, size))
        tiles.append((im, stylize_pil(model, im)))
    model.train(was_training)
    if not tiles:
        return
    grid = Image.new("RGB", (size * len(tiles), size * 2))
    for i, (a, b) in enumerate(tiles):
        grid.paste(a, (i * size, 0))
        grid.paste(b, (i * size, size))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
