"""Opening files and directories under the roots safely.

Every file under a root is untrusted, and the tree can change while we read it. So nothing here
decides from a path checked earlier: a file is opened without following its final symlink and
without blocking, the descriptor is ``fstat``-ed (a regular file?), and where the opened file
really is gets checked against the roots (on Linux through ``/proc/self/fd/N``, elsewhere by
comparing device and inode with a fresh ``realpath``). Only then is it read, from that
descriptor. A symlink whose target lies inside the roots is followed once, by opening its
resolved path the same way; anything else is refused with :class:`Refused`.

There is no cached verdict: opening and checking costs a few microseconds, less than the
``realpath`` it replaces.

Writes (exports) follow the same rule: the directory written into is opened without following a
final symlink and checked where it really is (inside the roots for an in-place export, outside
every root for a destination), and each file is created relative to that descriptor
(``dir_fd=``), atomically and never over an existing file (``create_new``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import BinaryIO, TextIO

_O_BASE = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_O_FILE = _O_BASE | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_O_DIR = _O_BASE | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_DIRECTORY", 0)
_PROC_FD = "/proc/self/fd"
_HAVE_PROC = os.path.isdir(_PROC_FD)


class Refused(OSError):
    """A path that may not be read: outside the roots, not a regular file, or a link loop."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EACCES, why, path)
        self.why = why


