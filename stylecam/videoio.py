"""Frames in and out of files: video (ffmpeg), GIF and still images (Pillow), streamed and written atomically.

Shared by offline conversion and live recording. Every writer works on a hidden temporary file beside the
target and renames it onto the target in ``close()``; ``abort()`` (or an exception inside ``with``) deletes
it, so a failure or Ctrl-C never leaves a partial output.

Video is H.264 in MP4/MOV/MKV, yuv420p, BT.709-tagged, faststart: the format every player takes. yuv420p
stores colour per 2x2 block, so H.264 cannot hold an odd width or height; such frames are padded by one
repeated edge row/column and the file is one pixel larger on that side (``VideoWriter.encoded_size``).
Pass ``pix_fmt="yuv444p"`` for exact odd sizes at the cost of players that cannot decode 4:4:4 (browsers,
QuickTime).

GIF durations are centiseconds in the file; writers round the running time, not each frame, so a 30 fps
clip keeps its length. Frames are written whole with disposal "restore to background" and one palette
index reserved for transparency, which renders the same in browsers and in Pillow.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator, Optional, Union

import numpy as np
from PIL import GifImagePlugin, Image, ImageOps

from .errors import StylecamError

PathLike = Union[str, os.PathLike]

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv")
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
STILL_FORMATS = set(IMAGE_FORMATS.values())  # Pillow formats read as one still image
OUTPUT_EXTS = VIDEO_EXTS + (".gif",) + tuple(IMAGE_FORMATS)
GIF_MAX_FPS = 50  # browsers show frames shorter than 20 ms for 100 ms
COMMON_FPS = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))


@dataclass
class Frame:
    """One picture of a sequence. ``alpha`` is HxW uint8 or None; ``duration_ms`` is its display time."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    duration_ms: float = 100.0


@dataclass
class MediaInfo:
    """What a probe learns about an input before decoding it."""

    path: Path
    kind: str  # "video", "gif" or "image"
    width: int
    height: int
    fps: Optional[Fraction] = None  # video only
    duration: Optional[float] = None  # seconds, when known
    n_frames: Optional[int] = None  # exact for GIF/image, an estimate for video
    has_audio: bool = False
    loop: Optional[int] = None  # GIF NETSCAPE loop count (0 = forever); None = play once
    sar: Optional[str] = None  # video sample aspect ratio "a:b" when not square


# -- helpers ---------------------------------------------------------------------------------------------------
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def temp_path_beside(target: PathLike, suffix: str = "") -> Path:
    """A hidden, unused name in the target's folder; not created, so the file gets normal permissions."""
    target = Path(target)
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.part{suffix}")


def check_writable_folder(target: PathLike) -> None:
    """Fail before any work if the output cannot be created."""
    folder = Path(target).absolute().parent
    if not folder.is_dir():
        raise StylecamError(f"output folder {folder} does not exist; create it first or choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StylecamError(f"cannot write into folder {folder} (permission denied); choose another output path")


def output_kind(path: PathLike) -> str:
    """'video', 'gif' or 'image' from the output's extension (there is no content to look at yet)."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext == ".gif":
        return "gif"
    if ext in IMAGE_FORMATS:
        return "image"
    shown = ext or "no extension"
    raise StylecamError(f"cannot write {Path(path).name!r}: unsupported output type ({shown}); end the name with "
                        f"one of {', '.join(OUTPUT_EXTS)}")


def to_fraction(fps: float) -> Fraction:
    """ffmpeg prints 29.97; the stream is 30000/1001. Snap to the NTSC rates, keep others as given."""
    for f in COMMON_FPS:
        if abs(float(f) - fps) < 0.006:
            return f
    return Fraction(fps).limit_denominator(1001)


def flatten(rgba: np.ndarray, background: int = 255) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """RGBA -> (RGB over a white background, alpha or None if fully opaque). The net never sees the
    arbitrary colours hidden under transparent pixels."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3]), None
    a = alpha[..., None].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + background * (1.0 - a)
    return np.ascontiguousarray(rgb.round().astype(np.uint8)), alpha.copy()


def _check_frame(frame: np.ndarray) -> None:
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {getattr(frame, 'shape', type(frame))} "
                         f"{getattr(frame, 'dtype', '')}")


