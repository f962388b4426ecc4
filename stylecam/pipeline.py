"""The one frame path: a source, two typed stages run by one ordered worker runner, and sinks.

::

    source ──▶ worker 1: stylize ─┐                                     ┌──▶ window (ui.LiveWindow)
    camera,    worker 2: stylize ─┴──▶ finish, one at a time, ──▶ out ──┼──▶ MP4 (sinks.RecordSink)
    file, URL,  (any order, one        in frame order (stabilizer       └──▶ virtual camera / caller
    GIF, image, core each; net and     blend, style cross-fade)
    folder       stabilizer flow)

Runner API - live, bench, convert and the flicker metric all run frames through it::

    from stylecam.pipeline import run_ordered

    # lossless (files): every item, results in input order, at most ~2*workers items in flight
    for item, y in run_ordered(items, stylize, finish, workers=2):
        write(y)

* ``stylize(item) -> s`` runs for up to ``workers`` items at once, in any order: keep it free of shared state.
* ``finish(item, s) -> y`` runs one call at a time, in item order (it may keep state: the flicker
  stabilizer). ``finish=None`` yields ``s`` itself.
* ``items`` is iterated under a lock from the worker threads. An exception in ``items``, ``stylize`` or
  ``finish`` stops every worker and is raised by the ``for`` loop; leaving the loop early (``break``,
  Ctrl-C) stops the workers too.
* ``lossless=False`` (live): a result the consumer has not taken yet is replaced by the next one (newest
  wins, counted in ``OrderedRunner.dropped``). Live feeds the runner from the capture's one-slot ``Mailbox``
  instead of an iterable: ``OrderedRunner(source.box, ..., lossless=False)`` (see ``Pipeline``).

Live stages: ``Stages.admit`` stamps each frame with its ``FrameOptions`` (style, strength, colours, scale)
as a worker takes it, so the settings travel with the frame and no worker writes options onto the shared
``Stylizer``. ``stylize`` returns ``Stylized(image, style)`` - the style that frame was really painted with -
and ``finish`` resets the stabilizer exactly at the first frame, in frame order, whose style differs.

Pipeline (stable; ``stylecam bench`` uses it)::

    stats = Pipeline(FrameSource("clip.mp4", realtime=False), stylizer, [NullSink()], max_frames=300).run()
    stats.fps, stats.latency_ms_median, stats.latency_ms_p90, stats.dropped, stats.as_dict()

``stages`` is a ``Stages`` or any RGB frame -> frame callable (wrapped in ``PerFrame``). ``run()`` blocks until
the source ends, ``max_frames`` frames reached the sinks, a sink raises ``StopPipeline`` or ``stop()`` is
called (thread- and signal-handler-safe), then closes every sink before raising a worker's error.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Generic, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import cv2
import numpy as np

from .capture import CapturedFrame, FrameSource, Mailbox
from .errors import StylecamError
from .sinks import NullSink, Processed, Sink, StopPipeline
from .stabilize import Prepared, Stabilizer

T = TypeVar("T")
S = TypeVar("S")
U = TypeVar("U")
_END = object()
FADE_SECONDS = 0.4  # style cross-fade, in media time (seconds of video), so it is the same at any speed


# ---------------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------------
class OrderedRunner(Generic[T, S, U]):
    """``workers`` threads: take an item (with a ticket), ``stylize`` it, then ``finish`` and hand it on in
    ticket order. See the module docstring for the contract; ``run_ordered`` is the iterator form."""

    def __init__(self, source: Union[Iterable[T], Mailbox], stylize: Callable[[T], S],
                 finish: Optional[Callable[[T, S], U]] = None, workers: int = 1, lossless: bool = True,
                 admit: Optional[Callable[[T], T]] = None):
        self._box = source if isinstance(source, Mailbox) else None
        self._items = None if self._box is not None else iter(source)
        self.stylize, self.finish, self.admit = stylize, finish, admit
        self.workers = max(1, int(workers))
        self.lossless = lossless
        self.out: Mailbox[tuple] = Mailbox()
        self.error: Optional[BaseException] = None
        self.processed = 0
        self.finished = False  # True once every result was taken and no more will come
        self._stop = threading.Event()
        self._take = threading.Lock()
        self._turn = threading.Condition()
        self._tickets = 0
        self._next = 0
        self._alive = 0
        self._threads: List[threading.Thread] = []

    @property
    def dropped(self) -> int:
        return self.out.dropped

    def start(self) -> "OrderedRunner[T, S, U]":
        self._alive = self.workers
        self._threads = [threading.Thread(target=self._work, name=f"stylecam-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Ask every worker to end (safe from any thread or a signal handler)."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()
        self.out.close()

    def join(self, timeout: float = 10.0) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def get(self, timeout: Optional[float] = None):
        """The next ``(item, result)``, or None on timeout or at the end (then ``finished`` is set); raises a
        worker's error once the results before it were taken."""
        r = self.out.get(timeout)
        if r is None and self.out.closed:
            r = self.out.get(0)  # one put just before the close
            if r is None:
                self.finished = True
                if self.error is not None:
                    raise self.error
        return r

    def __iter__(self) -> Iterator[tuple]:
        while True:
            r = self.get(timeout=0.1)
            if r is not None:
                yield r
            elif self.finished:
                return

    def _take_one(self):
        """``(ticket, item)``; None when nothing arrived yet (live); ``_END`` at the end of the input."""
        with self._take:
            if self._box is not None:
                item = self._box.get(timeout=0.1)
                if item is None:
                    return _END if self._box.closed else None
            else:
                item = next(self._items, _END)
                if item is _END:
                    return _END
            if self.admit is not None:
                item = self.admit(item)  # under the lock: options are stamped in ticket order
            ticket, self._tickets = self._tickets, self._tickets + 1
            return ticket, item

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                got = self._take_one()
                if got is _END:
                    break
                if got is None:
                    continue
                ticket, item = got
                s = self.stylize(item)
                with self._turn:
                    self._turn.wait_for(lambda: self._next == ticket or self._stop.is_set())
                    if self._stop.is_set():
                        break
                    try:
                        self._emit((item, self.finish(item, s) if self.finish is not None else s))
                    finally:
                        self._next += 1
                        self._turn.notify_all()
        except BaseException as e:  # raised to the consumer by get()
            if self.error is None:
                self.error = e
            self.stop()
        finally:
            with self._turn:
                self._alive -= 1
                last = self._alive == 0
            if last:
                self.out.close()

    def _emit(self, r: tuple) -> None:
        self.processed += 1
        if not self.lossless:
            self.out.put(r)
            return
        while not self.out.put_wait(r, timeout=0.1):
            if self._stop.is_set() or self.out.closed:
                return


