"""`stylecam live`: the webcam painted in real time - the command and its policies (automatic scale, worker
count, stabilizer). The frame path is ``stylecam.pipeline`` (capture -> stylize -> finish -> sinks); the
window, HUD and keys are ``stylecam.ui``.

Video files play at their native fps like a camera unless ``--no-pace`` (then every frame is stylized, none
dropped, as fast as the slowest stage allows; a recording then keeps the file's own fps).
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from .capture import FrameSource
from .errors import StylecamError
from .pipeline import LiveStages, Pipeline, worker_threads
from .sinks import RecordSink, Sink, VirtualCamSink


# ---------------------------------------------------------------------------------------------------------
# Policies: automatic scale, worker count, stabilizer (the stages themselves: pipeline.LiveStages)
# ---------------------------------------------------------------------------------------------------------
class ScaleController:
    """``--scale auto``: keeps a frame's cost (net, stabilizer, cross-fade) within the frame time of
    ``target_fps``.

    The net's cost grows with the pixel count, i.e. with scale squared, so the next scale is
    ``scale*sqrt(budget/cost)`` from a smoothed cost; the stabilizer works at full size, so where it is a large
    share the first step falls short and the next ones finish the drop. Hysteresis: a scale is kept while its
    cost fits the frame time (``keep``; the picture is only made softer when frames would be lost), a drop
    lands within ``headroom`` of it, and a rise needs that headroom at the new scale and goes half-way (no
    oscillation). Scales are quantized to ``step`` so the net sees few sizes, and the first ``warmup`` frames at
    a size (the net compiles for it) are not counted.
    It starts at full detail: with OpenVINO a 640x480 frame fits the budget here, and a slower machine drops
    to its scale after the first ``every`` frames.
    """

    def __init__(self, target_fps: float = 30.0, lo: float = 0.25, hi: float = 1.0, start: float = 1.0,
                 step: float = 0.05, every: int = 5, headroom: float = 0.85, keep: float = 1.0, warmup: int = 2):
        self.budget = headroom / target_fps  # what a new scale aims for
        self.limit = keep / target_fps  # above this smoothed cost the current scale loses frames: drop
        self.lo, self.hi, self.step, self.every = lo, hi, step, every
        self.scale = self._quantize(start)
        self._ema: Optional[float] = None
        self._n = 0
        self.warmup = self._skip = warmup

    def _quantize(self, s: float, down: bool = False) -> float:
        q = math.floor(s / self.step + 1e-6) if down else round(s / self.step)
        return round(min(self.hi, max(self.lo, q * self.step)), 4)

    def update(self, seconds: float) -> float:
        """Feed one measured stylize time; returns the scale to use next."""
        if self._skip:  # a new size's first frames compile the net for it (the other worker waits): not its cost
            self._skip -= 1
            return self.scale
        self._ema = seconds if self._ema is None else 0.7 * self._ema + 0.3 * seconds
        self._n += 1
        if self._n < self.every:
            return self.scale
        ideal = self.scale * math.sqrt(self.budget / max(self._ema, 1e-6))
        if self._ema > self.limit:
            new = self._quantize(min(ideal, self.scale - self.step), down=True)
        elif ideal > self.scale * 1.1:
            new = self._quantize(self.scale + max(self.step, (ideal - self.scale) / 2))
        else:
            new = self.scale
        if new != self.scale:
            self.scale, self._ema = new, None  # the old cost says nothing about the new size
            self._skip = self.warmup
        self._n = 0
        return self.scale


def make_stabilizer(stability: Optional[float]) -> Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``--stability`` -> ``f(original, stylized) -> stylized`` (optical-flow flicker removal), or None for 0.
    Unset means the default strength (``stabilize.strength_or_default``)."""
    from .stabilize import Stabilizer, strength_or_default

    stability = strength_or_default(stability)
    return Stabilizer(stability) if stability else None


# ---------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------
def default_style(installed: Sequence[str]) -> str:
    if "gogh" in installed:
        return "gogh"
    if not installed:
        raise StylecamError("no styles installed; train one with `stylecam train`, or pass a weights file "
                            "path to --style")
    return installed[0]


def scale_arg(v: str) -> Union[float, str]:
    if v == "auto":
        return v
    try:
        s = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number or 'auto'") from None
    if not 0.05 <= s <= 4.0:
        raise argparse.ArgumentTypeError("scale must be between 0.05 and 4, or 'auto'")
    return s


