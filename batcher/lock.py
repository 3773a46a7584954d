"""One run at a time per results file (and per state file).

The lock is an advisory ``flock`` on ``RESULTS.csv.lock`` (``STATE.lock``). The kernel drops
it when the process ends, however it ends (``kill -9`` included), so a
crashed run never leaves a lock that has to be removed by hand.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from batcher.errors import UsageError


def lock_path(results_path: Path) -> Path:
    return results_path.with_name(results_path.name + ".lock")


class RunLock:
    """Held for a whole run; a second run on the same results file is refused at once.

    ``advice`` ends the refusal's message: what the second run can do instead.
    """

    def __init__(
        self,
        results_path: Path,
        *,
        advice: str = "wait for it to finish, or give this run another --out",
    ) -> None:
        self.path = lock_path(results_path)
        self._results = results_path
        self._advice = advice
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(10):
            try:
                # O_NOFOLLOW: a symbolic link planted at the lock's path is not written through.
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise UsageError(
                    f"{str(self.path)!r} is a symbolic link; batcher does not write through "
                    "one: remove it"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise UsageError(
                    f"another batcher run (pid {holder}) is writing {str(self._results)!r}; "
                    + self._advice
                ) from None
            # The holder before us may have deleted the file as it released it: a lock on a
            # file no longer at this path locks nothing. Then take the new file's lock.
            if self._still_at_path(fd):
                break
            os.close(fd)
        else:
            raise UsageError(f"cannot lock {str(self.path)!r}: it keeps being replaced")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
