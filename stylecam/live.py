"""`stylecam live`: the webcam painted in real time. Also the reusable ``Pipeline`` the benchmark runs.

The data path, threads handing over through one-slot mailboxes (newest wins, drops counted)::

    FrameSource thread  --box-->  inference workers: process(rgb)  --box-->  calling thread: sinks
    (camera / file / URL)          (LiveStyler: style, scale, fade)           (window, MP4, virtual camera)

The slowest stage sets the rate; at most one frame ever waits between two stages. With ``workers=2`` (the CPU
default) two frames are stylized at once, one core each; frames are finished (``process.finish``: flicker
removal, fades) and handed on in capture order.

Pipeline interface (stable; ``stylecam bench`` uses it)::

    from stylecam.capture import FrameSource
    from stylecam.live import Pipeline
    from stylecam.sinks import NullSink

    source = FrameSource("clip.mp4", realtime=False)   # realtime=False: every frame, as fast as consumed
    stats = Pipeline(source, stylizer, [NullSink()], max_frames=300).run()
    stats.fps, stats.latency_ms_median, stats.latency_ms_p90, stats.dropped, stats.as_dict()

``source`` is a ``FrameSource`` (opened or not) or a spec for one (camera index, file, URL); ``process`` any
``Callable[[np.ndarray], np.ndarray]`` on RGB uint8 frames; ``sinks`` objects with ``send/idle/close`` (see
``stylecam.sinks``). ``run()`` blocks until the source ends, ``max_frames`` frames reached the sinks, a sink
raises ``StopPipeline`` or ``stop()`` is called (thread- and signal-handler-safe), then closes the sinks.

Video files play at their native fps like a camera unless ``--no-pace`` (then every frame is stylized, none
dropped, as fast as the slowest stage allows; a recording then keeps the file's own fps).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import cv2
import numpy as np

from .capture import FrameSource, Mailbox
from .errors import StylecamError
from .sinks import NullSink, Processed, RecordSink, Sink, StopPipeline, VirtualCamSink, Window

FADE_SECONDS = 0.4
STRENGTH_STEP = 0.1


# ---------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PipelineStats:
    captured: int
    processed: int
    shown: int
    dropped: int  # frames captured but never shown (replaced in a mailbox while a later stage was busy)
    fps: float  # frames reaching the sinks per second
    latency_ms_median: float  # capture -> all sinks done
    latency_ms_p90: float
    elapsed_s: float
    reconnects: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.shown} frames in {self.elapsed_s:.1f} s, {self.fps:.1f} fps, latency "
                f"{self.latency_ms_median:.0f}/{self.latency_ms_p90:.0f} ms (median/p90), {self.dropped} dropped")


class Pipeline:
    """capture -> process -> sinks, overlapped in threads. See the module docstring for the contract."""

    def __init__(self, source: Union[FrameSource, str, int], process: Callable[[np.ndarray], np.ndarray],
                 sinks: Sequence[Sink] = (), max_frames: Optional[int] = None, workers: int = 1):
        self.source = source if isinstance(source, FrameSource) else FrameSource(source)
        self.process = process
        self.sinks = list(sinks) or [NullSink()]
        self.max_frames = max_frames
        self.workers = max(1, int(workers))
        self.out: Mailbox[Processed] = Mailbox()
        self.processed = 0
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        # With several workers: frames are taken with a ticket and finished in ticket order, so sinks and the
        # order-dependent ``process.finish`` (flicker removal, fades) see frames in capture order.
        self._take = threading.Lock()
        self._turn = threading.Condition()
        self._tickets = 0
        self._next = 0
        self._alive = self.workers

    def stop(self) -> None:
        """Ask the run to end; safe from any thread or a signal handler."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()

    def _infer(self) -> None:
        box = self.source.box
        split = self.workers > 1 and hasattr(self.process, "stylize") and hasattr(self.process, "finish")
        try:
            while not self._stop.is_set():
                with self._take:
                    f = box.get(timeout=0.1)
                    if f is not None:
                        ticket, self._tickets = self._tickets, self._tickets + 1
                if f is None:
                    if box.closed:
                        break
                    continue
                if self.workers == 1:
                    self._emit(Processed(f.index, f.image, self.process(f.image), f.t_capture, f.t_media))
                    continue
                y = self.process.stylize(f.image) if split else self.process(f.image)
                with self._turn:
                    self._turn.wait_for(lambda: self._next == ticket or self._stop.is_set())
                    if self._stop.is_set():
                        break
                    try:
                        if split:
                            y = self.process.finish(f.image, y)
                        self._emit(Processed(f.index, f.image, y, f.t_capture, f.t_media))
                    finally:
                        self._next += 1
                        self._turn.notify_all()
        except BaseException as e:  # surfaced by run() in the calling thread
            self._error = e
            self.stop()
        finally:
            with self._turn:
                self._alive -= 1
                last = self._alive == 0
            if last or self._error is not None:
                self.out.close()

    def _emit(self, p: Processed) -> None:
        self.processed += 1
        if self.source.realtime:
            self.out.put(p)
        else:
            while not self._stop.is_set() and not self.out.put_wait(p, timeout=0.1):
                pass

    def run(self) -> PipelineStats:
        src = self.source
        src.start()
        workers = [threading.Thread(target=self._infer, name=f"stylecam-infer-{i}", daemon=True)
                   for i in range(self.workers)]
        for w in workers:
            w.start()
        latencies: List[float] = []
        shown, t_first, t_last = 0, 0.0, 0.0
        t_start = time.perf_counter()
        try:
            while not self._stop.is_set():
                p = self.out.get(timeout=0.03)
                if p is None:
                    if self.out.closed:
                        break
                    for s in self.sinks:
                        s.idle(src.status)
                    continue
                for s in self.sinks:
                    s.send(p)
                now = time.perf_counter()
                latencies.append(now - p.t_capture)
                shown += 1
                t_first = t_first or now
                t_last = now
                if self.max_frames and shown >= self.max_frames:
                    break
        except StopPipeline:
            pass
        finally:
            self._stop.set()
            src.stop()
            self.out.close()
            for w in workers:
                w.join(timeout=10)
            errors = []
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:  # close every sink (finalize recordings) before reporting
                    errors.append(e)
        if self._error is not None:
            raise self._error
        if errors:
            raise errors[0]
        lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
        fps = (shown - 1) / (t_last - t_first) if shown > 1 and t_last > t_first else 0.0
        # overwritten in a mailbox before anyone took them; frames still in flight when a run is stopped
        # (max_frames, Ctrl-C) were not dropped
        dropped = src.dropped + self.out.dropped
        return PipelineStats(captured=src.captured, processed=self.processed, shown=shown, dropped=dropped,
                             fps=fps, latency_ms_median=float(np.median(lat)),
                             latency_ms_p90=float(np.percentile(lat, 90)),
                             elapsed_s=time.perf_counter() - t_start, reconnects=src.reconnects)


