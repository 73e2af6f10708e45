"""A node directory's disk usage, measured again every housekeeping turn with few system calls.

Contract
--------
* ``dir_usage(path, max_entries)``: the apparent bytes of the regular files
  under ``path`` (symlinks neither followed nor counted; the walk stops before
  a directory once ``max_entries`` entries were seen). ``DirUsage(path,
  max_entries).measure()`` returns the same, measured again and again.
* The saving: a directory whose mtime is unchanged since it was listed is not
  listed again (opendir, getdents, close); one ``stat`` of the directory
  replaces them. Its files are still ``stat``-ed every time, since a file
  grows without its directory changing. A directory's mtime changes when an
  entry is added, removed or renamed into it, which is how the fake runtime's
  journal, the summary file and ``kemu chaos disk-fill``'s file arrive.
* Timestamps are coarse (the kernel's clock tick), so a change in the same tick
  as a listing can leave the mtime equal. A listing is kept only when taken
  at least ``RACY_NS`` after the directory's mtime, as git does for its index.
* Why: the kubelet measures its node root every 10 s (the eviction manager's
  nodefs signal); at 10,000 nodes that walk was about a tenth of a node host's
  CPU with no pods to start.
"""
from __future__ import annotations

import os
import time
from typing import Callable

DEFAULT_MAX_ENTRIES = 100_000
RACY_NS = 2_000_000_000


def dir_usage(path: str, max_entries: int = DEFAULT_MAX_ENTRIES) -> int:
    """One measure of ``path`` (see the contract)."""
    return DirUsage(path, max_entries).measure()


class DirUsage:
    def __init__(self, path: str, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.max_entries = max_entries
        self.clock_ns = clock_ns
        # directory -> (its mtime_ns when listed, subdirectories, regular files, entries)
        self._listings: dict[str, tuple[int, list[str], list[str], int]] = {}

    def measure(self) -> int:
        total, seen, stack = 0, 0, [self.path]
        old, kept = self._listings, {}
        now = self.clock_ns()
        while stack and seen < self.max_entries:
            d = stack.pop()
            try:
                mtime = os.stat(d, follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            listing = old.get(d)
            if listing is None or listing[0] != mtime:
                listing = self._list(d, mtime)
                if listing is None:
                    continue
            if now - mtime >= RACY_NS:
                kept[d] = listing
            _, subdirs, files, entries = listing
            seen += entries
            stack.extend(subdirs)
            for f in files:
                try:
                    total += os.stat(f, follow_symlinks=False).st_size
                except OSError:
                    continue
        self._listings = kept
        return total

    @staticmethod
    def _list(d: str, mtime: int) -> tuple[int, list[str], list[str], int] | None:
        subdirs: list[str] = []
        files: list[str] = []
        entries = 0
        try:
            with os.scandir(d) as it:
                for e in it:
                    entries += 1
                    try:
                        if e.is_dir(follow_symlinks=False):
                            subdirs.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            files.append(e.path)
                    except OSError:
                        continue
        except OSError:
            return None
        return mtime, subdirs, files, entries
