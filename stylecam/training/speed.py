"""Measure the trainer's per-step cost by component, so its defaults are chosen on numbers.

    python -m stylecam.training.speed [--batch-size 4 --image-size 256 --repeats 5]

On a shared machine wall-clock times mostly measure the neighbours, so each component is timed in CPU
seconds of the calling thread with one intra-op thread (``time.thread_time``); that is what a step costs
whatever else runs. The thread-count comparison is inherently wall-clock and is reported as such.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from stylecam import models

from .data import PhotoCrops, style_tensor
from .lossnets import build_loss_net
from .losses import PerceptualLoss

ROOT = Path(__file__).resolve().parents[2]  # the repository (recipes, docs, ../shared)


def cpu_seconds(fn: Callable[[], None], repeats: int, clock=time.thread_time) -> float:
    fn()  # warm-up: oneDNN primitive creation, allocator
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" / "content"))
    p.add_argument("--style-image", default=str(ROOT.parent / "shared" / "data" / "styles" / "starry_night.jpg"))
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    b, s, n = args.batch_size, args.image_size, args.repeats

    torch.set_num_threads(1)
    ds = PhotoCrops(args.dataset, s, seed=0)
    counter = iter(range(10**9))
    data = cpu_seconds(lambda: torch.stack([ds[(next(counter), j)] for j in range(b)]), n)
    print(f"data: {b} crops from JPEG (decode, resize, crop, flip): {data:.3f} CPU s")

    style = style_tensor(args.style_image, s)
    for cl in (False, True):
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = models.build("fast").to(memory_format=fmt)
        net = build_loss_net("efficientnet-lite0").to(memory_format=fmt)
        crit = PerceptualLoss(net, style, 1.0, 10.0, 10.0)
        x = (torch.rand(b, 3, s, s) * 255).contiguous(memory_format=fmt)
        y0 = model(x).detach()

        def model_step():
            model.zero_grad(set_to_none=True)
            model(x).mean().backward()

        def loss_step():
            y = (y0 / 255).requires_grad_(True)
            crit(y, x / 255)["total"].backward()

        def full_step():
            model.zero_grad(set_to_none=True)
            crit(model(x) / 255, x / 255)["total"].backward()

        tag = "channels_last" if cl else "contiguous   "
        print(f"{tag}: model fwd+bwd {cpu_seconds(model_step, n):.3f}  loss net + losses fwd+bwd "
              f"{cpu_seconds(loss_step, n):.3f}  full step {cpu_seconds(full_step, n):.3f} CPU s")

    model = models.build("fast")
    net = build_loss_net("efficientnet-lite0")
    crit = PerceptualLoss(net, style, 1.0, 10.0, 10.0)
    x = torch.rand(b, 3, s, s) * 255

    def full_step():
        model.zero_grad(set_to_none=True)
        crit(model(x) / 255, x / 255)["total"].backward()

    for threads in (1, 2):
        torch.set_num_threads(threads)
        wall = cpu_seconds(full_step, n, clock=time.perf_counter)
        print(f"threads={threads}: full step {wall:.3f} wall s (disturbed by whatever else runs)")


if __name__ == "__main__":
    main()