# ---------------------------------------------------------------------------------------------------------
# Processing: style switching, strength, colours, automatic scale
# ---------------------------------------------------------------------------------------------------------
class ScaleController:
    """``--scale auto``: keeps the stylize time within the frame budget of ``target_fps``.

    Cost grows with the pixel count, i.e. with scale squared, so the next scale is ``scale*sqrt(budget/cost)``
    from a smoothed cost. It drops at once when over budget (the machine got slower) and rises half-way and
    only with 10 % headroom (no oscillation). Scales are quantized to ``step`` so the net sees few sizes.
    """

    def __init__(self, target_fps: float = 30.0, lo: float = 0.25, hi: float = 1.0, start: float = 0.5,
                 step: float = 0.05, every: int = 5, headroom: float = 0.85):
        self.budget = headroom / target_fps
        self.lo, self.hi, self.step, self.every = lo, hi, step, every
        self.scale = self._quantize(start)
        self._ema: Optional[float] = None
        self._n = 0

    def _quantize(self, s: float) -> float:
        return round(min(self.hi, max(self.lo, round(s / self.step) * self.step)), 4)

    def update(self, seconds: float) -> float:
        """Feed one measured stylize time; returns the scale to use next."""
        self._ema = seconds if self._ema is None else 0.7 * self._ema + 0.3 * seconds
        self._n += 1
        if self._n < self.every:
            return self.scale
        ideal = self.scale * math.sqrt(self.budget / max(self._ema, 1e-6))
        if ideal < self.scale:
            new = self._quantize(min(ideal, self.scale - self.step))
        elif ideal > self.scale * 1.1:
            new = self._quantize(self.scale + max(self.step, (ideal - self.scale) / 2))
        else:
            new = self.scale
        if new != self.scale:
            self.scale, self._ema = new, None  # the old cost says nothing about the new size
        self._n = 0
        return self.scale


