"""Writing a volume's files all at once, as Kubernetes' AtomicWriter does.

Contract
--------
``AtomicWriter(target_dir).write(payload)`` makes ``target_dir`` show exactly
``payload`` (relative path -> ``FileProjection(data, mode)``), switching from
the old contents to the new in one step:

* every path is checked first (``paths.check_relative``: not absolute, no
  ``..``); one bad path fails the whole write and nothing is written;
* the files go into a new timestamped directory ``..YYYY_MM_DD_HH_MM_SS.<rand>``
  (mode 0755), each file then ``chmod``-ed to its mode;
* the symlink ``..data_tmp`` -> that directory is renamed over ``..data``
  (``rename`` is atomic), so a reader sees the old set or the new, never a
  mix;
* each top-level name in the payload is a user-visible symlink
  ``<name> -> ..data/<name>``; names no longer in the payload are removed,
  and so is the old timestamped directory;
* a payload equal to what is there (same paths, bytes and modes) writes
  nothing. ``write`` returns True when it changed the directory.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from node.volumes.paths import check_relative

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


def _read_current(ts_dir: str) -> dict[str, FileProjection] | None:
    out: dict[str, FileProjection] = {}
    try:
        for dirpath, _dirs, files in os.walk(ts_dir):
            for f in files:
                full = os.path.join(dirpath, f)
                st = os.lstat(full)
                with open(full, "rb") as fh:
                    out[os.path.relpath(full, ts_dir)] = FileProjection(fh.read(), st.st_mode & 0o7777)
    except OSError:
        return None
    return out


class AtomicWriter:
    def __init__(self, target_dir: str) -> None:
        self.target_dir = target_dir

    def _old_ts_dir(self) -> str | None:
        try:
            name = os.readlink(os.path.join(self.target_dir, DATA_DIR))
        except OSError:
            return None
        if "/" in name or not name.startswith(".."):
            return None
        return name

    def write(self, payload: dict[str, FileProjection]) -> bool:
        clean: dict[str, FileProjection] = {}
        for rel, proj in payload.items():
            parts = check_relative(rel, "path")
            clean["/".join(parts)] = proj
        os.makedirs(self.target_dir, exist_ok=True)
        old = self._old_ts_dir()
        if old is not None and _read_current(os.path.join(self.target_dir, old)) == clean:
            return False
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        ts_dir = tempfile.mkdtemp(prefix=stamp, dir=self.target_dir)
        os.chmod(ts_dir, 0o755)
        try:
            for rel, proj in clean.items():
                full = os.path.join(ts_dir, rel)
                os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
                fd = os.open(full, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(proj.data)
                os.chmod(full, proj.mode)
            tmp_link = os.path.join(self.target_dir, DATA_DIR_TMP)
            if os.path.lexists(tmp_link):
                os.unlink(tmp_link)
            os.symlink(os.path.basename(ts_dir), tmp_link)
            os.rename(tmp_link, os.path.join(self.target_dir, DATA_DIR))
        except BaseException:
            shutil.rmtree(ts_dir, ignore_errors=True)
            raise
        top = {rel.split("/", 1)[0] for rel in clean}
        for name in sorted(top):
            link = os.path.join(self.target_dir, name)
            want = os.path.join(DATA_DIR, name)
            try:
                if os.readlink(link) == want:
                    continue
            except OSError:
                pass
            if os.path.isdir(link) and not os.path.islink(link):
                shutil.rmtree(link)
            elif os.path.lexists(link):
                os.unlink(link)
            os.symlink(want, link)
        for name in os.listdir(self.target_dir):
            if name.startswith(".."):
                continue
            if name not in top:
                full = os.path.join(self.target_dir, name)
                if os.path.islink(full) or not os.path.isdir(full):
                    os.unlink(full)
                else:
                    shutil.rmtree(full)
        if old is not None and old != os.path.basename(ts_dir):
            shutil.rmtree(os.path.join(self.target_dir, old), ignore_errors=True)
        return True
