"""The one way stylecam writes a file or folder: a hidden temporary beside the target, renamed onto it only
when complete, so an interrupted or failing run never leaves half an output under the final name.

::

    with AtomicOutput("out.gif") as out:      # out.tmp: ".out.gif.<hex>.part.gif", locked while we live
        write_somehow(out.tmp)                # an exception (or Ctrl-C) deletes it; success renames it
    save_file(image.save, "out.png")          # the same for a function that writes a path

Temporaries are named ``.NAME.<8 hex>.part[.EXT]`` (folders ``.NAME.<8 hex>.part``) and hold an exclusive
``flock`` while their writer is alive. A writer killed with ``kill -9`` cannot clean up, so each new output
first removes the unlocked temporaries of the same target (:func:`clean_stale`): a concurrent writer's
temporary is locked and kept.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Optional, Union

from .errors import StylecamError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporaries are left alone there
    fcntl = None

PathLike = Union[str, os.PathLike]


class WriteError(StylecamError):
    """Writing an output failed (disk full, read-only, gone): nothing of that output is kept."""


def write_error(path: PathLike, e: BaseException) -> WriteError:
    """A failed write as one line: disk full, file too large, read-only, missing folder..."""
    why = getattr(e, "strerror", None) or str(e) or type(e).__name__
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        why += "; free some space or write elsewhere"
    return WriteError(f"could not write {path} ({why}); nothing was written")


def check_writable(folder: PathLike, what: str = "output folder", create: bool = False) -> None:
    """Fail before any work if nothing can be created in ``folder`` (made first with ``create``). Creates a
    file there instead of asking ``os.access``, which says yes to root on read-only mounts and on /proc."""
    folder = Path(folder).absolute()
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise StylecamError(f"{what} {folder} does not exist; create it first or choose another output path")
        probe = folder / f".stylecam-write-test.{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise StylecamError(f"{what} {folder} is not writable ({e.strerror or type(e).__name__}); choose another "
                            f"location") from None


def _stale_pattern(target: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}\.part(\.[A-Za-z0-9]+)?")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def clean_stale(target: PathLike) -> list[Path]:
    """Delete temporaries of ``target`` left by writers that died (unlocked); returns what was removed."""
    target = Path(target).absolute()
    if fcntl is None or not target.parent.is_dir():
        return []
    pattern, removed = _stale_pattern(target), []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    for name in names:
        if not pattern.fullmatch(name):
            continue
        p = target.parent / name
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not _try_lock(fd):
                continue  # a live writer holds it
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
            removed.append(p)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class ClosesOnExit:
    """``with`` support: leaving the block calls ``close()``, or ``abort()`` on an exception."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class AtomicOutput(ClosesOnExit):
    """A locked temporary file (or folder, ``folder=True``) beside ``path``; :meth:`commit` renames it onto
    the target, :meth:`discard` deletes it; leaving a ``with`` block commits, or discards on an exception.
    ``replaced`` says whether the commit replaced an existing file."""

    def __init__(self, path: PathLike, suffix: Optional[str] = None, folder: bool = False,
                 check: bool = True):
        self.path = Path(path)
        if check:
            check_writable(self.path.absolute().parent)
        clean_stale(self.path)
        if suffix is None:
            suffix = "" if folder else self.path.suffix
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part{suffix}")
        self.folder = folder
        self.closed = False
        self.replaced = False
        self._lock_fd: Optional[int] = None
        try:
            if folder:
                os.mkdir(self.tmp)
                self._lock_fd = os.open(self.tmp, os.O_RDONLY)
            else:
                self._lock_fd = os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # umask applies
            if fcntl is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as e:
            self._remove_tmp()
            raise write_error(self.path, e) from None

    def commit(self) -> Path:
        """Move the finished temporary into place (a folder target must be absent or empty)."""
        if self.closed:
            return self.path
        try:
            self.replaced = self.path.exists() or self.path.is_symlink()
            if self.folder:
                if self.path.is_dir():
                    self.path.rmdir()  # empty (the caller checked); rename cannot replace a folder
                os.rename(self.tmp, self.path)
            else:
                os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise write_error(self.path, e) from None
        self._unlock()
        self.closed = True
        return self.path

    def discard(self) -> None:
        """Delete the temporary; the target stays as it was."""
        self.closed = True
        self._remove_tmp()
        self._unlock()

    def _remove_tmp(self) -> None:
        try:
            if self.tmp.is_dir() and not self.tmp.is_symlink():
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        self.commit()

    def abort(self) -> None:
        self.discard()


def save_file(write: Callable[[Path], object], path: PathLike, suffix: Optional[str] = None) -> AtomicOutput:
    """``write(tmp_path)`` then rename onto ``path``; an OSError (disk full, ...) becomes one StylecamError
    line and nothing is left behind. Returns the committed output (``.replaced`` tells if it replaced one)."""
    out = AtomicOutput(path, suffix=suffix)
    try:
        write(out.tmp)
    except OSError as e:
        out.discard()
        raise write_error(path, e) from None
    except BaseException:
        out.discard()
        raise
    out.commit()
    return out