def workers_for(requested: Optional[int], device: str) -> int:
    """How many inference workers to run (no side effects): 2 on a multi-core CPU, else 1."""
    if requested is None:
        requested = 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    if requested < 1:
        raise StylecamError(f"--workers must be at least 1, got {requested}")
    return requested


@contextlib.contextmanager
def worker_threads(requested: Optional[int], device: str) -> Iterator[int]:
    """``with worker_threads(args.workers, "cpu") as workers:`` - the worker count, with torch's intra-op
    threads set to share the cores among the workers, restored on exit (the bench times nets after pipelines).

    On CPU two workers of one thread each stylize more frames per second than one worker of two threads (the
    fast net's small convs do not split well across cores; OpenVINO gets one stream per worker). GPUs keep one
    worker. Load styles inside the block: OpenVINO compiles for the thread count it sees then. OpenCV gets the
    same share: the workers run the stabilizer's flow and warps, and OpenCV's own pool (a thread per core) inside
    them competed with the other worker's net (live with the stabilizer ran about 5% slower).
    """
    import torch

    workers = workers_for(requested, device)
    before = torch.get_num_threads(), cv2.getNumThreads()
    if device == "cpu":
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        cv2.setNumThreads(share)
    try:
        yield workers
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def run_ordered(items: Iterable[T], stylize: Callable[[T], S], finish: Optional[Callable[[T, S], U]] = None,
                workers: int = 1, lossless: bool = True) -> Iterator[tuple]:
    """``(item, finish(item, stylize(item)))`` for every item, in input order; ``workers`` stylize at once.
    The usage is in the module docstring."""
    runner = OrderedRunner(items, stylize, finish, workers, lossless).start()
    try:
        yield from runner
    finally:
        runner.stop()
        runner.join()


def with_previous(items: Iterable[T]) -> Iterator[Tuple[Optional[T], T]]:
    """``(previous, item)`` pairs, ``previous`` None for the first: how a worker that stylizes a frame also
    gets the frame before it (the stabilizer's flow) without state shared between workers."""
    previous = None
    for item in items:
        yield previous, item
        previous = item


# ---------------------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameOptions:
    """What one frame is painted with, fixed when a worker takes it."""

    style: str
    strength: float = 1.0
    preserve_colors: bool = False
    scale: float = 1.0


@dataclass
class Stylized:
    """The order-free stage's output: the painted frame, the style it was really painted with, and the
    stabilizer's share of the work that needs no earlier output (``Stabilizer.prepare``)."""

    image: np.ndarray
    style: str = ""
    prepared: Optional[Prepared] = None
    seconds: float = 0.0  # how long the stage took (``--scale auto`` weighs it with the finish)


