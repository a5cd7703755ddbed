"""The one input gate: every image a client sends reaches the app through here.

A client may send an image two ways, and no other: the bytes it uploaded to
this app (Gradio's upload folder, ``POST /gradio_api/upload``) or the bytes
inline, as a ``data:`` URL. A server path named by the client (absolute,
relative, through a symlink, with ``..``, ``file://``, an http URL, with or
without Gradio's ``"meta"`` key) is refused with one sentence that is the same
whether or not the path exists. Uploads and ``data:`` URLs meet the same limits
(:class:`Limits`: bytes, checked before decoding, from the upload's size or the
``data:`` URL's length before base64 decoding; pixels, from the image header)
and the same decoding (:func:`demo.images.load_image`: format allow-list, ICC
profile converted to sRGB, EXIF orientation applied, 8-bit RGB).

API for every tab (import ``from demo import gate``)::

    image = gate.image_input(label="Image", sources=["upload"])  # a gr.Image; the
        # callback receives a PIL.Image.Image (RGB, sRGB, upright) or None
    gate.open_image(value) -> PIL.Image.Image  # a value a client sent: a FileData,
        # its dict, a data: URL string; or a PIL image (what image_input gave: returned as is)
    gate.open_server_file(path) -> PIL.Image.Image  # a file the server chose itself
        # (an example, a test's file); never pass it anything a client sent
    gate.guard(component, check, what) -> component  # the component's value goes through
        # check (e.g. functools.partial(arguments.whole_number, "top_k", low=1, high=20))
        # instead of Gradio's preprocess: a bad one gets the check's one sentence
    gate.refuse(message, what="") -> gr.Error  # raise it: one sentence to the client,
        # one line in the log (repeats collapsed), no traceback
    gate.keep_for(path, seconds)  # a download the app wrote into the upload folder
        # (a trained model's zip) is kept from the sweeper for a while
    gate.GateError  # what open_image / open_server_file raise (a ValueError, message = the sentence)
    gate.configure(Limits(...))  # build_demo does it from the app's settings

The server side, installed by :func:`launch_options` (``demo.launch(**...)``):
:class:`RequestGate`, an ASGI middleware that refuses a JSON request body over
the limit (HTTP 413) or naming a file the client did not upload (HTTP 400,
the sentence as ``{"error": ...}``) before Gradio reads it, and turns a valid
``data:`` URL into an upload, so that Gradio's own handling and the
component's preprocess see only uploads; and :class:`UploadSweeper`, which
keeps the upload folder under ``APP_UPLOAD_CACHE_MB`` and deletes what has
not been used for ``APP_UPLOAD_MAX_AGE_S``.

Other tabs: an image input is ``image_input(...)``; any other argument
component is wrapped in ``guard(component, check)``. A ``gr.File`` (a zip of
training images) needs nothing: the middleware checks every file reference in
every request, whatever the component, so its path must be an upload too (and
a data: URL there must be an image). The sweeper treats the whole upload
folder as the app's: give the app its own ``GRADIO_TEMP_DIR`` when other
Gradio apps share the machine.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import anyio
import gradio as gr
from PIL import Image

from demo import arguments, images

SERVER_PATH_REFUSED = ("This app reads only images uploaded to it or sent inline as a data: URL (an upload is "
                       "deleted after a while); upload the image file again.")
NO_IMAGE = "No image was given; upload a photo or pick an example first."
_FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF"
# data: URL media types that name an allowed format (the bytes still decide: demo.images checks them).
DATA_URL_TYPES = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/pjpeg": "jpg", "image/png": "png",
                  "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp", "image/x-ms-bmp": "bmp",
                  "image/tiff": "tif", "image/avif": "avif"}
# The keys of Gradio's FileData: a dict made of these (with a path or a url) is a file reference.
_FILE_KEYS = {"path", "url", "size", "orig_name", "mime_type", "is_stream", "meta"}
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<base64>;base64)?,",
                       re.ASCII | re.IGNORECASE)

logger = logging.getLogger("demo.refused")


class GateError(ValueError):
    """An input the gate refuses; the message is one sentence a user can act on."""


# ---------------------------------------------------------------- limits

def _env_number(name: str, default: float) -> float:
    """A positive finite number from the environment, or ``default``."""
    try:
        value = float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


@dataclass(frozen=True)
class Limits:
    """What one image may cost: ``max_bytes`` of file (uploads and data: URLs
    alike) and ``max_pixels`` decoded."""

    max_bytes: int = 25 * 2**20
    max_pixels: int = images.DEFAULT_MAX_PIXELS

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """From anything with ``max_upload_mb`` and ``max_pixels`` (demo.service.Settings)."""
        return cls(int(settings.max_upload_mb * 2**20), int(settings.max_pixels))

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(int(_env_number("APP_MAX_UPLOAD_MB", 25) * 2**20), images.max_pixels_from_env())

    @property
    def max_data_url_chars(self) -> int:
        """Base64 characters of ``max_bytes`` (4 per 3 bytes, padded)."""
        return 4 * -(-self.max_bytes // 3)

    @property
    def max_json_body(self) -> int:
        """A request body may carry one inline image of ``max_bytes`` and 1 MB of everything else."""
        return self.max_data_url_chars + 2**20


_limits = Limits.from_env()


def configure(limits: Limits) -> None:
    """Set the limits :func:`image_input` and :func:`open_image` use by default."""
    global _limits
    _limits = limits


def upload_folder() -> Path:
    """Gradio's upload folder (where ``/gradio_api/upload`` writes), as Gradio computes it."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").absolute()


