"""The state directory, and the files testinfra keeps in it.

It lives in shared temporary space, which other users can write to, so nothing in it is trusted
blindly (as pytest does for its `tmp_path` root): the directory is created 0700 and must be ours,
not a symlink and closed to others; files are opened without following symlinks, created 0600
whatever the umask, and records are written whole (to a temporary name, then renamed), so a
reader never sees half a record and a full disk never leaves a partial one.

    <state>/ports/<port>.lock        port reservations (see _ports)
    <state>/processes/<id>.json      local service processes (see _backends.process)
    <state>/logs/                    their output
    <state>/runs/<run>/              one run: owners/, watchdog.lock, watchdog.log, shared/
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testinfra._errors import StateDirError

_PRIVATE = 0o700
_FILE_MODE = 0o600


def _check_private(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StateDirError(
            f"testinfra state directory {path} is not a directory (or is a symlink); remove it, or set "
            "TESTINFRA_STATE_DIR to a directory of your own"
        )
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"testinfra state directory {path} belongs to uid {info.st_uid}, not to you ({os.geteuid()}): "
            "another user created it, and its files cannot be trusted. Set TESTINFRA_STATE_DIR to a "
            "directory of your own"
        )
    if info.st_mode & 0o077:
        raise StateDirError(
            f"testinfra state directory {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"make it private with `chmod 700 {path}`, or set TESTINFRA_STATE_DIR elsewhere"
        )


def private_dir(path: Path) -> Path:
    """`path` as a directory that only we can use: created 0700 if missing, checked if present."""
    try:
        os.mkdir(path, _PRIVATE)
    except FileExistsError:
        pass
    except FileNotFoundError:
        private_dir(path.parent)
        return private_dir(path)
    except OSError as exc:
        raise StateDirError(f"cannot create testinfra state directory {path}: {exc}") from exc
    try:
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077:
            # Ours but open (made by an older version, or under another umask): close it, through a
            # descriptor so a swap for a symlink in between changes nothing.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, _PRIVATE)
                info = os.fstat(fd)
            finally:
                os.close(fd)
        _check_private(path, info)
    except OSError as exc:
        raise StateDirError(f"cannot use testinfra state directory {path}: {exc}") from exc
    return path


class StateDir:
    """The root of testinfra's machine-wide state for one user (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._checked = False

    def sub(self, *parts: str) -> Path:
        """A private subdirectory, created on first use."""
        if not self._checked:
            private_dir(self.root)
            self._checked = True
        path = self.root
        for part in parts:
            path = path / part
            try:
                os.mkdir(path, _PRIVATE)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise StateDirError(f"{path} should be a directory; remove it") from None
            except FileNotFoundError:
                # Someone deleted the state directory under us: make (and check) it again.
                self._checked = False
                return self.sub(*parts)
            except OSError as exc:
                raise StateDirError(f"cannot create {path}: {exc}") from exc
        return path

    def run_dir(self, run_id: str) -> Path:
        return self.sub("runs", run_id)

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"


def open_private(path: Path, flags: int) -> int:
    """Open a file of ours without following symlinks; a created file is 0600 whatever the umask."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, _FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateDirError(f"{path} is a symlink, which testinfra never follows; remove it") from exc
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise StateDirError(f"{path} belongs to uid {info.st_uid}, not to you; remove it")
        if stat.S_IMODE(info.st_mode) != _FILE_MODE:
            os.fchmod(fd, _FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch(path: Path) -> None:
    os.close(open_private(path, os.O_WRONLY | os.O_CREAT))


def write_record(path: Path, record: Any) -> None:
    """Write `record` as JSON, whole or not at all; raises StateDirError (e.g. on a full disk)."""
    data = json.dumps(record).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateDirError(f"cannot write {path}: {exc}") from exc


def read_record(path: Path) -> Any | None:
    """A record written by write_record, or None if it is missing, unreadable or malformed."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except (OSError, StateDirError):
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            return json.loads(file.read())
    except (OSError, ValueError):
        return None


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing) as an open descriptor, or None if taken.

    The kernel drops the lock when the holder exits in any way. A holder may unlink the file
    before releasing it; whoever then gets the lock on the unlinked file sees that and retries.
    """
    while True:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _still_linked(path, fd):
            return fd
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, waiting for it if needed."""
    while True:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_linked(path, fd):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _still_linked(path: Path, fd: int) -> bool:
    try:
        return os.lstat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
