"""Files the app writes for Gradio to serve: pictures as PNG files (not
arrays) and the raw maps as .npy, each kind in a private temporary folder
that keeps only its newest files.

Why pictures go as files: Gradio saves an array output under a name made from
its bytes, rewriting the file in place every time
(``processing_utils.save_pil_to_cache``): two clients asking for the same
picture at once (the same example, the same view) had one client's download
cut short while the other's answer truncated and rewrote the file under it
(3 of 200 requests in tests/test_load.py's 16-client run). A file path goes
through ``save_file_to_cache`` instead, which copies under a temporary name
and renames into place, and only when the copy is not there yet.
"""
from __future__ import annotations

import collections
import itertools
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image


class RecentFiles:
    """New file paths in a folder of their own, made on first use; the newest
    ``keep`` files are kept and older ones deleted."""

    def __init__(self, prefix: str, keep: int):
        self.prefix, self.keep = prefix, keep
        self.folder: Path | None = None
        self._written: collections.deque[Path] = collections.deque()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def new_path(self, name: str) -> Path:
        """A path for a new file called ``name`` (made unique), after deleting the oldest beyond ``keep``."""
        with self._lock:
            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix=self.prefix))
            stem, dot, suffix = name.rpartition(".")
            path = self.folder / f"{stem}.{next(self._counter)}{dot}{suffix}"
            self._written.append(path)
            stale = [self._written.popleft() for _ in range(max(0, len(self._written) - self.keep))]
        for old in stale:
            old.unlink(missing_ok=True)
        return path


# Pictures are read only by Gradio's copy, right after the event returns: keep
# more than the pictures of every event that can run at once.
PICTURES = RecentFiles("inside-classifier-pictures-", keep=256)


def png_file(picture: np.ndarray | None) -> str | None:
    """``picture`` (uint8 ``[H, W, 3]``) as a new PNG file; None stays None."""
    if picture is None:
        return None
    path = PICTURES.new_path("picture.png")
    Image.fromarray(np.ascontiguousarray(picture)).save(path, format="PNG")
    return str(path)
