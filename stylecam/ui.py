"""Live mode's window: the view, the HUD, keys, snapshots and the recording toggle.

OpenCV's highgui (Qt here) draws the window. On X11 a second, tiny Xlib connection (``X11Events``) watches
the same window, because highgui alone loses things: ``waitKey`` keeps only the last of the keys that arrived
while a frame was being painted (three quick ``-`` made 0.8, not 0.7), and a window destroyed from outside
(``xdotool windowclose``, a crashed window manager) still reads as visible, so the run went on headless.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np

from .atomic import save_file
from .errors import StylecamError
from .sinks import Processed, RecordSink, StopPipeline

STRENGTH_STEP = 0.1
MIN_VIEW = (640, 360)  # smaller sources are shown enlarged (up to this), so the HUD and the key help fit
HELP = [("1-9  n  p", "switch style"), ("+  -", "strength"), ("c", "keep the camera's colours"),
        ("o", "side by side with the original"), ("s", "snapshot (PNG)"), ("r", "record on/off (MP4)"),
        ("f", "fullscreen"), ("h", "show/hide keys"), ("q  Esc", "quit")]
FONT = cv2.FONT_HERSHEY_SIMPLEX


# ---------------------------------------------------------------------------------------------------------
# X11: is there a display, and the window's own key and destroy events
# ---------------------------------------------------------------------------------------------------------
def _xlib():
    """libX11 through ctypes, or None (not X11, or not installed)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("X11")
    if not name:
        return None
    x = ctypes.CDLL(name)
    vp, ul = ctypes.c_void_p, ctypes.c_ulong
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = vp, [ctypes.c_char_p]
    x.XCloseDisplay.argtypes = x.XPending.argtypes = x.XFlush.argtypes = [vp]
    x.XDefaultRootWindow.restype, x.XDefaultRootWindow.argtypes = ul, [vp]
    x.XQueryTree.argtypes = [vp, ul, ctypes.POINTER(ul), ctypes.POINTER(ul), ctypes.POINTER(ctypes.POINTER(ul)),
                             ctypes.POINTER(ctypes.c_uint)]
    x.XGetWMName.argtypes = [vp, ul, vp]
    x.XSelectInput.argtypes = [vp, ul, ctypes.c_long]
    x.XNextEvent.argtypes = [vp, vp]
    x.XLookupString.argtypes = [vp, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ul), vp]
    x.XFree.argtypes = [vp]
    x.XUnmapWindow.argtypes = x.XMapWindow.argtypes = [vp, ul]
    x.XInternAtom.restype, x.XInternAtom.argtypes = ul, [vp, ctypes.c_char_p, ctypes.c_int]
    x.XGetSelectionOwner.restype, x.XGetSelectionOwner.argtypes = ul, [vp, ul]
    x.XGetWindowProperty.argtypes = [vp, ul, ul, ctypes.c_long, ctypes.c_long, ctypes.c_int, ul, ctypes.POINTER(ul),
                                     ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ul), ctypes.POINTER(ul),
                                     ctypes.POINTER(ctypes.c_void_p)]
    return x


_held: List[int] = []  # check_display's connection, kept open for X11Events


