"""Frames in and out of files: video through PyAV (FFmpeg's libraries), GIF/WebP/APNG animations and still
images through Pillow; streamed, and written atomically (``stylecam.atomic``).

Reading: ``iter_frames(path)`` gives any input's RGB frames (video, animation or image); ``read_frames`` gives
``Frame``s with alpha, display duration and presentation time; ``probe`` tells what a file is from its
content (PyAV's stream fields, no text parsing).

Video out is H.264 in MP4/MOV/MKV, BT.709-tagged, faststart. Frames keep the timestamps they are given
(``write(frame, t=...)``), so a variable-rate input keeps its timing. The audio of another file is copied
packet for packet when the output container takes its codec (AAC, MP3, Opus, ALAC... see ``AUDIO_COPY``)
and re-encoded to AAC otherwise. 4:2:0 colour (what every player takes) stores colour per 2x2 block, so
H.264 4:2:0 cannot hold an odd width or height; ``pix_fmt="auto"`` then writes 4:4:4 at the exact size
(players without 4:4:4 support - browsers, QuickTime - cannot play it); ``pix_fmt="yuv420p"`` pads one
repeated edge row/column instead (``VideoWriter.encoded_size``).

GIF durations are centiseconds in the file; writers round the running time, not each frame, so a 30 fps
clip keeps its length. GIF frames are written whole with disposal "restore to background" and one palette
index reserved for transparency, which renders the same in browsers and in Pillow. Animated WebP and APNG
keep per-frame durations, loop count and alpha; Pillow encodes them in one go, so their frames are held in
memory until ``close()``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator, Optional, Union

import av
import numpy as np
from PIL import GifImagePlugin, Image, ImageOps

from .atomic import AtomicOutput, ClosesOnExit, save_file, write_error
from .errors import StylecamError

PathLike = Union[str, os.PathLike]

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv")
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
ANIMATED_FORMATS = {"GIF", "WEBP", "PNG"}  # Pillow formats that can hold an animation (PNG: APNG)
STILL_FORMATS = set(IMAGE_FORMATS.values())  # Pillow formats read as images
IMAGE_EXTS = (".gif",) + tuple(IMAGE_FORMATS)  # names a folder conversion treats as images
OUTPUT_EXTS = VIDEO_EXTS + IMAGE_EXTS
GIF_MAX_FPS = 50  # browsers show frames shorter than 20 ms for 100 ms
COMMON_FPS = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))
# Audio codecs each container takes as they are (copied without re-encoding); others become AAC.
_PCM = {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_f32le", "pcm_u8"}
_MP4_AUDIO = {"aac", "mp3", "mp2", "opus", "flac", "alac", "ac3", "eac3"}
AUDIO_COPY = {".mp4": _MP4_AUDIO, ".m4v": _MP4_AUDIO,
              ".mov": {"aac", "mp3", "alac", "ac3", "eac3"} | _PCM,
              ".mkv": _MP4_AUDIO | {"vorbis", "dts", "truehd", "wavpack"} | _PCM}


@dataclass
class Frame:
    """One picture of a sequence. ``alpha`` is HxW uint8 or None; ``duration_ms`` is its display time;
    ``time_s`` its presentation time in the input (video), if known."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    duration_ms: float = 100.0
    time_s: Optional[float] = None


@dataclass
class MediaInfo:
    """What a probe learns about an input before decoding it."""

    path: Path
    kind: str  # "video", "animation" (GIF, animated WebP, APNG) or "image"
    width: int
    height: int
    fps: Optional[Fraction] = None  # video: the stream's rate; animation: a rate that fits its durations
    duration: Optional[float] = None  # seconds, when known
    n_frames: Optional[int] = None  # exact for animations/images, from the container's index for video
    has_audio: bool = False
    loop: Optional[int] = None  # animation loop count (0 = forever); None = play once
    sar: Optional[Fraction] = None  # video sample aspect ratio when not square
    format: str = ""  # Pillow format (GIF, WEBP, PNG, JPEG...) or the video's container name
    time_base: Optional[Fraction] = None  # video: the stream's timestamp unit
    rotation: int = 0  # video: degrees counterclockwise the frames are turned to be upright
    audio_codec: Optional[str] = None


