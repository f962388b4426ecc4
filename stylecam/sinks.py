"""Where stylized frames go: nowhere (benchmark), an MP4 file, a virtual camera (the window: ``stylecam.ui``).

Every sink has ``send(frame: Processed)``, ``idle(status)`` (called while no frame arrives, e.g. while the
camera reconnects, so a window stays responsive) and ``close()``. A sink ends the run by raising
``StopPipeline``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, Protocol

import cv2
import numpy as np

from .errors import StylecamError


class StopPipeline(Exception):
    """Raised by a sink (window closed, q pressed) to end the run cleanly."""


@dataclass
class Processed:
    """A captured frame and its stylized version. Times as in ``capture.CapturedFrame``."""

    index: int
    original: np.ndarray
    image: np.ndarray
    t_capture: float
    t_media: float
    style: str = ""  # the style this frame was painted with


class Sink(Protocol):
    def send(self, frame: Processed) -> None: ...
    def idle(self, status: str) -> None: ...
    def close(self) -> None: ...


class NullSink:
    """Takes frames and does nothing: the headless end of the benchmark's pipeline."""

    def send(self, frame: Processed) -> None:
        pass

    def idle(self, status: str) -> None:
        pass

    def close(self) -> None:
        pass


class RecordSink:
    """An MP4 at the frame rate actually achieved.

    The rate is only known once frames flow, so the first ``probe_seconds`` of frames are held back, the rate
    is measured from their media timestamps and the file is opened with it. After that frames are placed on
    that rate's time grid (a late frame is repeated, an early one dropped) so playback speed stays right even
    if the machine slows down mid-recording. A gap over a second (camera reconnecting) is cut, not frozen.
    """

    def __init__(self, path: str | os.PathLike, fallback_fps: float = 30.0, probe_seconds: float = 1.0,
                 max_probe_frames: int = 60, quiet: bool = False):
        from .videoio import VideoWriter  # noqa: F401  (fail early if the writer is missing)

        self.path = os.fspath(path)
        self.fallback_fps = fallback_fps
        self.probe_seconds = probe_seconds
        self.max_probe_frames = max_probe_frames
        self.quiet = quiet
        self.fps: Optional[float] = None
        self.frames_written = 0
        self._held: list[tuple[float, np.ndarray]] = []
        self._writer = None
        self._t0 = 0.0

    def send(self, frame: Processed) -> None:
        if self._writer is None:
            self._held.append((frame.t_media, frame.image))
            n, span = len(self._held), self._held[-1][0] - self._held[0][0]
            if (span >= self.probe_seconds and n >= 5) or span >= 4 * self.probe_seconds \
                    or n >= self.max_probe_frames:
                self._start()
        else:
            self._write(frame.t_media, frame.image)

    def idle(self, status: str) -> None:
        pass

    def measured_fps(self) -> float:
        """The rate frames arrive at: median interval, so a slow first (warm-up) frame does not skew it."""
        gaps = np.diff([t for t, _ in self._held])
        gaps = gaps[gaps > 0]
        if len(gaps):
            return float(min(120.0, max(1.0, round(1.0 / float(np.median(gaps)), 2))))
        return self.fallback_fps

    def _start(self) -> None:
        from .videoio import VideoWriter

        self.fps = self.measured_fps()
        self._writer = VideoWriter(self.path, self.fps)
        if not self.quiet:
            print(f"stylecam: recording {self.path} at {self.fps:g} fps (the rate measured)", file=sys.stderr)
        held, self._held = self._held, []
        self._t0 = held[0][0]
        for t, img in held:
            self._write(t, img)

    def _write(self, t: float, image: np.ndarray) -> None:
        due = int(round((t - self._t0) * self.fps)) + 1  # frames the file should hold once this one is in
        if due - self.frames_written > self.fps:  # gap of over a second: continue from here, no frozen frame
            self._t0 = t - self.frames_written / self.fps
            due = self.frames_written + 1
        for _ in range(due - self.frames_written):
            self._writer.write(image)
            self.frames_written += 1

    def close(self) -> None:
        """Finalize the file (also for a recording shorter than the probe)."""
        if self._writer is None and self._held:
            self._start()
        if self._writer is not None:
            self._writer.close()
            if self._writer.replaced and not self.quiet:
                print(f"stylecam: replaced the earlier {self.path}", file=sys.stderr)
            self._writer = None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._held = []


class VirtualCamSink:
    """Sends frames to a virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS)."""

    def __init__(self, width: int, height: int, fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise StylecamError("--virtual-cam needs the pyvirtualcam package: pip install 'stylecam[virtualcam]'"
                                ) from None
        try:
            self.cam = pyvirtualcam.Camera(width=width, height=height, fps=fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except Exception as e:  # pyvirtualcam reports a missing backend/device as RuntimeError
            detail = " ".join(str(e).split())[:160]
            raise StylecamError(f"--virtual-cam: no virtual camera device is available ({detail}); on Linux "
                                f"load v4l2loopback (sudo modprobe v4l2loopback exclusive_caps=1), elsewhere "
                                f"install OBS Studio's virtual camera") from None
        self.size = (width, height)

    def send(self, frame: Processed) -> None:
        img = frame.image
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_LINEAR)
        self.cam.send(np.ascontiguousarray(img))

    def idle(self, status: str) -> None:
        pass

    def close(self) -> None:
        self.cam.close()
