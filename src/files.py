"""Reading and writing files safely.

Writing: readers see either the old file or the whole new one, never half of it (``write_atomic``).
Reading input (benchmark images, precomputed outputs): only regular files of at most
``MAX_INPUT_FILE_BYTES``, so that a FIFO, a device (``/dev/zero``) or a huge file named as an image
is that item's failure instead of a run blocked in ``open()`` or hashing forever.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path

# 512 MiB: far above any benchmark image (an 8192 x 8192 RGB PNG that does not compress is 192 MiB).
MAX_INPUT_FILE_BYTES = 512 * 2**20
_KINDS = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


class InputFileError(OSError):
    """An input path that is not a regular file of bounded size; the message says why."""


def _check_regular(st: os.stat_result, path, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise InputFileError(f"{path} is {kind}, not a regular file; only regular files are read")
    if st.st_size > max_bytes:
        raise InputFileError(f"{path} is {st.st_size:,} bytes, over the limit of {max_bytes:,} for an input file")


def check_input_file(path, max_bytes: int = MAX_INPUT_FILE_BYTES) -> None:
    """Raise FileNotFoundError, InputFileError (a FIFO, a device, too large) or OSError (a name too long,
    a symlink loop, no permission) unless ``path`` is a regular file of at most ``max_bytes``. Never blocks."""
    _check_regular(os.stat(path), path, max_bytes)


def open_input_file(path, max_bytes: int = MAX_INPUT_FILE_BYTES):
    """``open(path, "rb")`` for a regular file of at most ``max_bytes`` (checked on the open file, so a
    FIFO cannot block the open and a swap between check and open cannot slip through); else as
    ``check_input_file`` raises."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd), path, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where Linux says it (``/proc/self/status``);
    elsewhere set and put back under a lock (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass  # no procfs (macOS) or an old kernel without the line
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def write_atomic(path: Path, data: str | bytes, *, durable: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file in the same folder and a rename.

    ``durable``: fsync the data before the rename, so that a crash cannot leave an empty file behind.
    The temporary name is unique per call, so that two processes writing the same path never share it.
    The file gets the mode any new file gets (``0o666`` less the umask): mkstemp's is ``0o600``, which
    would hide results from the user's group.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(payload)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha1(path: Path) -> str | None:
    """The SHA-1 of a file's bytes, read in 1 MiB blocks; None when it cannot be read (missing, a folder,
    not a regular file, over ``MAX_INPUT_FILE_BYTES``: the read that follows says why)."""
    digest = hashlib.sha1()
    try:
        with open_input_file(path) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (raises ``OSError`` when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