# -- helpers ---------------------------------------------------------------------------------------------------
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


def can_animate(path: PathLike) -> bool:
    """An output name whose format holds an animation (GIF, WebP, APNG) besides video."""
    return IMAGE_FORMATS.get(Path(path).suffix.lower()) in ANIMATED_FORMATS or Path(path).suffix.lower() == ".gif"


def to_fraction(fps: float) -> Fraction:
    """29.97 -> 30000/1001: snap to the NTSC rates, keep others as given."""
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


def _av_why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e).split(":")[0] or type(e).__name__


def odd_size_note(size: tuple[int, int], pix_fmt: str) -> Optional[str]:
    """One line saying what an odd frame size becomes in H.264, or None when nothing changes."""
    w, h = size
    if w % 2 == 0 and h % 2 == 0:
        return None
    if pix_fmt == "yuv420p":
        return (f"{w}x{h} is odd-sized and 4:2:0 H.264 needs even sizes: padded to {w + w % 2}x{h + h % 2} by "
                f"repeating the edge")
    return (f"{w}x{h} is odd-sized: written as 4:4:4 H.264 to keep the exact size (browsers and QuickTime may "
            f"not play it; --even-size pads to {w + w % 2}x{h + h % 2} in 4:2:0 instead)")


# -- probing ---------------------------------------------------------------------------------------------------
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
    return info if info is not None else _probe_av(p)