def register(sub) -> None:
    p = sub.add_parser("live", help="paint the webcam live (the default command)",
                       description="Paint live video (webcam, video file or URL) in the style of a painting.")
    p.add_argument("--style", help="style name (see `stylecam styles`) or weights file; default gogh if "
                   "installed, else the first installed style")
    p.add_argument("--source", default="0", help="camera index (default 0), video file, or URL")
    p.add_argument("--width", type=int, help="frame width to ask the camera for")
    p.add_argument("--height", type=int, help="frame height to ask the camera for")
    p.add_argument("--fps", type=float, help="frame rate to ask the camera for")
    p.add_argument("--scale", type=scale_arg, default="auto",
                   help="processing scale (0.05-4), or 'auto' to hold --target-fps (default auto: live video "
                        "should stay smooth; pass 1 for full detail)")
    p.add_argument("--target-fps", type=float, default=30.0, help="frame rate --scale auto holds (default 30)")
    p.add_argument("--mirror", action="store_true", help="flip the picture horizontally (selfie view)")
    p.add_argument("--record", metavar="PATH", help="record the stylized video to this MP4 (r toggles)")
    p.add_argument("--no-window", action="store_true", help="headless: no window (record / virtual cam only)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="loop a video-file source")
    p.add_argument("--no-pace", action="store_true", help="read a video file as fast as it is stylized, "
                   "every frame (default: at its native fps, like a camera, dropping frames when behind)")
    p.add_argument("--virtual-cam", action="store_true", help="send the stylized video to a virtual camera "
                   "(needs stylecam[virtualcam] and a loopback device / OBS)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: best available)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="frames stylized in parallel "
                   "(default: 2 on a CPU with 2+ cores, each with half the cores; 1 on a GPU)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default=None)
    p.add_argument("--backend", choices=["auto", "torch", "openvino"], default=None,
                   help="CPU engine: openvino, torch, or auto (default: OpenVINO, PyTorch if it cannot run the net)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1 blend with the camera picture")
    p.add_argument("--preserve-colors", action="store_true", help="keep the camera's colours")
    p.add_argument("--stability", type=float, default=None, metavar="K", help="flicker removal strength in "
                   "[0, 1): weight of the motion-compensated previous frame (default 0.95; 0 = off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import engine
    from .weights import available_styles

    installed = list(available_styles())
    style = args.style or default_style(installed)
    if args.max_frames is not None and args.max_frames < 1:
        raise StylecamError("--max-frames must be at least 1")
    if args.target_fps <= 0:
        raise StylecamError("--target-fps must be positive")
    if not args.no_window:
        from .ui import check_display

        check_display()  # before loading anything: without a display Qt would abort the process
    if args.no_window and not (args.record or args.virtual_cam or args.max_frames):
        print("stylecam: note: --no-window without --record, --virtual-cam or --max-frames runs until Ctrl-C",
              file=sys.stderr)

    def load(name: str):
        return engine.load(name, device=args.device, precision=args.precision, backend=args.backend,
                           strength=args.strength,
                           preserve_colors=args.preserve_colors,
                           scale=1.0 if args.scale == "auto" else args.scale)

    with worker_threads(args.workers, engine.pick_device(args.device).type) as workers:
        return _play(args, installed, style, load, workers)


def _play(args: argparse.Namespace, installed: List[str], style: str, load: Callable, workers: int) -> int:
    """The pipeline from source to sinks, with the Ctrl-C policy: the first stops cleanly, the second hard."""
    # each of ``workers`` parallel workers has ``workers`` frame times to stylize its frame
    auto = ScaleController(args.target_fps / workers) if args.scale == "auto" else None
    stages = LiveStages(installed, style, load, strength=args.strength, preserve_colors=args.preserve_colors,
                        scale=1.0 if auto else args.scale, auto=auto, stabilizer=make_stabilizer(args.stability))
    source = FrameSource(args.source, width=args.width, height=args.height, fps=args.fps, mirror=args.mirror,
                         loop=args.loop, realtime=not args.no_pace).open()
    sinks: List[Sink] = []
    try:
        if args.virtual_cam:
            sinks.append(VirtualCamSink(*source.size, fps=source.fps or args.fps or 30.0))
        if args.no_window:
            if args.record:
                sinks.append(RecordSink(args.record, fallback_fps=source.fps or 30.0))
        else:
            from .ui import LiveWindow

            sinks.append(LiveWindow(stages, source.size, record_path=args.record))
    except BaseException:
        source.stop()
        for s in sinks:
            s.close()
        raise

    pipeline = Pipeline(source, stages, sinks, max_frames=args.max_frames, workers=workers)
    interrupted = []

    def on_signal(signum, frame):  # first Ctrl-C: finish cleanly (finalize the recording); second: hard stop
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)
        pipeline.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = pipeline.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    scale = f", scale {auto.scale:.2f} (auto)" if auto else ""
    print(f"stylecam: {stats.summary()}{scale}", file=sys.stderr)
    for s in sinks:
        if isinstance(s, RecordSink) and s.frames_written:
            print(f"stylecam: recorded {s.path} ({s.frames_written} frames at {s.fps:.1f} fps)", file=sys.stderr)
    return 130 if interrupted else 0