# ---------------------------------------------------------------- what a client may name

def _fields(value) -> tuple[Any, Any] | None:
    """(path, url) of a file reference: a FileData-like object or its dict; None if it is neither."""
    if isinstance(value, dict):
        if not ("path" in value or "url" in value):
            return None
        meta = value.get("meta")
        # Gradio reads a dict marked as FileData as a file whatever other keys it has: an extra
        # key must not take it past the check.
        marked = isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"
        if not marked and not set(value) <= _FILE_KEYS:
            return None
        return value.get("path"), value.get("url")
    if hasattr(value, "path") and hasattr(value, "url") and not isinstance(value, (str, bytes)):
        return getattr(value, "path"), getattr(value, "url")
    return None


def decode_data_url(url: str, limits: Limits) -> tuple[bytes, str]:
    """The bytes of an image ``data:`` URL and their file extension; checks the
    media type and the length before decoding anything."""
    match = _DATA_URL.match(url[:300])
    if match is None or not match.group("base64"):
        raise GateError("The data: URL is not a base64-encoded image; send it as data:image/png;base64,<the bytes> "
                        f"(or another {_FORMAT_NAMES} type), or upload the file.")
    media_type = (match.group("type") or "").lower()
    if media_type not in DATA_URL_TYPES:
        shown = f" ({media_type})" if media_type and len(media_type) <= 40 else ""
        raise GateError(f"The data: URL's type{shown} is not an image type this app reads; send a "
                        f"{_FORMAT_NAMES} image.")
    encoded = url[match.end():]
    if len(encoded) > limits.max_data_url_chars + 4:
        raise GateError(f"The inline image is larger than the {limits.max_bytes / 2**20:g} MB this app accepts; "
                        "send a smaller image.")
    try:
        data = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise GateError("The data: URL's base64 text is damaged; encode the image again, or upload the file.") \
            from None
    if len(data) > limits.max_bytes:
        raise GateError(f"The inline image is larger than the {limits.max_bytes / 2**20:g} MB this app accepts; "
                        "send a smaller image.")
    return data, DATA_URL_TYPES[media_type]


def uploaded_file(path) -> Path:
    """``path`` if it names a regular file the client uploaded (inside
    :func:`upload_folder`, no ``..``, no symlink on the way); otherwise
    :class:`GateError` with the one sentence that never says whether a path exists."""
    if not isinstance(path, str) or not path or "\x00" in path or not os.path.isabs(path):
        raise GateError(SERVER_PATH_REFUSED)
    if ".." in Path(path).parts:
        raise GateError(SERVER_PATH_REFUSED)
    folder = upload_folder()
    given = Path(os.path.normpath(path))
    try:
        inside = given.relative_to(os.path.normpath(folder))
    except ValueError:
        raise GateError(SERVER_PATH_REFUSED) from None
    try:
        real_folder = Path(os.path.realpath(folder))
        # No symlink below the folder: the real path is the folder's real path plus the same parts.
        if not inside.parts or Path(os.path.realpath(given)) != real_folder / inside:
            raise GateError(SERVER_PATH_REFUSED)
        if not stat.S_ISREG(os.lstat(given).st_mode):
            raise GateError(SERVER_PATH_REFUSED)
    except OSError:
        raise GateError(SERVER_PATH_REFUSED) from None
    return given