def _tail(f: IO[bytes], n: int = 3) -> str:
    """The last meaningful lines of an ffmpeg log, as one line."""
    f.seek(0)
    lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    return "; ".join(lines[-n:])[-300:]


# -- probing ---------------------------------------------------------------------------------------------------
_STREAM_V = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r",\s*(\d+)x(\d+)[\s,\[]")
_FPS = re.compile(r"([\d.]+)\s*(k?)\s*(fps|tbr)")
_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):([\d.]+)")
_SAR = re.compile(r"\[SAR (\d+):(\d+) DAR")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def probe(path: PathLike) -> MediaInfo:
    """Identify an input by its content (not its name) and read its size, timing and audio presence."""
    p = Path(path)
    if not p.exists():
        raise StylecamError(f"input {p} does not exist; check the path")
    if p.is_dir():
        raise StylecamError(f"input {p} is a folder; give a file, or a folder of images with a folder as output")
    if p.stat().st_size == 0:
        raise StylecamError(f"input {p} is empty (0 bytes); nothing to convert")
    info = _probe_pillow(p)
    return info if info is not None else _probe_ffmpeg(p)


def _probe_pillow(p: Path) -> Optional[MediaInfo]:
    try:
        with Image.open(p) as im:
            fmt = im.format
            if fmt == "GIF":
                loop = im.info.get("loop")
                durations = []
                for i in range(im.n_frames):
                    im.seek(i)
                    durations.append(float(im.info.get("duration", 0) or 0))
                return MediaInfo(p, "gif", im.width, im.height, fps=gif_fps(durations),
                                 duration=sum(durations) / 1000, n_frames=len(durations), loop=loop)
            if fmt in STILL_FORMATS:
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation turns it by 90 degrees
                    w, h = h, w
                return MediaInfo(p, "image", w, h, n_frames=1)
    except Image.DecompressionBombError as e:
        raise StylecamError(f"input {p} is too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if image_format(p) in ("GIF", *STILL_FORMATS):
            raise StylecamError(f"input {p} is truncated or damaged ({e}); re-download or re-export it") from None
        return None  # not something Pillow reads: let ffmpeg try
    return None


def image_format(p: Path) -> Optional[str]:
    """The Pillow format a file claims by its signature, even if it fails to decode."""
    try:
        with Image.open(p) as im:
            return im.format
    except Exception:
        return None


def _probe_ffmpeg(p: Path) -> MediaInfo:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)], capture_output=True,
                         stdin=subprocess.DEVNULL, check=False).stderr.decode(errors="replace")
    vline = next((m.group(1) for m in map(_STREAM_V.search, out.splitlines()) if m), None)
    size = _SIZE.search(vline) if vline else None
    if not size:
        why = next((ln.strip() for ln in out.splitlines() if "Invalid data" in ln or "moov atom" in ln
                    or "rror" in ln), "no video stream")
        why = re.sub(r"^\[[^\]]*\]\s*", "", why)
        raise StylecamError(f"input {p} is not an image, GIF or video stylecam can read, or it is truncated "
                            f"(ffmpeg: {why}); check the file")
    w, h = int(size.group(1)), int(size.group(2))
    rot = _ROTATION.search(out)
    if rot and round(abs(float(rot.group(1)))) % 180 == 90:  # ffmpeg autorotates while decoding
        w, h = h, w
    fps = None
    for m in _FPS.finditer(vline):
        val = float(m.group(1)) * (1000 if m.group(2) else 1)
        if val > 0:
            fps = to_fraction(val)
            break
    dur = _DURATION.search(out)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    sar = _SAR.search(vline)
    sar_s = f"{sar.group(1)}:{sar.group(2)}" if sar and sar.group(1) != sar.group(2) else None
    n = round(duration * float(fps)) if duration and fps else None
    has_audio = any(re.search(r"Stream #\d+:\d+.*?: Audio:", ln) for ln in out.splitlines())
    return MediaInfo(p, "video", w, h, fps=fps or Fraction(25), duration=duration, n_frames=n,
                     has_audio=has_audio, sar=sar_s)


