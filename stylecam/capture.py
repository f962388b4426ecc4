"""Sources: every kind of input behind one protocol, and the capture thread that hands on the newest frame.

One protocol (``CaptureLike``, the part of ``cv2.VideoCapture`` we use) covers every source: a camera index,
a video file or URL (OpenCV), and a GIF / animated WebP / APNG, a still image or a folder of images
(``ImageCapture``, imageio). ``read_frames(spec)`` streams any of them as RGB frames (the flicker metric, the
bench); ``FrameSource`` runs one in a thread for live.

``FrameSource`` puts frames in a one-slot ``Mailbox``: a new frame replaces an unread one (counted as dropped),
so the consumer always gets the freshest picture and nothing queues up behind a slow stylizer.

* Cameras and streams pace themselves. When one stops delivering, the source reports ``"reconnecting"`` and
  reopens it with exponential backoff, then resumes.
* Video files are played at their native fps by default, like a camera (``realtime=True``): a slow consumer
  sees frames dropped, exactly as live. With ``realtime=False`` the file is read as fast as the consumer takes
  frames and none is dropped (the benchmark's and offline recording's mode): the slowest stage sets the rate.
  The next frame is read ahead but handed over (and its latency clock started) when a consumer asks for it.
  At the end of a file the source stops, or rewinds with ``loop=True``.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Optional, Protocol, TypeVar, Union

import cv2
import numpy as np

from .errors import StylecamError

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A one-slot hand-over between two threads. ``put`` overwrites (newest wins, the old item counts as
    dropped); ``put_wait`` blocks until the slot is free (lossless); ``get`` blocks until an item or close."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._full = False
        self._getters = 0  # consumers blocked in get (wait_demand)
        self.closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()

    def put_wait(self, item: T, timeout: Optional[float] = None) -> bool:
        """Lossless put: wait until the previous item was taken. False if closed or timed out."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._full or self.closed, timeout):
                return False
            if self.closed:
                return False
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def wait_demand(self, timeout: Optional[float] = None) -> bool:
        """Block until the slot is free and a consumer is waiting in ``get`` (True), or closed / timed out
        (False): a lossless producer that hands over only on demand leaves no item waiting in the slot."""
        with self._cond:
            self._cond.wait_for(lambda: (not self._full and self._getters > 0) or self.closed, timeout)
            return not self._full and self._getters > 0 and not self.closed

    def get(self, timeout: Optional[float] = None) -> Optional[T]:
        """The item, or None on timeout or when closed and empty."""
        with self._cond:
            self._getters += 1
            self._cond.notify_all()  # a producer in wait_demand
            try:
                self._cond.wait_for(lambda: self._full or self.closed, timeout)
            finally:
                self._getters -= 1
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclass
class CapturedFrame:
    """One RGB frame and when it happened: ``t_capture`` on the perf_counter clock (for latency) and
    ``t_media`` in seconds of video time (camera: wall clock since start; file: position in the file)."""

    index: int
    image: np.ndarray
    t_capture: float
    t_media: float
    options: Any = None  # what the frame is painted with (pipeline.FrameOptions), stamped as a worker takes it
    previous: Optional[np.ndarray] = None  # the image of the frame admitted before it (pipeline.Stages.admit)


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the source uses (tests pass fakes)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def release(self) -> None: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...


