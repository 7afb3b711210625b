"""The lock of a run directory: one process owns a run for its whole life (``<out_dir>/.camix.lock``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from camix.errors import RunDirError, RunInUse

LOG = logging.getLogger("camix.rundir")
LOCK = ".camix.lock"


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    return f"PID {info.get('pid')} on host {info.get('host')} (since {info.get('since', '?')})"


def _alive(info: dict[str, Any]) -> bool:
    """Whether the lock holder may still run: always True for another host (it cannot be checked from here)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory for the life of a run.

    ``flock`` on ``.camix.lock``: the kernel drops it when the holder dies, so a killed run never blocks the
    next one. The file names the holder (PID, host, start time) for the message of whoever finds it taken. On
    file systems without ``flock`` the holder's PID decides: a dead process on this host loses its lock.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise RunDirError naming the holder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)  # the previous owner removed the file while we waited for it: take the new one
        else:
            raise RunDirError(f"{self.folder}: could not take the lock {self.path}; is another run starting?")
        previous = self._read(fd)
        if previous and previous.get("pid") != os.getpid():
            LOG.info("%s: taking over the lock of %s, which is no longer running", self.folder, _holder_text(previous))
        since = dt.datetime.now().isoformat(timespec="seconds")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = self._read(fd)
        except OSError as exc:  # no flock here (some network file systems): decide by the holder's PID
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                raise
            holder = self._read(fd)
            if not holder or not _alive(holder):
                return
        raise RunInUse(
            f"{self.folder} is in use by {_holder_text(holder)}: two runs must not share a run directory; "
            f"wait for it to finish, stop it, or choose another out_dir (if that process is gone, delete {self.path})"
        )

    @staticmethod
    def _read(fd: int) -> dict[str, Any] | None:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"null")
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