# -- readers ---------------------------------------------------------------------------------------------------
class VideoReader:
    """Decodes a video's frames one at a time through an ffmpeg pipe (memory flat in the length).

    Every decoded frame comes out once (no frame-rate conversion), so the frame count survives. A file that
    ends early with decoder errors is reported as truncated instead of silently converting half of it.
    """

    def __init__(self, path: PathLike, info: Optional[MediaInfo] = None):
        self.info = info or probe(path)
        if self.info.kind != "video":
            raise ValueError(f"{path} is a {self.info.kind}, not a video")
        self.path = Path(path)
        self.frames_read = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.info.width, self.info.height
        nbytes = w * h * 3
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(self.path),
               "-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        with tempfile.TemporaryFile() as log:
            # Own session: a terminal Ctrl-C reaches Python alone, which then stops ffmpeg itself.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                    start_new_session=True, bufsize=0)
            try:
                while True:
                    buf = _read_exact(proc.stdout, nbytes)
                    if buf is None:
                        break
                    self.frames_read += 1
                    yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            self._check_complete(rc, log)

    def _check_complete(self, rc: int, log: IO[bytes]) -> None:
        errors = _tail(log)
        expected = self.info.n_frames or 0
        short = self.frames_read < 0.95 * expected
        if rc != 0 or self.frames_read == 0 or (errors and ("partial file" in errors or short)):
            raise StylecamError(f"input {self.path} is truncated or damaged: decoding stopped after "
                                f"{self.frames_read} of ~{expected} frames ({errors or f'ffmpeg exit {rc}'}); "
                                f"re-download or re-export it")


