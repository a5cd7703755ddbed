"""Pictures handed to Gradio as PNG files written here, not as arrays.

Gradio saves an array output under a name made from its bytes, rewriting the
file in place every time (``processing_utils.save_pil_to_cache``): two clients
asking for the same picture at once (the same example, the same view) had one
client's download cut short while the other's answer truncated and rewrote the
file under it (3 of 200 requests in tests/test_load.py's 16-client run). A file
path instead goes through ``save_file_to_cache``, which copies under a
temporary name and renames into place, and only when the copy is not there.

The files written here are only read by that copy, right after the event
returns; the last :data:`KEEP` are kept and older ones deleted.
"""
from __future__ import annotations

import collections
import os
import tempfile
import threading

import numpy as np
from PIL import Image

KEEP = 256  # files at most: more than the pictures of every event that can run at once
_FOLDER = None
_written: collections.deque[str] = collections.deque()
_lock = threading.Lock()


def png_file(picture: np.ndarray | None) -> str | None:
    """``picture`` (uint8 ``[H, W, 3]``) as a new PNG file; None stays None."""
    global _FOLDER
    if picture is None:
        return None
    with _lock:
        if _FOLDER is None:
            _FOLDER = tempfile.mkdtemp(prefix="inside-classifier-pictures-")
    handle, path = tempfile.mkstemp(suffix=".png", dir=_FOLDER)
    with os.fdopen(handle, "wb") as f:
        Image.fromarray(np.ascontiguousarray(picture)).save(f, format="PNG")
    with _lock:
        _written.append(path)
        old = [_written.popleft() for _ in range(len(_written) - KEEP)]
    for stale in old:
        try:
            os.unlink(stale)
        except OSError:
            pass
    return path