def check_reference(value, limits: Limits | None = None) -> Path | tuple[bytes, str]:
    """What a client's file value may be: an uploaded file (its :class:`Path`)
    or a ``data:`` URL ((bytes, extension)). Raises :class:`GateError`."""
    limits = limits or _limits
    if isinstance(value, str):
        if not value.startswith("data:"):  # a bare string is a path the client names, never an upload
            raise GateError(SERVER_PATH_REFUSED)
        path, url = None, value
    else:
        fields = _fields(value)
        if fields is None:
            raise GateError(NO_IMAGE if value is None else SERVER_PATH_REFUSED)
        path, url = fields
    if isinstance(url, str) and url.startswith("data:"):
        return decode_data_url(url, limits)
    uploaded = uploaded_file(path)
    try:
        size = os.stat(uploaded).st_size
    except OSError:  # swept since
        raise GateError(SERVER_PATH_REFUSED) from None
    if size > limits.max_bytes:
        raise GateError(f"The file is larger than the {limits.max_bytes / 2**20:g} MB this app accepts; upload a "
                        "smaller image.")
    try:
        # Recently used from the moment it is approved: a sweep between this check and the
        # callback's open deletes the least recently used first, so not this file.
        os.utime(uploaded)
    except OSError:
        pass
    return uploaded


# ---------------------------------------------------------------- opening images

# Images this gate made, by id: an image handed back (a callback calling
# open_image on what image_input gave it) is not opened twice. PIL images are
# unhashable, hence ids; an entry goes when its image does.
_opened: "weakref.WeakValueDictionary[int, Image.Image]" = weakref.WeakValueDictionary()


def _remember(image: Image.Image) -> Image.Image:
    _opened[id(image)] = image
    return image


def open_image(value, limits: Limits | None = None) -> Image.Image:
    """The 8-bit RGB, sRGB, upright image a client sent (see the module
    docstring for what it may send), or :class:`GateError`."""
    if isinstance(value, Image.Image):
        # Only code in this process makes PIL images (JSON cannot carry one):
        # one this gate made is returned as is, another (a test's, a
        # benchmark's) is brought to 8-bit RGB.
        return value if _opened.get(id(value)) is value else _remember(images.to_rgb8(value))
    if value is None or value == "":
        raise GateError(NO_IMAGE)
    limits = limits or _limits
    reference = check_reference(value, limits)  # touches an upload: recently used
    source = reference if isinstance(reference, Path) else reference[0]
    try:
        return _remember(images.load_image(source, max_pixels=limits.max_pixels))
    except images.ImageInputError as error:
        raise GateError(str(error)) from None


def open_server_file(path: str | os.PathLike, limits: Limits | None = None) -> Image.Image:
    """A file the server chose (an example, a test's file), through the same
    decoding and limits. Never call it with a value a client sent."""
    limits = limits or _limits
    try:
        return _remember(images.load_image(path, max_pixels=limits.max_pixels))
    except images.ImageInputError as error:
        raise GateError(str(error)) from None


def image_input(limits: Limits | None = None, **image_options) -> gr.Image:
    """A ``gr.Image`` whose value reaches the callback through :func:`open_image`:
    a PIL image (RGB, sRGB, upright) or None when empty. ``image_options`` are
    gr.Image's (label, sources, height, elem_id, ...; ``type`` is the gate's)."""
    image_options.pop("type", None)
    component = gr.Image(type="pil", **image_options)

    # An instance attribute, not a subclass: Gradio writes a .pyi stub next to
    # any module that subclasses a component.
    def preprocess(payload):
        if payload is None:
            return None
        try:
            return open_image(payload, limits)
        except GateError as error:
            raise refuse(str(error), "image") from None

    component.preprocess = preprocess
    return component