def _read_exact(stream: IO[bytes], n: int) -> Optional[bytearray]:
    """Exactly n bytes, or None at the end; a bytearray so the frame array built on it is writable."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None  # a partial last frame is not a frame
        buf += chunk
    return buf


def read_gif(path: PathLike) -> Iterator[Frame]:
    """Composited GIF frames (Pillow applies each frame's disposal), with alpha and per-frame duration."""
    p = Path(path)
    with Image.open(p) as im:
        i = 0
        while True:
            try:
                im.seek(i)
            except EOFError:
                return
            try:
                rgba = np.asarray(im.convert("RGBA"))
            except (OSError, SyntaxError, ValueError) as e:
                raise StylecamError(f"input {p} is truncated or damaged at frame {i + 1} ({e}); re-download or "
                                    f"re-export it") from None
            rgb, alpha = flatten(rgba)
            yield Frame(rgb, alpha, float(im.info.get("duration", 0) or 0))
            i += 1


def read_image(path: PathLike) -> Frame:
    """A still image, upright (EXIF orientation applied), alpha kept if it has any."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            rgba = np.asarray(im.convert("RGBA"))
    except (OSError, SyntaxError, ValueError) as e:
        raise StylecamError(f"input {p} is truncated or damaged ({e}); re-download or re-export it") from None
    rgb, alpha = flatten(rgba)
    return Frame(rgb, alpha, 0.0)


def read_frames(info: MediaInfo) -> Iterator[Frame]:
    """Any probed input as a stream of Frames; video frames carry 1/fps as their duration."""
    if info.kind == "video":
        step = 1000.0 / float(info.fps or 25)
        return (Frame(f, None, step) for f in VideoReader(info.path, info))
    if info.kind == "gif":
        return read_gif(info.path)
    return iter([read_image(info.path)])


# -- writers ---------------------------------------------------------------------------------------------------
class _AtomicOutput:
    """Temp file beside the target; rename on close, delete on abort; abort on exceptions inside ``with``."""

    def __init__(self, path: PathLike, suffix: str = ""):
        self.path = Path(path)
        check_writable_folder(self.path)
        self.tmp = temp_path_beside(self.path, suffix)
        self.closed = False

    def _commit(self) -> None:
        os.replace(self.tmp, self.path)
        self.closed = True

    def _discard(self) -> None:
        self.closed = True
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()  # defined by each writer
        else:
            self.abort()


class VideoWriter(_AtomicOutput):
    """H.264 video written through an ffmpeg pipe, optionally with the audio of another file.

    ``quality`` is imageio's 1-10 scale (10 best; 6 = x264 CRF 20); ``preset`` defaults to veryfast so a
    live recording does not steal the stylizer's CPU. The frame size is taken from the first ``write``;
    later frames must match it.
    """

    def __init__(self, path: PathLike, fps: float, audio_from: Optional[PathLike] = None, codec: str = "libx264",
                 quality: float = 6, preset: str = "veryfast", pix_fmt: str = "yuv420p", sar: Optional[str] = None):
        ext = Path(path).suffix.lower()
        if ext not in VIDEO_EXTS:
            raise StylecamError(f"cannot write video {Path(path).name!r}: use one of {', '.join(VIDEO_EXTS)}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 1 <= quality <= 10:
            raise ValueError(f"quality must be between 1 and 10, got {quality}")
        super().__init__(path, suffix=ext)
        self.fps = fps if isinstance(fps, Fraction) else to_fraction(float(fps))
        self.audio_from = str(audio_from) if audio_from else None
        self.codec, self.quality, self.preset, self.pix_fmt, self.sar = codec, quality, preset, pix_fmt, sar
        self.size: Optional[tuple[int, int]] = None  # (width, height) of the frames given
        self.encoded_size: Optional[tuple[int, int]] = None  # what the file holds (see module docstring)
        self.frames_written = 0
        self._proc: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def _command(self, w: int, h: int) -> list[str]:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "-"]
        if self.audio_from:
            cmd += ["-i", self.audio_from, "-map", "0:v:0", "-map", "1:a?", "-c:a", "aac", "-b:a", "192k"]
        vf = [f"scale=out_color_matrix=bt709:out_range=tv,format={self.pix_fmt}",
              "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"]
        if self.sar:
            vf.append(f"setsar={self.sar.replace(':', '/')}")
        cmd += ["-vf", ",".join(vf), "-c:v", self.codec, "-pix_fmt", self.pix_fmt]
        if self.codec in ("libx264", "libx265"):
            cmd += ["-crf", str(int((1 - self.quality / 10) * 51)), "-preset", self.preset]
        else:
            cmd += ["-q:v", str(int((1 - self.quality / 10) * 30) + 1)]
        if self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            cmd += ["-movflags", "+faststart"]
        return cmd + [str(self.tmp)]

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        even = self.pix_fmt.startswith(("yuv420", "yuv422", "nv12"))
        self.encoded_size = (w + (w % 2), h + (h % 2)) if even else (w, h)
        self._log = tempfile.TemporaryFile()
        # Own session: a terminal Ctrl-C must not kill the encoder before the caller decides to keep or drop.
        self._proc = subprocess.Popen(self._command(*self.encoded_size), stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)

    def write(self, frame: np.ndarray) -> None:
        if self.closed:
            raise ValueError("write() on a closed VideoWriter")
        _check_frame(frame)
        h, w = frame.shape[:2]
        if self._proc is None:
            self._start(w, h)
        elif (w, h) != self.size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self.size[0]}x{self.size[1]}")
        ew, eh = self.encoded_size
        if (ew, eh) != (w, h):
            frame = np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            msg = _tail(self._log)
            self.abort()
            raise StylecamError(f"ffmpeg stopped while writing {self.path} ({msg or 'no message'})") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the file into place."""
        if self.closed:
            return
        if self._proc is None:
            self._discard()
            raise StylecamError(f"nothing to write to {self.path}: no frames were given")
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        if rc != 0:
            msg = _tail(self._log)
            self.abort()
            raise StylecamError(f"ffmpeg could not write {self.path} ({msg or f'exit {rc}'})")
        self._log.close()
        self._commit()

    def abort(self) -> None:
        """Stop the encoder and delete the temporary file; the target is left as it was."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        if self._log is not None and not self._log.closed:
            self._log.close()
        self._discard()


class GifWriter(_AtomicOutput):
    """Animated GIF written frame by frame (no whole-animation buffer), with per-frame durations, a loop
    count (None = play once, 0 = forever) and transparency where ``alpha`` < 128."""

    TRANSPARENT = 255  # palette index reserved for transparent pixels; colours use 0..254

    def __init__(self, path: PathLike, loop: Optional[int] = 0):
        super().__init__(path, suffix=".gif")
        self.loop = loop
        self.frames_written = 0
        self.size: Optional[tuple[int, int]] = None
        self._fp: Optional[IO[bytes]] = None
        self._t_ms = 0.0  # exact running time of the frames given
        self._t_cs = 0  # running time written, in the file's centiseconds

    def _palettize(self, rgb: np.ndarray, alpha: Optional[np.ndarray]) -> Image.Image:
        q = Image.fromarray(rgb, "RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.FLOYDSTEINBERG)
        pal = (q.getpalette() or [])[: 255 * 3]
        pal += [0] * (768 - len(pal))
        idx = np.asarray(q)
        if alpha is not None:
            idx = np.where(alpha < 128, self.TRANSPARENT, idx).astype(np.uint8)
        out = Image.fromarray(idx, "P")
        out.putpalette(pal)
        return out

    def write(self, rgb: np.ndarray, alpha: Optional[np.ndarray] = None, duration_ms: float = 100.0) -> None:
        if self.closed:
            raise ValueError("write() on a closed GifWriter")
        _check_frame(rgb)
        h, w = rgb.shape[:2]
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self.size[0]}x{self.size[1]}")
        im = self._palettize(rgb, alpha)
        self._t_ms += max(0.0, float(duration_ms))
        cs = max(0, round(self._t_ms / 10) - self._t_cs)
        self._t_cs += cs
        if self._fp is None:
            self._fp = open(self.tmp, "wb")
            info = {"loop": self.loop} if self.loop is not None else {}
            header, _ = GifImagePlugin.getheader(im.copy(), info=info)
            header[0] = header[0].replace(b"GIF87a", b"GIF89a", 1)  # 89a: needed for durations/transparency
            self._fp.write(b"".join(header))
        for chunk in GifImagePlugin.getdata(im, (0, 0), duration=cs * 10, disposal=2,
                                            transparency=self.TRANSPARENT, include_color_table=True):
            self._fp.write(chunk)
        self.frames_written += 1

    def close(self) -> None:
        if self.closed:
            return
        if self._fp is None:
            self._discard()
            raise StylecamError(f"nothing to write to {self.path}: no frames were given")
        self._fp.write(b";")  # GIF trailer
        self._fp.close()
        self._commit()

    def abort(self) -> None:
        if self._fp is not None and not self._fp.closed:
            self._fp.close()
        self._discard()


def write_image(path: PathLike, rgb: np.ndarray, alpha: Optional[np.ndarray] = None) -> None:
    """A still image in the format its extension names, alpha kept where the format has it; atomic."""
    p = Path(path)
    fmt = IMAGE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise StylecamError(f"cannot write image {p.name!r}: use one of {', '.join(IMAGE_FORMATS)}")
    _check_frame(rgb)
    out = _AtomicOutput(p, suffix=p.suffix)
    im = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt in ALPHA_FORMATS:
        im.putalpha(Image.fromarray(alpha, "L"))
    opts = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}.get(fmt, {})
    try:
        im.save(out.tmp, format=fmt, **opts)
        out._commit()
    except BaseException:
        out._discard()
        raise


def gif_fps(durations_ms: list[float], cap: int = GIF_MAX_FPS) -> Fraction:
    """A constant video rate that represents these GIF durations: 1 / their common step, at most ``cap``."""
    steps = [round(d / 10) for d in durations_ms if d > 0]
    g = 0
    for s in steps:
        g = math.gcd(g, s)
    if not g:
        return Fraction(10)
    return min(Fraction(100, g), Fraction(cap))
