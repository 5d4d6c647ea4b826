"""The one atomic file writer (checkpoints, dataset caches): a crash at any moment leaves either the
old file or the new one, never a truncated one.

The bytes go to a temporary file beside the target, ``.<name>.<pid>.<random>.tmp``; it is flushed,
fsynced and renamed over the target (``os.replace``, atomic on one file system). Leftovers of
writers that died are removed before each write.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or cannot tell: keep the file)
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete ``.<name>.<pid>.*.tmp`` files beside ``path`` left by an interrupted write: those of a
    process that no longer runs, of this process (its writes are sequential), and older-style names
    without a pid. Returns the removed files."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() and "." in tmp.name[len(path.name) + 2:-4] else None
        if pid is None or pid == os.getpid() or not _pid_alive(pid):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, then rename it over ``path``. The
    folder must exist. On any failure the temporary file is removed and the exception propagates
    (``path`` is untouched)."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