def guard(component, check: Callable[[Any], Any], what: str = ""):
    """Have ``component``'s value go through ``check`` (a :mod:`demo.arguments`
    checker with its name and range bound) in place of Gradio's own preprocess,
    whose refusals of an out-of-range, non-numeric or NaN value were a generic
    error and a traceback in the log. Returns ``component``."""
    def preprocess(payload):
        try:
            return check(payload)
        except (arguments.ArgumentError, GateError) as error:
            raise refuse(str(error), what) from None
        except Exception as error:  # noqa: BLE001 - a check's own bug is still one sentence, never a traceback
            logger.info("%s%s in a check: %s", f"{what}: " if what else "", type(error).__name__,
                        arguments._shown(str(error)))
            raise gr.Error(f"{what or 'An argument'} could not be read; send a value of the kind the field "
                           "shows and try again.", print_exception=False) from None

    component.preprocess = preprocess
    return component


# ---------------------------------------------------------------- refusals, logged one line each

class RepeatFilter(logging.Filter):
    """Lets through the first of a run of identical messages and then at most
    one a ``window`` of seconds (saying how many it held back), and at most
    ``burst`` lines a window in all: a script sending bad requests in a loop
    cannot flood the log."""

    def __init__(self, window: float = 60.0, burst: int = 30, max_keys: int = 10_000):
        super().__init__()
        self.window, self.burst, self.max_keys = window, burst, max_keys
        self._last: dict[str, tuple[float, int]] = {}
        self._window_start, self._lines, self._held = 0.0, 0, 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage()
        now = time.monotonic()
        with self._lock:
            if now - self._window_start > self.window:
                self._window_start, self._lines = now, 0
            # Distinct messages within one window (a script varying its bad request) would grow
            # the table without bound: past max_keys it starts afresh, which at worst lets a few
            # repeats through (still at most burst lines a window).
            if len(self._last) >= self.max_keys and key not in self._last:
                self._last.clear()
            seen, held = self._last.get(key, (-self.window - 1, 0))
            if now - seen <= self.window or self._lines >= self.burst:
                self._last[key] = (seen, held + 1) if now - seen <= self.window else (now, 0)
                self._held += 1
                return False
            self._last[key] = (now, 0)
            self._lines += 1
            if self._held:
                record.msg, record.args = f"{key} ({self._held} similar refusals not logged before this one)", ()
                self._held = 0
        return True


def _refusal_handler() -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s refused: %(message)s"))
    handler.addFilter(RepeatFilter())
    return handler