IMAGE_SUFFIXES = (".gif", ".webp", ".apng", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def parse_source(spec: Union[str, int, os.PathLike]) -> tuple[str, Union[int, str]]:
    """``"0"``/0 -> ("camera", 0); ``rtsp://...`` -> ("stream", url); a folder or an image/GIF file ->
    ("images", path); anything else -> ("file", path), a video."""
    if isinstance(spec, int):
        return "camera", spec
    s = os.fspath(spec).strip()
    if s.isdigit():
        return "camera", int(s)
    if "://" in s:
        return "stream", s
    if os.path.isdir(s) or s.lower().endswith(IMAGE_SUFFIXES):
        return "images", s
    return "file", s


class ImageCapture:
    """A GIF / animated WebP / APNG, a still image, or a folder of images (sorted by name) as a
    ``CaptureLike`` giving BGR frames like OpenCV. The fps comes from the first frame's duration (0 when a
    still or a folder says nothing)."""

    def __init__(self, path: str):
        self.path = path
        self.fps = 0.0
        self._it: Optional[Iterator[np.ndarray]] = None
        self._opened = os.path.exists(path)
        if self._opened and not os.path.isdir(path):
            import imageio.v3 as iio

            try:
                d = float(iio.immeta(path).get("duration") or 0)
                self.fps = 1000.0 / d if d > 10 else 0.0
            except (OSError, ValueError, TypeError):
                self._opened = False

    def _frames(self) -> Iterator[np.ndarray]:
        import imageio.v3 as iio

        files = ([os.path.join(self.path, f) for f in sorted(os.listdir(self.path)) if not f.startswith(".")]
                 if os.path.isdir(self.path) else [self.path])
        for f in files:
            try:
                frames = iio.imiter(f)
                for img in frames:
                    yield np.asarray(img)
            except (OSError, ValueError):
                if len(files) == 1:
                    return
                continue  # a folder's file that is not an image

    def isOpened(self) -> bool:
        return self._opened

    def read(self) -> tuple[bool, Any]:
        if not self._opened:
            return False, None
        if self._it is None:
            self._it = self._frames()
        img = next(self._it, None)
        if img is None:
            return False, None
        if img.ndim == 3 and img.shape[2] >= 3:
            img = np.ascontiguousarray(img[..., 2::-1])  # RGB(A) -> BGR, alpha dropped
        return True, img

    def release(self) -> None:
        self._it = None

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES and value == 0:
            self._it = None
            return True
        return False


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV logs several multi-line warnings per failed open; the user gets our one line instead."""
    log = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
    if log is None:
        yield
        return
    old = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(old)


def opencv_opener(kind: str, target: Union[int, str], width: Optional[int] = None, height: Optional[int] = None,
                  fps: Optional[float] = None) -> Callable[[], CaptureLike]:
    """A function that opens (and reopens) the capture, asking a camera for the requested size and fps."""

    def open_() -> CaptureLike:
        if kind == "images":
            return ImageCapture(str(target))
        with quiet_opencv():
            cap = cv2.VideoCapture(target)
            if kind == "camera" and cap.isOpened():
                if width:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                if height:
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                if fps:
                    cap.set(cv2.CAP_PROP_FPS, fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # drivers that honour it keep no stale frames either
        return cap

    return open_


def open_error(kind: str, target: Union[int, str]) -> str:
    """One line saying why a source gave no frame, and what to pass instead."""
    if kind == "camera":
        return (f"cannot open camera {target} (no such device, or it is busy); choose another with "
                f"--source N (a camera index such as 0 or 1), or pass a video file or URL to --source")
    if kind in ("file", "images") and not os.path.exists(target):
        return f"{target} does not exist; pass a camera index, video file, GIF, image, folder or URL to --source"
    return f"cannot read video from {target}; is it a video, GIF or image file (or stream) that can be decoded?"


def to_rgb(frame: np.ndarray, mirror: bool = False) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey) as RGB uint8."""
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return cv2.flip(rgb, 1) if mirror else rgb


def read_frames(spec: Union[str, int, os.PathLike], max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """Every RGB frame of a source (video, GIF, image, folder), in order and streamed: the offline form of
    ``FrameSource`` (the flicker metric, the bench). Raises StylecamError if it gives no frame."""
    kind, target = parse_source(spec)
    cap = opencv_opener(kind, target)()
    n = 0
    try:
        while cap.isOpened() and (max_frames is None or n < max_frames):
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            yield to_rgb(frame)
            n += 1
    finally:
        cap.release()
    if n == 0 and max_frames != 0:
        raise StylecamError(open_error(kind, target))


class FrameSource:
    """A capture thread feeding a one-slot mailbox. ``open()`` checks the source really delivers a frame
    (so size and errors are known before anything else starts); ``start()`` runs the thread."""

    def __init__(self, spec: Union[str, int, os.PathLike], *, width: Optional[int] = None,
                 height: Optional[int] = None, fps: Optional[float] = None, mirror: bool = False,
                 loop: bool = False, realtime: bool = True,
                 opener: Optional[Callable[[], CaptureLike]] = None, kind: Optional[str] = None,
                 backoff: tuple[float, float] = (0.25, 4.0), clock: Callable[[], float] = time.perf_counter):
        self.kind, self.target = parse_source(spec)
        if kind:
            self.kind = kind
        self.mirror = mirror
        self.finite = self.kind in ("file", "images")  # ends (or loops); cameras and streams go on
        self.loop = loop and self.finite
        self.realtime = realtime or not self.finite  # a camera cannot be asked to wait
        self.backoff = backoff
        self.clock = clock
        self._open = opener or opencv_opener(self.kind, self.target, width, height, fps)
        self.box: Mailbox[CapturedFrame] = Mailbox()
        self.status = "idle"  # idle | running | reconnecting | ended | stopped
        self.captured = 0
        self.reconnects = 0
        self.fps = 0.0  # native fps the source reports (0 if unknown)
        self.size: tuple[int, int] = (0, 0)  # (width, height)
        self._cap: Optional[CaptureLike] = None
        self._first: Optional[np.ndarray] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._media_offset = 0.0  # file time of the frames before the last rewind (--loop)
        self._t0 = 0.0

    @property
    def dropped(self) -> int:
        return self.box.dropped

    # -- opening -------------------------------------------------------------------------------------------
    def open(self) -> "FrameSource":
        cap = self._open()
        ok, frame = (cap.read() if cap is not None and cap.isOpened() else (False, None))
        if not ok or frame is None:
            if cap is not None:
                cap.release()
            raise StylecamError(self._open_error())
        self._cap = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < self.fps < 1000):
            self.fps = 0.0
        self._first = self._convert(frame)
        self.size = (self._first.shape[1], self._first.shape[0])
        return self

    def _open_error(self) -> str:
        return open_error(self.kind, self.target)

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        return to_rgb(frame, self.mirror)

    # -- the thread ------------------------------------------------------------------------------------------
    def start(self) -> "FrameSource":
        if self._cap is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="stylecam-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.box.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self.status != "ended":
            self.status = "stopped"

    def _deliver(self, image: np.ndarray, file_pos: int) -> None:
        now = self.clock()
        if self.finite and self.fps:
            t_media = self._media_offset + file_pos / self.fps
        else:
            t_media = now - self._t0
        self.captured += 1
        self.box.put(CapturedFrame(self.captured - 1, image, now, t_media))

    def _wait_for_consumer(self) -> bool:
        """Lossless mode: hand the next frame (already read and converted) over only when the last one was
        taken and a worker asks for the next. A frame stamped and left in the slot would wait there for a worker
        to come free (half a worker's frame time, on average, when they are the bottleneck) and count that
        queueing as latency, which a camera's newest-wins slot never builds up."""
        while not self._stop.is_set():
            if self.box.wait_demand(timeout=0.1):
                return True
            if self.box.closed:
                return False
        return False

    def _run(self) -> None:
        self.status = "running"
        self._t0 = self.clock()
        pace = 1.0 / self.fps if (self.finite and self.realtime and self.fps) else 0.0
        next_due = self.clock()
        pos = 0  # frame number within the current pass over a file
        pending = self._first
        while not self._stop.is_set():
            if pending is None:
                ok, raw = self._cap.read() if self._cap is not None else (False, None)
                if not ok or raw is None:
                    if self.finite:
                        if self.loop and pos > 0:
                            self._rewind(pos)
                            pos = 0
                            continue
                        self.status = "ended"
                        break
                    if not self._reconnect():
                        break
                    continue
                pending = self._convert(raw)
            if not self.realtime and not self._wait_for_consumer():
                break
            if pace:
                delay = next_due - self.clock()
                if delay > 0 and self._pause(delay):
                    break
                next_due = max(next_due + pace, self.clock() - pace)  # never burst to catch up
            self._deliver(pending, pos)
            pending = None
            pos += 1
        self.box.close()

    def _rewind(self, frames_played: int) -> None:
        self._media_offset += frames_played / (self.fps or 25.0)
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self._cap.release()
            self._cap = self._open()

    def _pause(self, seconds: float) -> bool:
        """Wait (pacing, reconnect backoff); True if stopped meanwhile. Tests replace it to run on a fake clock."""
        return self._stop.wait(seconds)

    def _reconnect(self) -> bool:
        """Camera/stream stopped delivering: reopen with exponential backoff until it works or we stop."""
        self.status = "reconnecting"
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        delay, cap_delay = self.backoff
        while not self._pause(delay):
            try:
                cap = self._open()
                ok, raw = cap.read() if cap is not None and cap.isOpened() else (False, None)
            except Exception:  # a flaky driver may throw from open/read; keep trying
                cap, ok, raw = None, False, None
            if ok and raw is not None:
                self._cap = cap
                self.reconnects += 1
                self.status = "running"
                self._deliver(self._convert(raw), 0)
                return True
            if cap is not None:
                cap.release()
            delay = min(delay * 2, cap_delay)
        return False