class Stages:
    """The frame path's two stages on ``CapturedFrame``s: ``stylize`` (parallel, any order: the subclass's
    ``paint``, then the optional flicker ``stabilizer``'s flow) and ``finish`` (in frame order: the
    stabilizer's blend with the previous output). ``admit`` runs as a worker takes the frame, in frame order;
    it hands each frame its predecessor's image, so the flow needs no state shared between workers."""

    stabilizer: Optional[Stabilizer] = None
    _previous: Optional[np.ndarray] = None

    def admit(self, frame: CapturedFrame) -> CapturedFrame:
        frame.previous, self._previous = self._previous, frame.image
        return frame

    def paint(self, frame: CapturedFrame) -> Stylized:
        raise NotImplementedError

    def stylize(self, frame: CapturedFrame) -> Stylized:
        t = time.perf_counter()
        s = self.paint(frame)
        if self.stabilizer is not None:
            s.prepared = self.stabilizer.prepare(frame.previous, frame.image, s.image)
        s.seconds = time.perf_counter() - t
        return s

    def finish(self, frame: CapturedFrame, s: Stylized) -> np.ndarray:
        return s.image if self.stabilizer is None else self.stabilizer.apply(s.prepared)


class PerFrame(Stages):
    """A frame -> frame function (a ``Stylizer``), optionally stabilized: bench and tests."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], stabilizer: Optional[Stabilizer] = None):
        self.fn, self.stabilizer = fn, stabilizer

    def paint(self, frame: CapturedFrame) -> Stylized:
        return Stylized(self.fn(frame.image))


class LiveStages(Stages):
    """Live mode's stages and the controls the UI sets (``select``/``step``, ``strength``,
    ``preserve_colors``). A style is loaded when first chosen, in a background thread: loading converts and
    compiles the net (a second or more), and frames keep the current style meanwhile instead of the view
    freezing. One that fails to load is reported in ``message`` and the current style stays."""

    def __init__(self, styles: Sequence[str], current: str, load: Callable[[str], Callable],
                 strength: float = 1.0, preserve_colors: bool = False, scale: float = 1.0, auto=None,
                 stabilizer: Optional[Stabilizer] = None, fade_seconds: float = FADE_SECONDS):
        self.styles = list(styles) if current in styles else [current] + list(styles)
        self.index = self.styles.index(current)  # the style new frames get
        self._load = load
        self._cache = {current: load(current)}
        self.strength = strength
        self.preserve_colors = preserve_colors
        self.auto = auto  # a ScaleController (``--scale auto``) or None
        self.fixed_scale = float(scale)
        self.stabilizer = stabilizer
        self.fade_seconds = fade_seconds
        self.message = ""  # a style loading, or the last problem (a style that failed to load): shown in the window
        self._want = self.index
        self._loader: Optional[threading.Thread] = None
        self._loading = False
        self._load_lock = threading.Lock()
        # finish's state (frame order only)
        self._style: Optional[str] = None
        self._last: Optional[np.ndarray] = None
        self._fade_from: Optional[np.ndarray] = None
        self._fade_t0 = 0.0

    @property
    def scale(self) -> float:
        return self.auto.scale if self.auto else self.fixed_scale

    def info(self, style: Optional[str] = None):
        """The ``StyleInfo`` of a loaded style (default: the current one)."""
        return self._cache[style or self.styles[self.index]].info

    def select(self, i: int) -> None:
        if 0 <= i < len(self.styles):
            self._want = i
            self._load_wanted()

    def step(self, delta: int) -> None:
        self._want = (self._want + delta) % len(self.styles)
        self._load_wanted()

    def wait_loaded(self, timeout: float = 30.0) -> None:
        """Until no style is loading (or ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while self._loading and time.monotonic() < end:
            loader = self._loader
            if loader is not None:
                loader.join(max(0.0, end - time.monotonic()))

    def _load_wanted(self) -> None:
        """Start loading the chosen style unless it is loaded or a load is running (that one starts the next
        when it ends: the user may press keys faster than styles load)."""
        with self._load_lock:
            name = self.styles[self._want]
            if name in self._cache or self._loading:
                return
            self._loading = True
            self.message = f"loading {name}..."
            self._loader = threading.Thread(target=self._load_in_background, args=(name,), name="stylecam-load",
                                            daemon=True)
            self._loader.start()

    def _load_in_background(self, name: str) -> None:
        try:
            self._cache[name] = self._load(name)
            self.message = ""
        except Exception as e:  # shown, never fatal: live goes on with the current style
            self.message = str(e) if isinstance(e, StylecamError) else f"cannot load style {name}: {e}"
            if self.styles[self._want] == name:
                self._want = self.index
        finally:
            with self._load_lock:
                self._loading = False
        self._load_wanted()  # a style chosen while this one loaded

    def options(self) -> FrameOptions:
        """The settings the next frame gets: the chosen style once it is loaded."""
        want = self._want
        if want != self.index and self.styles[want] in self._cache:
            self.index = want
        return FrameOptions(self.styles[self.index], self.strength, self.preserve_colors, self.scale)

    def admit(self, frame: CapturedFrame) -> CapturedFrame:
        frame.options = self.options()
        return super().admit(frame)

    def paint(self, frame: CapturedFrame) -> Stylized:
        o: FrameOptions = frame.options
        y = self._cache[o.style](frame.image, strength=o.strength, preserve_colors=o.preserve_colors,
                                 scale=o.scale)
        return Stylized(y, o.style)

    def finish(self, frame: CapturedFrame, s: Stylized) -> np.ndarray:
        """Flicker removal and the style cross-fade. At the first frame of a new style the stabilizer forgets
        the old style's strokes and the fade starts from the old style's last frame. ``--scale auto`` is fed
        the frame's whole cost, both stages: the stabilizer's share does not shrink with the scale."""
        t = time.perf_counter()
        if s.style != self._style:
            if self._style is not None:
                if self.stabilizer is not None:
                    self.stabilizer.reset()
                if self.fade_seconds > 0:
                    self._fade_from, self._fade_t0 = self._last, frame.t_media
            self._style = s.style
        y = self._last = super().finish(frame, s)
        if self._fade_from is not None:
            a = (frame.t_media - self._fade_t0) / self.fade_seconds
            if not 0 <= a < 1 or self._fade_from.shape != y.shape:
                self._fade_from = None
            else:
                y = cv2.addWeighted(self._fade_from, 1 - a, y, a, 0)
        if self.auto:
            self.auto.update(s.seconds + time.perf_counter() - t)
        return y


# ---------------------------------------------------------------------------------------------------------
# Live runtime: source thread -> runner -> sinks in the calling thread
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
    """capture -> stylize -> finish -> sinks, overlapped in threads. See the module docstring."""

    def __init__(self, source: Union[FrameSource, str, int], stages: Union[Stages, Callable],
                 sinks: Sequence[Sink] = (), max_frames: Optional[int] = None, workers: int = 1):
        self.source = source if isinstance(source, FrameSource) else FrameSource(source)
        self.stages = stages if isinstance(stages, Stages) else PerFrame(stages)
        self.sinks = list(sinks) or [NullSink()]
        self.max_frames = max_frames
        self.workers = max(1, int(workers))
        self.runner: Optional[OrderedRunner] = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the run to end; safe from any thread or a signal handler."""
        self._stop.set()
        if self.runner is not None:
            self.runner.stop()

    def run(self) -> PipelineStats:
        src, st = self.source, self.stages
        src.start()
        runner = self.runner = OrderedRunner(src.box, st.stylize, st.finish, self.workers,
                                             lossless=not src.realtime, admit=st.admit).start()
        if self._stop.is_set():
            runner.stop()
        latencies: List[float] = []
        shown, t_first, t_last = 0, 0.0, 0.0
        t_start = time.perf_counter()
        errors: List[BaseException] = []
        try:
            while not self._stop.is_set():
                r = runner.get(timeout=0.03)
                if r is None:
                    if runner.finished:
                        break
                    for s in self.sinks:
                        s.idle(src.status)
                    continue
                f, y = r
                p = Processed(f.index, f.image, y, f.t_capture, f.t_media,
                              getattr(f.options, "style", ""))
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
        except BaseException as e:  # a worker's error: close the sinks (finalize recordings) first
            errors.append(e)
        finally:
            self._stop.set()
            src.stop()
            runner.stop()
            runner.join()
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:
                    errors.append(e)
        if errors:
            raise errors[0]
        lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
        fps = (shown - 1) / (t_last - t_first) if shown > 1 and t_last > t_first else 0.0
        # overwritten in a mailbox before anyone took them; frames still in flight when a run is stopped
        # (max_frames, Ctrl-C) were not dropped
        return PipelineStats(captured=src.captured, processed=runner.processed, shown=shown,
                             dropped=src.dropped + runner.dropped, fps=fps,
                             latency_ms_median=float(np.median(lat)), latency_ms_p90=float(np.percentile(lat, 90)),
                             elapsed_s=time.perf_counter() - t_start, reconnects=src.reconnects)