if not logger.handlers:
    logger.addHandler(_refusal_handler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def refuse(message: str, what: str = "") -> gr.Error:
    """The ``gr.Error`` to raise for a refused input: ``message`` (one
    sentence) to the client, one log line ("what: message"), no traceback."""
    logger.info("%s%s", f"{what}: " if what else "", message)
    return gr.Error(message, print_exception=False)


# ---------------------------------------------------------------- the upload folder, bounded

# Files the app itself wrote into the upload folder for a client to download
# (a trained model's zip): path -> when protection ends (time.monotonic).
# Such a file may be larger than the folder's whole bound, so the sweeper
# would delete it before it is fetched; at most MAX_KEPT are protected at a
# time, so the disk used stays bounded (the oldest is then swept as usual).
MAX_KEPT = 3
_kept: dict[str, float] = {}
_kept_lock = threading.Lock()


def keep_for(path: str | os.PathLike, seconds: float = 3600) -> None:
    """Keep ``path`` (a download the app wrote into the upload folder) from the sweeper for ``seconds``."""
    with _kept_lock:
        now = time.monotonic()
        for name, until in list(_kept.items()):
            if until < now:
                del _kept[name]
        _kept[os.path.normpath(str(path))] = now + seconds
        while len(_kept) > MAX_KEPT:
            del _kept[min(_kept, key=_kept.get)]


def kept_files() -> set[str]:
    """The paths :func:`keep_for` protects now."""
    with _kept_lock:
        now = time.monotonic()
        return {name for name, until in _kept.items() if until >= now}


class UploadSweeper:
    """Keeps the upload folder under ``max_bytes`` and ``max_files`` (least
    recently used files deleted first: :func:`open_image` touches what it reads),
    and deletes files unused for ``max_age_s``. Files ``protected()`` names
    (the examples Gradio copied there) and those :func:`keep_for` protects stay.

    Uploads are counted as their bytes arrive (:meth:`take`), not as the
    client claims them: when the bytes on disk at the last walk plus those
    arrived since would pass the bound, the folder is walked
    (:meth:`make_room`) before the next bytes reach Gradio, and cleared down to
    ``low_water`` of the bound so that a steady stream of uploads walks it
    once every tenth of the bound, not once a chunk."""

    def __init__(self, folder: Path | None = None, max_bytes: int = 100 * 2**20, max_files: int = 2000,
                 max_age_s: float = 3600, protected: Callable[[], Iterable[str]] = lambda: (),
                 low_water: float = 0.9):
        self.folder = folder or upload_folder()
        self.max_bytes, self.max_files, self.max_age_s = max_bytes, max_files, max_age_s
        self.protected, self.low_water = protected, low_water
        self._lock = threading.Lock()  # one walk at a time
        self._counts = threading.Lock()  # the two counts below; never held during a walk
        self._timer: threading.Thread | None = None
        self._last_sweep = 0.0
        self._on_disk: int | None = None  # bytes found by the last walk (None: not walked yet)
        self._arrived = 0  # upload bytes counted since (taken by the walk's end, not found by it)
        self._unwritten = 0  # of those, bytes handed to Gradio and perhaps not in a file yet

    @classmethod
    def from_env(cls, protected: Callable[[], Iterable[str]] = lambda: ()) -> "UploadSweeper":
        return cls(max_bytes=int(_env_number("APP_UPLOAD_CACHE_MB", 100) * 2**20),
                   max_age_s=_env_number("APP_UPLOAD_MAX_AGE_S", 3600), protected=protected)

    def sweep(self, incoming: int = 0, target: int | None = None) -> int:
        """Delete what is too old, then the least recently used until the
        folder, the uploads being stored and ``incoming`` bytes fit in
        ``target`` (default: the bound); returns the bytes freed."""
        with self._lock:
            return self._sweep(incoming, self.max_bytes if target is None else target)

    def _sweep(self, incoming: int, target: int) -> int:
        self._last_sweep = time.monotonic()
        with self._counts:
            counted = self._arrived - self._unwritten  # in files already: the walk finds them
        keep = {os.path.normpath(p) for p in self.protected()} | kept_files()
        files = []
        for directory, _, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if os.path.normpath(path) not in keep:
                    files.append((info.st_mtime, info.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        now, freed, count = time.time(), 0, len(files)
        for mtime, size, path in files:
            with self._counts:
                pending = self._arrived - counted  # handed to Gradio, not in the files found
            if (total + pending + incoming <= target and count <= self.max_files
                    and now - mtime <= self.max_age_s):
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total, freed, count = total - size, freed + size, count - 1
            try:
                os.rmdir(os.path.dirname(path))  # the content-hash folder, once empty
            except OSError:
                pass
        with self._counts:
            self._on_disk, self._arrived = total, self._arrived - counted
        return freed

    def sweep_soon(self, incoming: int = 0) -> None:
        """:meth:`sweep`, unless one ran in the last second (every request
        may write answers there; a walk of the folder per request is not needed)."""
        if time.monotonic() - self._last_sweep >= 1.0:
            self.sweep(incoming)

    def take(self, size: int) -> bool:
        """Count ``size`` bytes of an upload that have arrived and are about
        to be stored; False (nothing counted) if they would pass the bound:
        call :meth:`make_room` first. Quick: for the event loop."""
        with self._counts:
            if self._on_disk is None or self._on_disk + self._arrived + size > self.max_bytes:
                return False
            self._arrived += size
            self._unwritten += size
            return True

    def stored(self, size: int) -> None:
        """``size`` bytes :meth:`take` counted are in a file now (Gradio
        asks for an upload's next chunk once it has written the last one)."""
        with self._counts:
            self._unwritten -= size

    def make_room(self, size: int) -> None:
        """Walk the folder, unless another walk has made room for ``size``
        bytes meanwhile, clearing it down to ``low_water`` of the bound; then
        count them (they are stored whatever the walk could free)."""
        with self._lock:
            if not self.take(size):
                self._sweep(size, int(self.max_bytes * self.low_water))
                with self._counts:
                    self._arrived += size
                    self._unwritten += size

    def start(self, every_s: float = 300) -> None:
        """Sweep every ``every_s`` seconds as well, so that an idle server forgets old uploads."""
        if self._timer is not None:
            return

        def loop():
            while True:
                time.sleep(every_s)
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - a sweep must never stop the next one
                    logger.warning("upload sweep failed", exc_info=True)

        self._timer = threading.Thread(target=loop, name="upload-sweeper", daemon=True)
        self._timer.start()


def folder_bytes(folder: Path | None = None) -> int:
    """Bytes of the files under the upload folder (for tests and benchmarks)."""
    total = 0
    for directory, _, names in os.walk(folder or upload_folder()):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- the HTTP side

def _save_inline(data: bytes, extension: str, sweeper: UploadSweeper | None = None) -> str:
    """Write a data: URL's bytes into the upload folder as Gradio writes an
    upload (a folder named by the content's hash), counted by ``sweeper`` as
    an upload's bytes are; returns the path."""
    folder = upload_folder() / hashlib.sha256(data).hexdigest()
    path = folder / f"inline.{extension}"
    counted = 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            os.utime(path)
        else:
            if sweeper is not None and not sweeper.take(len(data)):
                sweeper.make_room(len(data))
            counted = len(data)
            fd, staging = tempfile.mkstemp(dir=folder, prefix=".inline.")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(staging, path)
    except OSError:
        raise GateError("The server could not store the image just now; try again in a minute.") from None
    finally:
        if sweeper is not None and counted:
            sweeper.stored(counted)
    return str(path)


def check_request(payload, limits: Limits | None = None, image_slots: Iterable[int] = (),
                  sweeper: UploadSweeper | None = None) -> bool:
    """Check every file reference in a JSON request ``payload`` (in place):
    a data: URL becomes an upload, a path must be an upload. ``image_slots``:
    the positions in ``payload["data"]`` that are image inputs, where a bare
    string may only be a data: URL. ``sweeper`` counts the images a data: URL
    brings into the upload folder, as uploads are. Returns whether anything
    changed; raises :class:`GateError`."""
    limits = limits or _limits
    changed = False
    data = payload.get("data") if isinstance(payload, dict) else None
    for slot in image_slots:
        if not isinstance(data, list) or slot >= len(data) or data[slot] is None:
            continue
        value = data[slot]
        if isinstance(value, str) and value.startswith("data:"):
            data[slot] = {"url": value, "path": ""}
            changed = True
        elif not isinstance(value, dict) or _fields(value) is None:
            raise GateError(SERVER_PATH_REFUSED)

    def visit(value):
        nonlocal changed
        if isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            fields = _fields(value)
            if fields is None:
                for item in value.values():
                    visit(item)
                return
            reference = check_reference(value, limits)
            if not isinstance(reference, Path):
                data, extension = reference
                value.clear()
                value.update(path=_save_inline(data, extension, sweeper), orig_name=f"inline.{extension}", size=len(data),
                             meta={"_type": "gradio.FileData"})
                changed = True

    visit(payload)
    return changed


class RequestGate:
    """ASGI middleware in front of Gradio (see the module docstring)."""

    def __init__(self, app, limits: Limits | None = None, sweeper: UploadSweeper | None = None,
                 image_slots: Callable[[str, Any], Iterable[int]] = lambda path, payload: ()):
        self.app, self.limits, self.sweeper, self.image_slots = app, limits, sweeper, image_slots

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        limits = self.limits or _limits
        if self.sweeper is not None:
            self.sweeper.start()  # here, not at launch: only a serving process sweeps
        headers = dict(scope.get("headers") or [])
        length = _int(headers.get(b"content-length"))
        if scope["path"].rstrip("/").endswith("/upload"):
            if self.sweeper is not None:
                # Counted as the bytes arrive, never by the client's claim: a claimed length that
                # is never sent, or a body without one, moves nothing.
                sweeper, last = self.sweeper, 0

                async def counting():
                    nonlocal last
                    sweeper.stored(last)  # Gradio asks for more once it has written what it had
                    last = 0
                    message = await receive()
                    size = len(message.get("body", b""))
                    if size and not sweeper.take(size):
                        await anyio.to_thread.run_sync(sweeper.make_room, size)
                    last = size
                    return message

                try:
                    return await self._upload(scope, counting, send)
                finally:
                    sweeper.stored(last)
            return await self._upload(scope, receive, send)
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/"):
            return await self.app(scope, receive, send)  # not JSON; Gradio reads files only at /upload
        # Any other body: FastAPI parses JSON without a content type too.
        too_large = (f"The request is larger than the {limits.max_json_body / 2**20:.0f} MB this app accepts; send "
                     "a smaller image, or upload the file instead of sending it inline.")
        if length is not None and length > limits.max_json_body:
            return await _answer(send, 413, too_large, scope)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > limits.max_json_body:
                return await _answer(send, 413, too_large, scope)
            if not message.get("more_body"):
                break
        body = bytes(body)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None  # Gradio answers what it cannot parse
        if payload is not None:
            try:
                slots = self.image_slots(scope["path"], payload)
                if await anyio.to_thread.run_sync(check_request, payload, limits, slots, self.sweeper):
                    body = json.dumps(payload).encode()
            except GateError as error:
                return await _answer(send, 400, str(error), scope)
            if self.sweeper is not None:
                await anyio.to_thread.run_sync(self.sweeper.sweep_soon)
        scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers") or [] if k != b"content-length"]
                     + [(b"content-length", str(len(body)).encode())])
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _upload(self, scope, receive, send):
        """Gradio's upload, with an upload it cannot parse (a file part without
        a file name raised a TypeError: HTTP 500) answered in one sentence."""
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # noqa: BLE001 - whatever Gradio raised, the client gets one sentence
            if started:
                raise
            await _answer(send, 400, "The upload could not be read; send each image as a multipart file part "
                                     "named \"files\" with a file name.", scope)


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _printable(text, limit: int = 200) -> str:
    """Client text for the log: control characters and non-ASCII escaped, at most ``limit`` characters."""
    text = str(text).encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


async def _answer(send, status: int, message: str, scope) -> None:
    """An error response carrying the one sentence, logged as one line."""
    # The path is percent-decoded client text: escaped, so a %0A cannot start a forged log line.
    logger.info("%s %s: %s", scope.get("method"), _printable(scope.get("path")), message)
    body = json.dumps({"error": message, "detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def protected_files(demo: gr.Blocks) -> Callable[[], set[str]]:
    """The files Gradio keeps in the upload folder for ``demo`` (its examples): never swept."""
    def files() -> set[str]:
        kept = set()
        for block in demo.blocks.values():
            kept.update(getattr(block, "keep_in_cache", ()))
        return kept
    return files


def image_slots(demo: gr.Blocks) -> Callable[[str, Any], set[int]]:
    """Which positions of a request's ``data`` are image inputs, from the
    request's path (``.../call/<api_name>``) or its ``fn_index`` (the page's
    ``.../queue/join``)."""
    by_name, by_index = {}, {}

    def slots(path: str, payload) -> set[int]:
        if not by_index:
            for index, fn in getattr(demo, "fns", {}).items():
                positions = {i for i, block in enumerate(fn.inputs) if isinstance(block, gr.Image)}
                by_index[index] = positions
                if isinstance(fn.api_name, str):
                    by_name[fn.api_name] = positions
        match = re.search(r"/(?:call|run|api)/([^/]+)/?$", path)
        if match:
            return by_name.get(match.group(1), set())
        index = payload.get("fn_index") if isinstance(payload, dict) else None
        return by_index.get(index, set()) if isinstance(index, int) else set()

    return slots


def launch_options(demo: gr.Blocks, limits: Limits | None = None) -> dict:
    """``demo.launch`` options that put the gate and the sweeper in front of the app."""
    from starlette.middleware import Middleware

    sweeper = UploadSweeper.from_env(protected_files(demo))
    return dict(app_kwargs={"middleware": [Middleware(RequestGate, limits=limits, sweeper=sweeper,
                                                      image_slots=image_slots(demo))]})