def _probe_pillow(p: Path) -> Optional[MediaInfo]:
    try:
        with Image.open(p) as im:
            fmt = im.format
            if fmt in ANIMATED_FORMATS and getattr(im, "n_frames", 1) > 1 or fmt == "GIF":
                durations = []
                for i in range(im.n_frames):
                    im.seek(i)
                    if fmt == "WEBP":
                        im.load()  # Pillow sets a WebP frame's duration when it decodes it
                    durations.append(float(im.info.get("duration", 0) or 0))
                loop = im.info.get("loop")
                if fmt == "PNG" and loop is None:
                    loop = 0  # APNG's default num_plays is 0: forever
                return MediaInfo(p, "animation", im.width, im.height, fps=gif_fps(durations),
                                 duration=sum(durations) / 1000, n_frames=len(durations), loop=loop, format=fmt)
            if fmt in STILL_FORMATS:
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation turns it by 90 degrees
                    w, h = h, w
                return MediaInfo(p, "image", w, h, n_frames=1, format=fmt)
    except Image.DecompressionBombError as e:
        raise StylecamError(f"input {p} is too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if image_format(p) in ("GIF", *STILL_FORMATS):
            raise StylecamError(f"input {p} is truncated or damaged ({e}); re-download or re-export it") from None
        return None  # not something Pillow reads: let FFmpeg try
    return None


def image_format(p: PathLike) -> Optional[str]:
    """The Pillow format a file claims by its signature, even if it fails to decode."""
    try:
        with Image.open(p) as im:
            return im.format
    except Exception:
        return None


def _not_media(p: Path, why: str) -> StylecamError:
    return StylecamError(f"input {p} is not an image, GIF or video stylecam can read, or it is truncated "
                         f"(ffmpeg: {why}); check the file")


def _probe_av(p: Path) -> MediaInfo:
    try:
        with av.open(str(p), metadata_errors="replace") as c:
            if not c.streams.video:
                raise _not_media(p, "no video stream")
            vs = c.streams.video[0]
            cc = vs.codec_context
            w, h = cc.width, cc.height
            rotation = 0
            try:  # the display matrix reaches the decoded frames; one frame also proves the file decodes
                first = next(c.decode(vs))
                rotation = int(round((first.rotation or 0) / 90.0)) * 90 % 360
                w, h = first.width, first.height
            except (StopIteration, av.error.FFmpegError):
                pass
            if not w or not h:
                raise _not_media(p, "no decodable video frames")
            if rotation in (90, 270):
                w, h = h, w
            rate = vs.guessed_rate or vs.average_rate or vs.base_rate
            fps = to_fraction(float(rate)) if rate and rate > 0 else Fraction(25)
            tb = vs.time_base
            if vs.duration is not None and tb:
                duration = float(vs.duration * tb)
            elif c.duration is not None:
                duration = c.duration / av.time_base
            else:
                duration = None
            n = vs.frames or (round(duration * float(fps)) if duration else None)
            sar = vs.sample_aspect_ratio
            audio = c.streams.audio[0] if c.streams.audio else None
            return MediaInfo(p, "video", w, h, fps=fps, duration=duration, n_frames=n or None,
                             has_audio=audio is not None, sar=sar if sar and sar != 1 else None,
                             format=c.format.name, time_base=tb, rotation=rotation,
                             audio_codec=audio.codec_context.name if audio is not None else None)
    except av.error.FFmpegError as e:
        raise _not_media(p, _av_why(e)) from None


# -- readers ---------------------------------------------------------------------------------------------------
class VideoReader:
    """Decodes a video's frames one at a time (memory flat in the length), upright, as RGB uint8.

    Every decoded frame comes out once (no frame-rate conversion), so the frame count survives; ``frames()``
    also gives each frame's presentation time. A file that ends early or with decoder errors is reported as
    truncated instead of silently converting half of it.
    """

    def __init__(self, path: PathLike, info: Optional[MediaInfo] = None):
        self.info = info or probe(path)
        if self.info.kind != "video":
            raise ValueError(f"{path} is a {self.info.kind}, not a video")
        self.path = Path(path)
        self.frames_read = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        return (f.rgb for f in self.frames())

    def frames(self) -> Iterator[Frame]:
        """Frames with their presentation time (seconds) and 1/fps as their duration."""
        step = 1000.0 / float(self.info.fps or 25)
        k = self.info.rotation // 90
        error = None
        with av.open(str(self.path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            try:
                for vf in c.decode(vs):
                    rgb = vf.reformat(format="rgb24", threads=1).to_ndarray()  # sws threads cost more than they give
                    if k:
                        rgb = np.ascontiguousarray(np.rot90(rgb, k))
                    self.frames_read += 1
                    yield Frame(rgb, None, step, vf.time)
            except av.error.FFmpegError as e:
                error = _av_why(e)
        self._check_complete(error)

    def _check_complete(self, error: Optional[str]) -> None:
        expected = self.info.n_frames or 0
        if error or self.frames_read == 0 or self.frames_read < 0.95 * expected:
            raise StylecamError(f"input {self.path} is truncated or damaged: decoding stopped after "
                                f"{self.frames_read} of ~{expected} frames ({error or 'the file ends early'}); "
                                f"re-download or re-export it")


def read_animation(path: PathLike) -> Iterator[Frame]:
    """Composited frames of a GIF, animated WebP or APNG (Pillow applies each frame's disposal and blending),
    with alpha and per-frame duration."""
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


def read_frames(info: Union[MediaInfo, PathLike]) -> Iterator[Frame]:
    """Any input (probed or a path) as a stream of Frames; video frames carry 1/fps as their duration."""
    if not isinstance(info, MediaInfo):
        info = probe(info)
    if info.kind == "video":
        return VideoReader(info.path, info).frames()
    if info.kind == "animation":
        return read_animation(info.path)
    return iter([read_image(info.path)])


def iter_frames(path: PathLike) -> Iterator[np.ndarray]:
    """The RGB uint8 frames of any input - video, GIF/WebP/APNG animation or image - one at a time.
    Transparent pixels come out over white. Bad input raises a one-line StylecamError."""
    return (f.rgb for f in read_frames(path))


# -- writers ---------------------------------------------------------------------------------------------------
class _Writer(ClosesOnExit):
    """A writer on an ``AtomicOutput``; ``with`` calls the writer's own ``close``/``abort``."""

    out: AtomicOutput

    @property
    def tmp(self) -> Path:
        return self.out.tmp

    @property
    def closed(self) -> bool:
        return self.out.closed

    @property
    def replaced(self) -> bool:
        return self.out.replaced

    def close(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover
        raise NotImplementedError


class _AudioTrack:
    """The first audio stream of another file, muxed into ``out`` as the video goes: packets copied when
    the container takes the codec, else decoded and re-encoded to AAC 192 kb/s."""

    def __init__(self, out: av.container.OutputContainer, src: PathLike, ext: str):
        self.src = av.open(str(src))
        self.stream = None
        if not self.src.streams.audio:
            self.src.close()
            return
        a = self.src.streams.audio[0]
        self.codec = a.codec_context.name
        self.copied = self.codec in AUDIO_COPY.get(ext, ())
        if self.copied:
            self.stream = out.add_stream_from_template(a)
        else:
            layout = "mono" if a.layout.nb_channels == 1 else "stereo"
            self.stream = out.add_stream("aac", rate=a.rate or 48000, layout=layout)
            self.stream.bit_rate = 192000
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=a.rate or 48000)
        self.out = out
        self._packets = self.src.demux(a)
        self.done = False

    def mux_until(self, t: Optional[float]) -> None:
        """Mux the audio up to time ``t`` (seconds; None = all of it)."""
        while self.stream is not None and not self.done:
            pkt = next(self._packets, None)
            if pkt is None:
                self._finish()
                return
            if pkt.dts is None and pkt.pts is None:
                continue  # the demuxer's flush packet
            when = float((pkt.pts if pkt.pts is not None else pkt.dts) * pkt.time_base)
            if self.copied:
                if pkt.pts is None:
                    pkt.pts = pkt.dts
                pkt.stream = self.stream
                self.out.mux(pkt)
            else:
                for fr in pkt.decode():
                    self._encode(fr)
            if t is not None and when >= t:
                return

    def _encode(self, fr) -> None:
        for r in self._resampler.resample(fr):
            self.out.mux(self.stream.encode(r))

    def _finish(self) -> None:
        self.done = True
        if not self.copied:
            self._encode(None)
            self.out.mux(self.stream.encode(None))
        self.close()

    def close(self) -> None:
        self.done = True
        self.src.close()


class VideoWriter(_Writer):
    """H.264 video (PyAV), optionally with the audio of another file.

    ``quality`` is a 1-10 scale (10 best; 6 = x264 CRF 20); ``preset`` defaults to veryfast so a live
    recording does not steal the stylizer's CPU. The frame size is taken from the first ``write``; later
    frames must match it. ``write(frame, t)`` places the frame at ``t`` seconds (``time_base`` is then the
    unit timestamps are kept in - pass the input stream's for exact timing); without ``t`` frames follow one
    another at ``fps``.
    """

    def __init__(self, path: PathLike, fps: float, audio_from: Optional[PathLike] = None, codec: str = "libx264",
                 quality: float = 6, preset: str = "veryfast", pix_fmt: str = "auto",
                 sar: Optional[Union[str, Fraction]] = None, time_base: Optional[Fraction] = None):
        ext = Path(path).suffix.lower()
        if ext not in VIDEO_EXTS:
            raise StylecamError(f"cannot write video {Path(path).name!r}: use one of {', '.join(VIDEO_EXTS)}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 1 <= quality <= 10:
            raise ValueError(f"quality must be between 1 and 10, got {quality}")
        self.ext = ext
        self.fps = fps if isinstance(fps, Fraction) else to_fraction(float(fps))
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.audio_from = str(audio_from) if audio_from else None
        self.codec, self.quality, self.preset, self.pix_fmt = codec, quality, preset, pix_fmt
        self.sar = Fraction(sar.replace(":", "/")) if isinstance(sar, str) else sar
        self.size: Optional[tuple[int, int]] = None  # (width, height) of the frames given
        self.encoded_size: Optional[tuple[int, int]] = None  # what the file holds (see module docstring)
        self.frames_written = 0
        self.audio: Optional[_AudioTrack] = None
        self._c: Optional[av.container.OutputContainer] = None
        self._vs = None
        self._last_pts = -1
        self.out = AtomicOutput(path)
        self.path = self.out.path

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        if self.pix_fmt == "auto":
            self.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        even = self.pix_fmt.startswith(("yuv420", "yuv422", "nv12"))
        self.encoded_size = (w + (w % 2), h + (h % 2)) if even else (w, h)
        opts = {"movflags": "+faststart"} if self.ext in (".mp4", ".m4v", ".mov") else {}
        self._c = av.open(str(self.tmp), "w", format={".mkv": "matroska", ".mov": "mov"}.get(self.ext, "mp4"),
                          options=opts)
        vs = self._c.add_stream(self.codec, rate=self.fps)
        vs.width, vs.height = self.encoded_size
        vs.pix_fmt = self.pix_fmt
        vs.time_base = self.time_base
        cc = vs.codec_context
        cc.time_base = self.time_base  # frame pts are in this unit
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        cc.color_range = 1  # limited ("tv") range
        if self.sar:
            cc.sample_aspect_ratio = self.sar
        if self.codec in ("libx264", "libx265"):
            cc.options = {"crf": str(int((1 - self.quality / 10) * 51)), "preset": self.preset}
        else:
            cc.qscale = int((1 - self.quality / 10) * 30) + 1
        self._vs = vs
        if self.audio_from:
            self.audio = _AudioTrack(self._c, self.audio_from, self.ext)

    def write(self, frame: np.ndarray, t: Optional[float] = None) -> None:
        if self.closed:
            raise ValueError("write() on a closed VideoWriter")
        _check_frame(frame)
        h, w = frame.shape[:2]
        if self.size is not None and (w, h) != self.size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self.size[0]}x{self.size[1]}")
        try:
            if self._c is None:
                self._start(w, h)
            ew, eh = self.encoded_size
            if (ew, eh) != (w, h):
                frame = np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf = vf.reformat(format=self.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG", threads=1)
            if t is None:
                t = self.frames_written / self.fps
            pts = max(round(t / self.time_base), self._last_pts + 1)
            vf.pts, vf.time_base, self._last_pts = pts, self.time_base, pts
            self._c.mux(self._vs.encode(vf))
            if self.audio is not None:
                self.audio.mux_until(float(pts * self.time_base) + 0.5)
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise write_error(self.path, e) from None
        # (a Ctrl-C here leaves the writer open: live recording then finalizes what it has with close())
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the file into place."""
        if self.closed:
            return
        if self._c is None:
            self.abort()
            raise StylecamError(f"nothing to write to {self.path}: no frames were given")
        try:
            self._c.mux(self._vs.encode(None))
            if self.audio is not None:
                self.audio.mux_until(None)
            self._c.close()
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise write_error(self.path, e) from None
        except BaseException:
            self.abort()
            raise
        self.out.commit()

    def abort(self) -> None:
        """Stop encoding and delete the temporary file; the target is left as it was."""
        if self.audio is not None:
            self.audio.close()
        if self._c is not None:
            try:
                self._c.close()
            except Exception:
                pass
            self._c = None
        self.out.discard()


class GifWriter(_Writer):
    """Animated GIF written frame by frame (no whole-animation buffer), with per-frame durations, a loop
    count (None = play once, 0 = forever) and transparency where ``alpha`` < 128."""

    TRANSPARENT = 255  # palette index reserved for transparent pixels; colours use 0..254

    def __init__(self, path: PathLike, loop: Optional[int] = 0):
        self.out = AtomicOutput(path, suffix=".gif")
        self.path = self.out.path
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
        try:
            if self._fp is None:
                self._fp = open(self.tmp, "wb")
                info = {"loop": self.loop} if self.loop is not None else {}
                header, _ = GifImagePlugin.getheader(im.copy(), info=info)
                header[0] = header[0].replace(b"GIF87a", b"GIF89a", 1)  # 89a: needed for durations/transparency
                self._fp.write(b"".join(header))
            for chunk in GifImagePlugin.getdata(im, (0, 0), duration=cs * 10, disposal=2,
                                                transparency=self.TRANSPARENT, include_color_table=True):
                self._fp.write(chunk)
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        self.frames_written += 1

    def close(self) -> None:
        if self.closed:
            return
        if self._fp is None:
            self.abort()
            raise StylecamError(f"nothing to write to {self.path}: no frames were given")
        try:
            self._fp.write(b";")  # GIF trailer
            self._fp.close()
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        self.out.commit()

    def abort(self) -> None:
        if self._fp is not None and not self._fp.closed:
            try:
                self._fp.close()
            except OSError:
                pass
        self.out.discard()


class AnimationWriter(_Writer):
    """Animated WebP or APNG with per-frame durations, a loop count (0 = forever) and alpha. Pillow encodes
    the whole animation at once, so frames are held (as compact RGB/RGBA arrays) until ``close()``."""

    def __init__(self, path: PathLike, loop: Optional[int] = 0):
        self.format = IMAGE_FORMATS.get(Path(path).suffix.lower())
        if self.format not in ("WEBP", "PNG"):
            raise StylecamError(f"cannot write an animation as {Path(path).name!r}: use .gif, .webp, .png or a video")
        self.out = AtomicOutput(path)
        self.path = self.out.path
        self.loop = loop
        self.frames_written = 0
        self._frames: list[Image.Image] = []
        self._durations: list[int] = []
        self._t_ms = 0.0
        self._t_int = 0

    def write(self, rgb: np.ndarray, alpha: Optional[np.ndarray] = None, duration_ms: float = 100.0) -> None:
        if self.closed:
            raise ValueError("write() on a closed AnimationWriter")
        _check_frame(rgb)
        im = Image.fromarray(rgb, "RGB")
        if alpha is not None:
            im.putalpha(Image.fromarray(alpha, "L"))
        self._t_ms += max(0.0, float(duration_ms))
        d = max(0, round(self._t_ms) - self._t_int)  # whole milliseconds, running time kept
        self._t_int += d
        self._frames.append(im)
        self._durations.append(d)
        self.frames_written += 1

    def close(self) -> None:
        if self.closed:
            return
        if not self._frames:
            self.abort()
            raise StylecamError(f"nothing to write to {self.path}: no frames were given")
        frames = self._frames
        if any(f.mode == "RGBA" for f in frames):
            frames = [f.convert("RGBA") for f in frames]
        opts = {"lossless": False, "quality": 90} if self.format == "WEBP" else {"disposal": 1, "blend": 0}
        if self.loop is not None:
            opts["loop"] = self.loop
        try:
            frames[0].save(self.tmp, format=self.format, save_all=True, append_images=frames[1:],
                           duration=self._durations, **opts)
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        self._frames = []
        self.out.commit()

    def abort(self) -> None:
        self._frames = []
        self.out.discard()


def write_image(path: PathLike, rgb: np.ndarray, alpha: Optional[np.ndarray] = None) -> AtomicOutput:
    """A still image in the format its extension names, alpha kept where the format has it; atomic. Returns
    the committed output (``.replaced`` says whether a file was replaced)."""
    p = Path(path)
    fmt = IMAGE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise StylecamError(f"cannot write image {p.name!r}: use one of {', '.join(IMAGE_FORMATS)}")
    _check_frame(rgb)
    im = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt in ALPHA_FORMATS:
        im.putalpha(Image.fromarray(alpha, "L"))
    opts = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}.get(fmt, {})
    return save_file(lambda tmp: im.save(tmp, format=fmt, **opts), p)


def gif_fps(durations_ms: list[float], cap: int = GIF_MAX_FPS) -> Fraction:
    """A constant video rate that represents these GIF durations: 1 / their common step, at most ``cap``."""
    steps = [round(d / 10) for d in durations_ms if d > 0]
    g = 0
    for s in steps:
        g = math.gcd(g, s)
    if not g:
        return Fraction(10)
    return min(Fraction(100, g), Fraction(cap))