def inside(real: str, roots: list[str]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` (resolved) or below one."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class Roots:
    """The resolved roots, and confined opening below them.

    ``exclude``: directories of our own (the cache directory) that are not part of the roots even
    when they lie below one (e.g. root = ``$HOME``): nothing in them is read as run data. One that
    holds a root itself is not excluded (the user asked to read there)."""

    def __init__(self, roots: list[str], exclude: list[str] | tuple[str, ...] = ()) -> None:
        self.real = [os.path.realpath(r) for r in roots]
        excluded = [os.path.realpath(p) for p in exclude]
        self.excluded = [p for p in dict.fromkeys(excluded) if not any(inside(r, [p]) for r in self.real)]

    def contains(self, real: str) -> bool:
        return inside(real, self.real) and not (self.excluded and inside(real, self.excluded))

    def is_excluded(self, real: str) -> bool:
        """Whether the resolved path ``real`` is one of our own directories (or below one)."""
        return bool(self.excluded) and inside(real, self.excluded)

    # ---- files ------------------------------------------------------------------------------------

    def _open_fd(self, path: str, flags: int, want) -> tuple[int, os.stat_result]:
        """An fd of ``path`` opened with ``flags``, checked to be ``want(st_mode)`` and inside
        the roots. A final symlink is followed once (through its resolved path)."""
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR) or not os.path.islink(path):
                raise
            real = os.path.realpath(path)
            if not self.contains(real):
                raise Refused(path, "it leads outside the roots") from None
            try:
                fd = os.open(real, flags)
            except OSError as e2:
                if e2.errno in (errno.ELOOP, errno.EMLINK):
                    raise Refused(path, "its symlink changed while it was opened") from None
                raise
        try:
            st = os.fstat(fd)
            if not want(st.st_mode):
                raise Refused(path, "it is not a regular file (a FIFO, device or socket would block or never end)"
                              if want is stat.S_ISREG else "it is not a directory")
            where = self._where(fd, path, st)
            if where is None or not self.contains(where):
                raise Refused(path, "it leads outside the roots")
            return fd, st
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _where(fd: int, path: str, st: os.stat_result) -> str | None:
        """Where the opened file really is (None when that cannot be told)."""
        if _HAVE_PROC:
            try:
                return os.readlink(f"{_PROC_FD}/{fd}")
            except OSError:
                pass
        real = os.path.realpath(path)
        try:
            now = os.stat(real)
        except OSError:
            return None
        return real if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) else None

    def open(self, path: str) -> BinaryIO:
        """``path`` opened for reading as a binary file, if it is a regular file inside the roots
        (else :class:`Refused`; a missing file raises FileNotFoundError as usual)."""
        fd, _ = self._open_fd(path, _O_FILE, stat.S_ISREG)
        try:
            if _O_FILE & getattr(os, "O_NONBLOCK", 0):
                os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def stat(self, path: str) -> os.stat_result:
        """The ``fstat`` of ``path`` opened the safe way (so a symlink to an outside file reports
        nothing about it)."""
        fd, st = self._open_fd(path, _O_FILE, stat.S_ISREG)
        os.close(fd)
        return st

    def file_key(self, path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of a readable regular file inside the roots; None otherwise."""
        try:
            st = self.stat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def read(self, path: str, limit: int) -> bytes:
        """The whole file, if it is at most ``limit`` bytes (else ValueError)."""
        with self.open(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise ValueError(f"{os.path.basename(path)} is {size:,} bytes, over the {limit:,}-byte limit")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{os.path.basename(path)} grew past the {limit:,}-byte limit while read")
        return data

    # ---- directories ------------------------------------------------------------------------------

    def open_dir(self, path: str) -> int:
        """An fd of directory ``path`` (not followed through a final symlink), inside the roots.
        The caller closes it (``os.scandir(fd)`` lists it)."""
        fd, _ = self._open_fd(path, _O_DIR, stat.S_ISDIR)
        return fd


    # ---- writes -----------------------------------------------------------------------------------

    def open_dir_to_write(self, path: str, under_roots: bool) -> int:
        """An fd of the real directory ``path`` to create files in (with ``dir_fd=``), so that a
        swap after this check cannot redirect a write. A final symlink is refused, never followed,
        and where the opened directory really is must be inside the roots (``under_roots``) or
        outside every root (not ``under_roots``; our own excluded directories count as outside).
        Raises Refused, or OSError (e.g. FileNotFoundError)."""
        try:
            fd = os.open(path, _O_DIR)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                raise Refused(path, "it is not a real directory (a symlink or a file)") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                raise Refused(path, "it is not a directory")
            where = self._where(fd, path, st)
            if where is None:
                raise Refused(path, "where it really is cannot be told")
            if under_roots and not self.contains(where):
                raise Refused(path, f"it leads outside the roots (to {where})")
            if not under_roots and self.contains(where):
                raise Refused(path, f"it is inside a root ({where})")
            return fd
        except BaseException:
            os.close(fd)
            raise


_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_O_NEW = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def create_new(dir_fd: int, name: str, write: Callable[[TextIO], None], tmpfile: bool = True) -> int | None:
    """Create the file ``name`` in the directory ``dir_fd`` with the text ``write(f)`` writes,
    atomically and never over anything: the content goes to a temporary file first, which is then
    hard-linked into place (``link`` fails if ``name`` exists, even when another process created it
    a moment ago), and the temporary name removed. Returns the bytes written, or None when
    ``name`` exists (it is kept). Mode 0666 less the umask, as for any new file.

    On Linux the temporary file is unnamed (``O_TMPFILE``), so no other process can swap it;
    elsewhere (or with ``tmpfile=False``) it has a random name, and what was linked is checked to
    be the file written (a swapped temporary name is removed again and refused)."""
    if _exists(dir_fd, name):
        return None
    if tmpfile and _O_TMPFILE and _HAVE_PROC:
        try:
            fd = os.open(".", _O_NEW | _O_TMPFILE, 0o666, dir_fd=dir_fd)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                write(f)
                f.flush()
                size = os.fstat(fd).st_size
                try:
                    os.link(f"{_PROC_FD}/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
                except FileExistsError:
                    return None
            return size
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, _O_NEW | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            st = os.fstat(fd)
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                return None
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):  # the temporary name was swapped
                os.unlink(name, dir_fd=dir_fd)
                raise Refused(name, "its temporary file was replaced while it was written")
            return st.st_size
    finally:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def default_roots() -> Roots:
    """Roots that contain everything (for code paths used outside a server, e.g. tests of one reader)."""
    return Roots([os.sep])


# The roots the readers of the current call are confined to. The index sets it around every
# read (``using``); the readers open files only through ``open_read``. Unset (a reader used on
# its own, as a library), files anywhere may be read, but still only regular files, without
# blocking.
ACTIVE: ContextVar[Roots | None] = ContextVar("runwise_roots", default=None)
_ANYWHERE = default_roots()


@contextlib.contextmanager
def using(roots: Roots) -> Iterator[None]:
    token = ACTIVE.set(roots)
    try:
        yield
    finally:
        ACTIVE.reset(token)


def open_read(path: str) -> BinaryIO:
    """``path`` opened for reading under the active roots (see ``Roots.open``)."""
    return (ACTIVE.get() or _ANYWHERE).open(path)


def file_key(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path`` under the active roots; None if missing or refused."""
    return (ACTIVE.get() or _ANYWHERE).file_key(path)


def stat_file(path: str) -> os.stat_result:
    """``Roots.stat`` under the active roots (raises Refused / OSError)."""
    return (ACTIVE.get() or _ANYWHERE).stat(path)