class LiveStyler:
    """The ``process`` stage of live mode: the current style with the user's settings, switched with a short
    cross-fade from the last frame of the old style. The UI thread only sets fields; this runs them."""

    def __init__(self, styles: Sequence[str], current: str, load: Callable[[str], Callable],
                 strength: float = 1.0, preserve_colors: bool = False, scale: Union[float, str] = 1.0,
                 target_fps: float = 30.0, stabilizer: Optional[Callable] = None, workers: int = 1):
        self.styles = list(styles) if current in styles else [current] + list(styles)
        self.index = self.styles.index(current)
        self._load = load
        self._cache = {current: load(current)}
        self.strength = strength
        self.preserve_colors = preserve_colors
        # each of ``workers`` parallel workers has ``workers`` frame times to stylize its frame
        self.auto = ScaleController(target_fps / max(1, workers)) if scale == "auto" else None
        self.fixed_scale = 1.0 if scale == "auto" else float(scale)
        self.stabilizer = stabilizer
        self.message = ""  # last problem (e.g. a style that failed to load), shown in the window
        self.stylize_ms = 0.0
        self._want = self.index
        self._fade_from: Optional[np.ndarray] = None
        self._fade_t0 = 0.0
        self._last: Optional[np.ndarray] = None
        self._switched = False
        self._lock = threading.Lock()

    @property
    def stylizer(self):
        return self._cache[self.styles[self.index]]

    @property
    def scale(self) -> float:
        return self.auto.scale if self.auto else self.fixed_scale

    def select(self, i: int) -> None:
        if 0 <= i < len(self.styles):
            self._want = i

    def step(self, delta: int) -> None:
        self._want = (self._want + delta) % len(self.styles)

    def _switch(self) -> None:
        want = self._want
        name = self.styles[want]
        if name not in self._cache:
            try:
                self._cache[name] = self._load(name)
            except StylecamError as e:
                self.message, self._want = str(e), self.index
                return
        self.index = want
        self._switched = True  # finish() resets the stabilizer and starts the cross-fade, in frame order

    def stylize(self, rgb: np.ndarray) -> np.ndarray:
        """The expensive, order-free part; safe to run for two frames at once (pipeline workers)."""
        with self._lock:
            if self._want != self.index:
                self._switch()
            st = self.stylizer
            st.strength, st.preserve_colors, st.scale = self.strength, self.preserve_colors, self.scale
        t = time.perf_counter()
        y = st(rgb)
        dt = time.perf_counter() - t
        with self._lock:
            self.stylize_ms = dt * 1000
            if self.auto:
                self.auto.update(dt)
        return y

    def finish(self, rgb: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The order-dependent part (flicker removal carries the previous frame; the style cross-fade)."""
        if self._switched:
            self._switched = False
            if self.stabilizer is not None and hasattr(self.stabilizer, "reset"):
                self.stabilizer.reset()  # the previous style's strokes must not be carried into the new one
            self._fade_from, self._fade_t0 = self._last, time.perf_counter()
        if self.stabilizer is not None:
            y = self.stabilizer(rgb, y)
        self._last = y
        if self._fade_from is not None:
            a = (time.perf_counter() - self._fade_t0) / FADE_SECONDS
            if a >= 1 or self._fade_from.shape != y.shape:
                self._fade_from = None
            else:
                y = cv2.addWeighted(self._fade_from, 1 - a, y, a, 0)
        return y

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.finish(rgb, self.stylize(rgb))


def workers_for(requested: Optional[int], device: str) -> int:
    """How many inference workers ``pick_workers`` runs (no side effects): 2 on a multi-core CPU, else 1."""
    if requested is None:
        requested = 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    if requested < 1:
        raise StylecamError(f"--workers must be at least 1, got {requested}")
    return requested


def pick_workers(requested: Optional[int], device: str) -> int:
    """Inference workers for the pipeline, and torch's intra-op threads set to share the cores among them.

    On CPU two workers of one thread each stylize 1.5x more frames per second than one worker of two threads
    (measured on 2 cores at 320x240: 35.7 vs 23.5 fps; the fast net's small convs do not split well across
    cores). Latency is one single-threaded frame. GPUs keep one worker.
    """
    import torch

    requested = workers_for(requested, device)
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // requested))
    return requested


def make_stabilizer(stability: Optional[float]) -> Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``--stability`` -> ``f(original, stylized) -> stylized`` (optical-flow flicker removal), or None for 0.
    Unset means the default strength (``stabilize.strength_or_default``)."""
    from .stabilize import Stabilizer, strength_or_default

    stability = strength_or_default(stability)
    return Stabilizer(stability) if stability else None


# ---------------------------------------------------------------------------------------------------------
# The window: view, overlay, keys
# ---------------------------------------------------------------------------------------------------------
HELP = [("1-9  n  p", "switch style"), ("+  -", "strength"), ("c", "keep the camera's colours"),
        ("o", "side by side with the original"), ("s", "snapshot (PNG)"), ("r", "record on/off (MP4)"),
        ("f", "fullscreen"), ("h", "show/hide keys"), ("q  Esc", "quit")]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_text(img: np.ndarray, rows: Sequence[Union[str, Sequence[str]]], origin=(8, 8), scale: float = 0.5,
              tab: int = 90) -> None:
    """Text rows (a row may be columns, ``tab`` px apart) on a darkened box: readable on any painting."""
    rows = [[r] if isinstance(r, str) else list(r) for r in rows]
    line_h = int(24 * scale / 0.5)
    width = max(tab * (len(r) - 1) + cv2.getTextSize(r[-1], FONT, scale, 1)[0][0] for r in rows) + 12
    x, y = origin
    h, w = img.shape[:2]
    x1, y1 = min(w, x + width), min(h, y + line_h * len(rows) + 8)
    if x1 > x and y1 > y:
        img[y:y1, x:x1] = (img[y:y1, x:x1] * 0.35).astype(np.uint8)
    for i, r in enumerate(rows):
        for j, text in enumerate(r):
            cv2.putText(img, text, (x + 6 + j * tab, y + (i + 1) * line_h), FONT, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)


class LiveWindow:
    """The interactive sink: stylized view (or side by side), fps/latency overlay, keys, recording toggle."""

    def __init__(self, styler: LiveStyler, size: tuple[int, int], record_path: Optional[str] = None,
                 title: str = "stylecam", snapshot_dir: Path = Path(".")):
        self.styler = styler
        self.win = Window(title, size)
        self.side_by_side = False
        self.show_help = False
        self.snapshot_dir = snapshot_dir
        self.record_path = record_path
        self.recorder: Optional[RecordSink] = RecordSink(record_path) if record_path else None
        self.fps = 0.0
        self.latency_ms = 0.0
        self._t_prev = 0.0
        self._last: Optional[Processed] = None
        self.notice, self._notice_until = "", 0.0

    def _say(self, text: str, seconds: float = 2.5) -> None:
        self.notice, self._notice_until = text, time.perf_counter() + seconds
        print(f"stylecam: {text}", file=sys.stderr)

    def compose(self, p: Processed) -> np.ndarray:
        view = np.hstack([p.original, p.image]) if self.side_by_side else p.image
        return cv2.cvtColor(view, cv2.COLOR_RGB2BGR)

    def overlay(self, bgr: np.ndarray, banner: str = "") -> np.ndarray:
        st = self.styler
        line = (f"{st.stylizer.info.display_name}  {self.fps:4.1f} fps  {self.latency_ms:3.0f} ms  "
                f"scale {st.scale:.2f}{' auto' if st.auto else ''}  strength {st.strength:.1f}"
                f"{'  colours kept' if st.preserve_colors else ''}")
        lines = [line]
        if self.recorder is not None:
            lines.append("REC " + self.recorder.path)
        if time.perf_counter() < self._notice_until:
            lines.append(self.notice)
        elif st.message:
            lines.append(st.message[:100])
        if not self.show_help:
            lines.append("h: keys")
        draw_text(bgr, lines)
        if self.show_help:
            draw_text(bgr, HELP, origin=(8, 24 * len(lines) + 24))
        if banner:
            h, w = bgr.shape[:2]
            (tw, th), _ = cv2.getTextSize(banner, FONT, 0.9, 1)
            draw_text(bgr, [banner], origin=(max(0, (w - tw) // 2 - 6), h // 2 - th), scale=0.9)
        return bgr

    def send(self, p: Processed) -> None:
        if self.recorder is not None:
            self.recorder.send(p)
        now = time.perf_counter()
        if self._t_prev:
            inst = 1.0 / max(now - self._t_prev, 1e-6)
            self.fps = inst if not self.fps else 0.9 * self.fps + 0.1 * inst
        self._t_prev = now
        self.latency_ms = (now - p.t_capture) * 1000
        self._last = p
        self.win.show(self.overlay(self.compose(p)))
        self._keys()

    def idle(self, status: str) -> None:
        if status == "reconnecting" and self._last is not None:
            dim = (self.compose(self._last) * 0.4).astype(np.uint8)
            self.win.show(self.overlay(dim, banner="camera lost - reconnecting..."))
        self._keys()

    def _keys(self) -> None:
        k = self.win.key(1)
        # Check right after waitKey, which is where the close event is processed: the next imshow would
        # silently create the window again.
        if self.win.is_closed():
            raise StopPipeline
        if k == -1:
            return
        ch = chr(k)
        st = self.styler
        if ch in "q\x1b":
            raise StopPipeline
        elif ch in "123456789":
            st.select(int(ch) - 1)
        elif ch == "n":
            st.step(1)
        elif ch == "p":
            st.step(-1)
        elif ch in "+=":
            st.strength = round(min(1.0, st.strength + STRENGTH_STEP), 2)
        elif ch in "-_":
            st.strength = round(max(0.0, st.strength - STRENGTH_STEP), 2)
        elif ch == "c":
            st.preserve_colors = not st.preserve_colors
        elif ch == "o":
            self.side_by_side = not self.side_by_side
        elif ch == "h":
            self.show_help = not self.show_help
        elif ch == "f":
            self.win.toggle_fullscreen()
        elif ch == "s":
            self.snapshot()
        elif ch == "r":
            self.toggle_recording()

    def snapshot(self) -> Path:
        if self._last is None:
            return Path()
        path = self.snapshot_dir / time.strftime("stylecam-%Y%m%d-%H%M%S.png")
        n = 1
        while path.exists():
            path = path.with_name(time.strftime("stylecam-%Y%m%d-%H%M%S") + f"-{n}.png")
            n += 1
        ok, png = cv2.imencode(".png", self.compose(self._last))
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(png.tobytes())
        os.replace(tmp, path)  # never a half-written snapshot under the final name
        self._say(f"snapshot saved: {path}")
        return path

    def toggle_recording(self) -> None:
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            rec.close()
            self._say(f"recorded {rec.path} ({rec.frames_written} frames at {rec.fps or 0:.1f} fps)")
        else:
            path = self.record_path or str(self.snapshot_dir / time.strftime("stylecam-%Y%m%d-%H%M%S.mp4"))
            self.recorder = RecordSink(path)
            self._say(f"recording to {path}")

    def close(self) -> None:
        try:
            if self.recorder is not None:
                self.recorder.close()
                print(f"stylecam: recorded {self.recorder.path} ({self.recorder.frames_written} frames at "
                      f"{self.recorder.fps or 0:.1f} fps)", file=sys.stderr)
        finally:
            self.win.close()


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
    if args.no_window and not (args.record or args.virtual_cam or args.max_frames):
        print("stylecam: note: --no-window without --record, --virtual-cam or --max-frames runs until Ctrl-C",
              file=sys.stderr)

    def load(name: str):
        return engine.load(name, device=args.device, precision=args.precision, strength=args.strength,
                           preserve_colors=args.preserve_colors,
                           scale=1.0 if args.scale == "auto" else args.scale)

    workers = pick_workers(args.workers, engine.pick_device(args.device).type)
    styler = LiveStyler(installed, style, load, strength=args.strength, preserve_colors=args.preserve_colors,
                        scale=args.scale, target_fps=args.target_fps, stabilizer=make_stabilizer(args.stability),
                        workers=workers)
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
            sinks.append(LiveWindow(styler, source.size, record_path=args.record))
    except BaseException:
        source.stop()
        for s in sinks:
            s.close()
        raise

    pipeline = Pipeline(source, styler, sinks, max_frames=args.max_frames, workers=workers)
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
    print(f"stylecam: {stats.summary()}", file=sys.stderr)
    for s in sinks:
        if isinstance(s, RecordSink) and s.frames_written:
            print(f"stylecam: recorded {s.path} ({s.frames_written} frames at {s.fps:.1f} fps)", file=sys.stderr)
    return 130 if interrupted else 0