def check_display() -> None:
    """Fail with one line when no window can be opened: without a display Qt aborts the whole process
    (exit 134) before OpenCV can raise anything we could catch. The probe's connection stays open (it becomes
    ``X11Events``' own): an X server left with no client resets, and a bare one (Xvfb, a kiosk's ``xinit``) that
    our closing probe emptied refused Qt's connection a moment later, which aborted the run."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        return
    x = _xlib()
    display = os.environ.get("DISPLAY")
    if display and x is not None:
        if _held:
            return
        d = x.XOpenDisplay(None)
        if d:
            _held.append(d)
            return
    elif display:  # no libX11 to ask; let Qt try
        return
    where = f"cannot connect to display {display}" if display else "no display (DISPLAY is not set)"
    raise StylecamError(f"{where}, so there is no window to show; use --no-window (with --record or "
                        f"--virtual-cam) to run headless")


class _XTextProperty(ctypes.Structure):
    _fields_ = [("value", ctypes.c_void_p), ("encoding", ctypes.c_ulong), ("format", ctypes.c_int),
                ("nitems", ctypes.c_ulong)]


class X11Events:
    """Our own Xlib connection selecting KeyPress and StructureNotify on the window titled ``title``: X
    queues every key press for each client that asked, so none is lost, and DestroyNotify says it is gone."""

    KEY_PRESS, DESTROY_NOTIFY = 2, 17
    MASK = 1 | (1 << 17)  # KeyPressMask | StructureNotifyMask

    def __init__(self, title: str):
        self.title = title.encode()
        self.x = _xlib() if os.environ.get("DISPLAY") else None
        self.d = (_held.pop() if _held else self.x.XOpenDisplay(None)) if self.x is not None else None
        self.windows: List[int] = []
        self.destroyed = False
        self._tries = 0
        self._t_attach = 0.0
        self._remap_decided = False

    @property
    def active(self) -> bool:
        return bool(self.windows)

    def _find(self, w: int, depth: int = 0) -> List[int]:
        x = self.x
        prop = _XTextProperty()
        found = []
        if x.XGetWMName(self.d, w, ctypes.byref(prop)) and prop.value:
            if ctypes.string_at(prop.value, prop.nitems) == self.title:
                found.append(w)
            x.XFree(prop.value)
        tree = self._tree(w) if depth < 4 else None
        for k in tree[2] if tree else []:
            found += self._find(k, depth + 1)
        return found

    def _tree(self, w: int) -> Optional[tuple]:
        """XQueryTree: (root, parent, children) of window ``w``, or None."""
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, n = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        if not self.x.XQueryTree(self.d, w, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children),
                                 ctypes.byref(n)):
            return None
        kids = [children[i] for i in range(n.value)]
        if children:
            self.x.XFree(children)
        return root.value, parent.value, kids

    def attach(self) -> bool:
        """Find the window once it exists (call after it was shown); gives up after a few hundred tries."""
        if self.d is None or self.windows or self._tries > 300:
            self._remap_once()
            return bool(self.windows)
        self._tries += 1
        self.windows = self._find(self.x.XDefaultRootWindow(self.d))
        for w in self.windows:
            self.x.XSelectInput(self.d, w, self.MASK)
        self.x.XFlush(self.d)
        self._t_attach = time.monotonic()
        self._remap_once()
        return bool(self.windows)

    def _remap_once(self) -> None:
        """Without a window manager, map the window afresh once, a moment after its first frame. On a bare X
        server (Xvfb, a kiosk's ``xinit``) Qt painted nothing in a few starts in a hundred (more under load):
        frames kept coming and the window stayed black; more Expose events did not help, a new map showed the
        frames at once. A window manager maps the window itself (and may re-place a remapped one), so this
        only runs where there is none."""
        if not self.windows or self._remap_decided or time.monotonic() - self._t_attach < 1.0:
            return
        self._remap_decided = True
        if self._window_manager():
            return
        for w in self.windows:
            self.x.XUnmapWindow(self.d, w)
            self.x.XMapWindow(self.d, w)
        self.x.XFlush(self.d)

    def _window_manager(self) -> bool:
        """A reparenting manager framed the window; an ICCCM one owns WM_S0; an EWMH one names itself on the root."""
        x, d = self.x, self.d
        for w in self.windows:
            tree = self._tree(w)
            if tree and tree[1] != tree[0]:
                return True
        if x.XGetSelectionOwner(d, x.XInternAtom(d, b"WM_S0", 0)):
            return True
        kind, fmt, n, after = ctypes.c_ulong(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.c_void_p()
        x.XGetWindowProperty(d, x.XDefaultRootWindow(d), x.XInternAtom(d, b"_NET_SUPPORTING_WM_CHECK", 0), 0, 1, 0,
                             0, ctypes.byref(kind), ctypes.byref(fmt), ctypes.byref(n), ctypes.byref(after),
                             ctypes.byref(data))
        if data.value:
            x.XFree(data)
        return n.value > 0

    def keys(self) -> List[str]:
        """Every key typed since the last call, as characters (Esc is ``"\\x1b"``), in order."""
        out: List[str] = []
        if not self.windows:
            return out
        x, ev = self.x, (ctypes.c_long * 24)()
        while x.XPending(self.d):
            x.XNextEvent(self.d, ev)
            kind = ctypes.cast(ev, ctypes.POINTER(ctypes.c_int))[0]
            if kind == self.KEY_PRESS:
                buf, sym = ctypes.create_string_buffer(8), ctypes.c_ulong()
                n = x.XLookupString(ev, buf, 8, ctypes.byref(sym), None)
                out += list(buf.raw[:n].decode("latin-1"))
            elif kind == self.DESTROY_NOTIFY and ev[5] in self.windows:  # XDestroyWindowEvent.window
                self.destroyed = True
        return out

    def close(self) -> None:
        if self.d is not None:
            self.x.XCloseDisplay(self.d)
            self.d, self.windows = None, []


class Window:
    """A thin OpenCV highgui window: show a BGR image, read the keys typed, notice when it was closed."""

    def __init__(self, title: str, size: tuple[int, int]):
        check_display()
        self.title = title
        self._shown = False
        self.fullscreen = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as e:
            raise StylecamError(f"cannot open a window ({' '.join(str(e).split())[-120:]}); run with --no-window "
                                f"for headless use, or install an OpenCV build with GUI support") from None
        cv2.resizeWindow(title, *size)
        self.events = X11Events(title)

    def show(self, bgr: np.ndarray) -> None:
        cv2.imshow(self.title, bgr)
        self._shown = True

    def keys(self) -> List[str]:
        """The keys typed since the last call, oldest first (all of them where X11 tells us each one)."""
        k = cv2.waitKey(1)  # also paints the window
        if self._shown and self.events.attach():
            return self.events.keys()
        return [] if k == -1 else [chr(k & 0xFF)]

    def is_closed(self) -> bool:
        if not self._shown:
            return False
        if self.events.destroyed:
            return True
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN,
                              cv2.WINDOW_FULLSCREEN if self.fullscreen else cv2.WINDOW_NORMAL)

    def close(self) -> None:
        self.events.close()
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


# ---------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TextBox:
    """Where ``draw_text`` drew: the box, how many rows fitted, the font scale used."""

    x0: int
    y0: int
    x1: int
    y1: int
    rows: int
    scale: float


def draw_text(img: np.ndarray, rows: Sequence[Union[str, Sequence[str]]], origin=(8, 8), scale: float = 0.5,
              tab: int = 90) -> TextBox:
    """Text rows (a row may be columns, ``tab`` px apart at scale 0.5) on a darkened box: readable on any
    painting. The font shrinks (to 0.3) so the box fits the image, then rows that still do not fit are left
    out."""
    rows = [[r] if isinstance(r, str) else list(r) for r in rows]
    h, w = img.shape[:2]
    x, y = origin

    def box(sc: float, n: int):
        line_h, t = int(24 * sc / 0.5), int(tab * sc / 0.5)
        width = max(t * (len(r) - 1) + cv2.getTextSize(r[-1], FONT, sc, 1)[0][0] for r in rows[:n]) + 12
        return width, line_h * n + 8, line_h, t

    n = len(rows)
    while scale > 0.3 and (x + box(scale, n)[0] > w or y + box(scale, n)[1] > h):
        scale = round(scale - 0.05, 2)
    while n > 1 and y + box(scale, n)[1] > h:
        n -= 1
    width, height, line_h, t = box(scale, n)
    x1, y1 = min(w, x + width), min(h, y + height)
    if x1 > x and y1 > y:
        img[y:y1, x:x1] = (img[y:y1, x:x1] * 0.35).astype(np.uint8)
    for i, r in enumerate(rows[:n]):
        for j, text in enumerate(r):
            cv2.putText(img, text, (x + 6 + j * t, y + (i + 1) * line_h), FONT, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return TextBox(x, y, x1, y1, n, scale)


def style_label(name: str, info) -> str:
    """What the HUD calls a style: its display name and its short name, which tells apart two styles of one
    painting (``gogh`` and ``gogh_classic`` are both The Starry Night)."""
    shown = getattr(info, "display_name", "") or name
    return name if shown == name else f"{shown} ({name})"


def view_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size a frame is shown at: a small one enlarged (aspect kept) until it reaches ``MIN_VIEW`` in one
    direction, so the HUD fits; ``draw_text`` shrinks the font for what is still too small."""
    w, h = size
    f = max(1.0, min(MIN_VIEW[0] / w, MIN_VIEW[1] / h))
    return round(w * f), round(h * f)


def next_free(path: Path) -> Path:
    """``rec.mp4``, else ``rec-2.mp4``, ``rec-3.mp4``...: the first name not taken."""
    n, p = 1, path
    while p.exists():
        n += 1
        p = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return p


class RecordToggle:
    """``r`` in the window: start/stop recording. Each new segment gets a name no earlier one has (the
    ``--record`` path, then ``-2``, ``-3``...; without one a timestamp), so a second ``r r`` never overwrites
    the first recording."""

    def __init__(self, record_path: Optional[str], folder: Path = Path(".")):
        self.base = Path(record_path) if record_path else None
        self.folder = folder
        self.segments: List[Path] = []
        self.recorder: Optional[RecordSink] = None
        if self.base is not None:
            self._start(self.base)

    def _start(self, path: Path) -> None:
        self.recorder = RecordSink(path)
        self.segments.append(path)

    def toggle(self) -> str:
        """Start or stop; returns what happened, for the console and the HUD."""
        if self.recorder is not None:
            return self.stop()
        if self.base is not None:
            path = next_free(self.base)
        else:
            path = next_free(self.folder / time.strftime("stylecam-%Y%m%d-%H%M%S.mp4"))
        self._start(path)
        kept = [str(p) for p in self.segments[:-1]]
        return f"recording to {path}" + (f" ({', '.join(kept)} kept)" if kept else "")

    def stop(self) -> str:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return ""
        rec.close()
        return f"recorded {rec.path} ({rec.frames_written} frames at {rec.fps or 0:.1f} fps)"


# ---------------------------------------------------------------------------------------------------------
# The live window sink
# ---------------------------------------------------------------------------------------------------------
class LiveWindow:
    """The interactive sink: stylized view (or side by side), fps/latency overlay, keys, recording toggle.
    ``stages`` is the run's ``pipeline.LiveStages`` (the controls the keys change)."""

    def __init__(self, stages, size: tuple[int, int], record_path: Optional[str] = None,
                 title: str = "stylecam", snapshot_dir: Path = Path("."), window: Optional[Window] = None):
        self.stages = stages
        self.win = window or Window(title, view_size(size))
        self.boxes: List[TextBox] = []  # what the last overlay drew (tests check it fits)
        self.side_by_side = False
        self.show_help = False
        self.snapshot_dir = snapshot_dir
        self.record = RecordToggle(record_path, snapshot_dir)
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

    def overlay(self, bgr: np.ndarray, style: str = "", banner: str = "") -> np.ndarray:
        """The view enlarged to fit the HUD, with the HUD (and the key help) drawn on it."""
        size = view_size((bgr.shape[1], bgr.shape[0]))
        if size != (bgr.shape[1], bgr.shape[0]):
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        st = self.stages
        style = style or st.styles[st.index]
        lines = [style_label(style, st.info(style)),
                 f"{self.fps:4.1f} fps  {self.latency_ms:3.0f} ms  scale {st.scale:.2f}{' auto' if st.auto else ''}"
                 f"  strength {st.strength:.1f}{'  colours kept' if st.preserve_colors else ''}"]
        if self.record.recorder is not None:
            lines.append("REC " + self.record.recorder.path)
        if time.perf_counter() < self._notice_until:
            lines.append(self.notice)
        elif st.message:
            lines.append(st.message[:100])
        if not self.show_help:
            lines.append("h: keys")
        self.boxes = [draw_text(bgr, lines)]
        if self.show_help:
            self.boxes.append(draw_text(bgr, HELP, origin=(8, self.boxes[0].y1 + 6)))
        if banner:
            h, w = bgr.shape[:2]
            (tw, th), _ = cv2.getTextSize(banner, FONT, 0.9, 1)
            draw_text(bgr, [banner], origin=(max(0, (w - tw) // 2 - 6), h // 2 - th), scale=0.9)
        return bgr

    def send(self, p: Processed) -> None:
        if self.record.recorder is not None:
            self.record.recorder.send(p)
        now = time.perf_counter()
        if self._t_prev:
            inst = 1.0 / max(now - self._t_prev, 1e-6)
            self.fps = inst if not self.fps else 0.9 * self.fps + 0.1 * inst
        self._t_prev = now
        self.latency_ms = (now - p.t_capture) * 1000
        self._last = p
        self.win.show(self.overlay(self.compose(p), p.style))
        self._keys()

    def idle(self, status: str) -> None:
        if status == "reconnecting" and self._last is not None:
            dim = (self.compose(self._last) * 0.4).astype(np.uint8)
            self.win.show(self.overlay(dim, self._last.style, banner="camera lost - reconnecting..."))
        self._keys()

    def _keys(self) -> None:
        keys = self.win.keys()
        # Check right after waitKey, which is where the close event is processed: the next imshow would
        # silently create the window again.
        if self.win.is_closed():
            raise StopPipeline
        for ch in keys:
            self.key(ch)

    def key(self, ch: str) -> None:
        st = self.stages
        if ch in "q\x1b":
            raise StopPipeline
        elif ch in "123456789":
            st.select(int(ch) - 1)
        elif ch == "n":
            st.step(1)
        elif ch == "p":
            st.step(-1)
        elif ch in "+=-_":
            delta = STRENGTH_STEP if ch in "+=" else -STRENGTH_STEP
            st.strength = round(min(1.0, max(0.0, st.strength + delta)), 2)
            self._say(f"strength {st.strength:.1f}", 1.0)
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
            self._say(self.record.toggle())

    def snapshot(self) -> Path:
        if self._last is None:
            return Path()
        path = next_free(self.snapshot_dir / time.strftime("stylecam-%Y%m%d-%H%M%S.png"))
        ok, png = cv2.imencode(".png", self.compose(self._last))
        save_file(lambda tmp: tmp.write_bytes(png.tobytes()), path)  # never half a snapshot under its name
        self._say(f"snapshot saved: {path}")
        return path

    def close(self) -> None:
        try:
            if self.record.recorder is not None:
                print(f"stylecam: {self.record.stop()}", file=sys.stderr)
        finally:
            self.win.close()
