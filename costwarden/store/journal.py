"""The write-ahead journal of the commit: a formed commit is made durable here before any table
is written, and forgotten only after every table write succeeded.

    FileJournal   one file per pending commit under <data_dir>/journal (embedded runner, API)

A journal entry is framed (magic, length, sha256, body) and written to a temporary name, fsynced
and renamed, so a crash while writing it leaves no entry at all (and nothing was written to the
store yet: the caller re-delivers). An entry that is present is complete; `pending()` returns
them oldest first for the writer to re-apply. The body is a pickle of the commit's rows (exact
datetimes and Decimals); the journal is local, written and read only by this process's owner.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
from pathlib import Path
from typing import Any, Protocol

from costwarden.errors import StoreError

log = logging.getLogger(__name__)
_MAGIC = b"CWJ1"
_HEAD = struct.Struct(">4sQ32s")


class Journal(Protocol):
    def write(self, commit: Any) -> None:
        """Make the formed commit durable (before any table write)."""

    def done(self, commit: Any) -> None:
        """Forget it: every table write of the commit succeeded."""

    def pending(self) -> list[Any]:
        """Commits written but not done, oldest first."""


def frame(body: bytes) -> bytes:
    return _HEAD.pack(_MAGIC, len(body), hashlib.sha256(body).digest()) + body


def unframe(data: bytes) -> bytes | None:
    if len(data) < _HEAD.size:
        return None
    magic, n, digest = _HEAD.unpack_from(data)
    body = data[_HEAD.size:_HEAD.size + n]
    if magic != _MAGIC or len(body) != n or hashlib.sha256(body).digest() != digest:
        return None
    return body


class FileJournal:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):  # torn writes of a crashed process: never acted on
            tmp.unlink(missing_ok=True)

    def _path(self, commit: Any) -> Path:
        return self.dir / f"{commit.seq:020d}-{commit.id}.commit"

    def write(self, commit: Any) -> None:
        path = self._path(commit)
        tmp = path.with_suffix(".tmp")
        data = frame(pickle.dumps(commit, protocol=pickle.HIGHEST_PROTOCOL))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.dir)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write the commit journal in {self.dir}: {e.strerror or e}") from e

    def done(self, commit: Any) -> None:
        self._path(commit).unlink(missing_ok=True)

    def pending(self) -> list[Any]:
        out = []
        for path in sorted(self.dir.glob("*.commit")):
            body = unframe(path.read_bytes())
            if body is None:  # cannot happen after rename; keep it aside rather than guess
                log.error("journal entry %s is damaged; moved aside, not re-applied", path.name)
                path.rename(path.with_suffix(".damaged"))
                continue
            out.append(pickle.loads(body))
        return out


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
