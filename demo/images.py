"""Turning an uploaded file into an 8-bit RGB PIL image, or refusing it.

Pure functions: no Gradio here. Every way a file can be wrong (empty, not an
image, truncated, too many pixels, an unsupported format) ends in
:class:`ImageInputError`, whose message is one sentence saying what to do; the
UI turns it into a ``gr.Error``. What is accepted costs a bounded amount of
memory and time whatever its shape: the pixel count is checked from the header
before decoding, conversions work in place in 32-bit floats, a strip longer
than :data:`MAX_ASPECT_RATIO` is cut to its centre before anything resizes it,
and images above :data:`LARGE_IMAGE_PIXELS` are decoded one at a time.
"""
from __future__ import annotations

import contextlib
import io
import mmap
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

DEFAULT_MAX_PIXELS = 40_000_000
# Longer side / shorter side kept at most. Every model sees a centre crop of the
# shorter side (or the whole image squashed to a square), so a longer strip only
# costs memory: resizing a 40000 x 1 image's shorter side to 248 pixels makes a
# 9920000 x 248 image (7 GB and half a minute). A panorama (up to about 12 : 1)
# is kept whole.
MAX_ASPECT_RATIO = 20
# Decoding a large image holds hundreds of MB for a moment (a 40-megapixel RGBA
# PNG about 0.7 GB); with several requests at once (classification runs up to
# eight) those above this size take turns, so that a few large uploads cannot
# together exhaust the memory every user shares. Smaller images never wait.
LARGE_IMAGE_PIXELS = 16_000_000
_large_image_turn = threading.Lock()
_LOW_MEMORY = "The server has too little memory free to open this image now; upload a smaller image or try again later."

# Formats a browser or a phone produces. Everything else PIL could open (EPS
# runs Ghostscript, PSD, FITS, ...) is refused before any decoding.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF"

_DAMAGED = "The image is damaged or incomplete (perhaps a cut-off download); upload the whole file."
# The first bytes of the allowed formats: a file that starts like one but does
# not open is a damaged image rather than something else.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")

# Files people pick by mistake, told apart by their first bytes, so that the
# refusal says what the file is: (test on the first 32 bytes, what it is).
_KNOWN_OTHER_FORMATS = (
    (lambda head: head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis",
                                                         b"mif1", b"msf1"),
     "a HEIC/HEIF photo (the iPhone's own format)"),
    (lambda head: head[4:8] == b"ftyp" or head.startswith(b"\x1aE\xdf\xa3")
     or (head[:4] == b"RIFF" and head[8:12] == b"AVI "), "a video"),
    (lambda head: head.startswith(b"8BPS"), "a Photoshop (PSD) file"),
    (lambda head: head.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")) and head[4:6] != b"\x00\x00",
     "an icon (ICO) file"),
    (lambda head: head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")),
     "a JPEG 2000 image"),
    (lambda head: head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")), "a JPEG XL image"),
)

# PIL refuses a compressed PNG text chunk (zTXt, iTXt) that inflates past 1 MB
# as if the image were damaged; a photo editor's metadata (XMP, a thumbnail in
# a comment) can be that large. 16 MB per chunk, and PIL's own 64 MB for all
# text together, still bound what a chunk can inflate to.
PNG_MAX_TEXT_CHUNK = 16 * 2**20
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, PNG_MAX_TEXT_CHUNK)
# PIL reads a PNG's chunks one at a time in Python: 2 million 15-byte chunks
# took 11 s. An image needs a handful (even a PNG split into 8 KB data chunks
# has 3,200 in 25 MB); more than this is refused after a scan of the chunk
# headers alone, which stops at the limit (tens of milliseconds).
MAX_PNG_CHUNKS = 50_000

_TRANSPARENT_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageInputError(ValueError):
    """A file the app will not classify. The message is one sentence a user can act on."""


def max_pixels_from_env() -> int:
    """The pixel limit: ``APP_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS` (also
    for a value that is not a positive number)."""
    value = os.environ.get("APP_MAX_PIXELS", "")
    try:
        pixels = int(float(value)) if value.strip() else DEFAULT_MAX_PIXELS
    except (ValueError, OverflowError):  # "many", "nan", "inf"
        return DEFAULT_MAX_PIXELS
    return pixels if pixels > 0 else DEFAULT_MAX_PIXELS


def configure_pil(max_pixels: int) -> None:
    """Make PIL's own decompression-bomb guard agree with the app's limit
    (it warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that);
    :func:`load_image` checks the size itself as well."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def load_image(source: str | os.PathLike | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``source`` (a file's path, or its bytes) as an 8-bit RGB image in
    sRGB, upright (EXIF orientation applied, an embedded ICC profile converted
    to sRGB).

    Animated images give their first frame, multi-page TIFFs their first page.
    The size is checked from the header, before any pixel is decoded; a strip
    longer than :data:`MAX_ASPECT_RATIO` gives its centre (see :func:`central_part`).
    Raises :class:`ImageInputError`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageInputError("The file is empty; upload a photo instead.")
        with io.BytesIO(data) as stream:
            return _load(stream, data[:32], memoryview(data), max_pixels)
    path = Path(source)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                raise ImageInputError("The file is empty; upload a photo instead.")
            head = stream.read(32)
            stream.seek(0)
            with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                _check_png_chunks(head, mapped)
            return _load(stream, head, None, max_pixels)
    except OSError as error:
        raise ImageInputError("The file could not be read; upload it again.") from error


def _load(stream, head: bytes, data: memoryview | None, max_pixels: int) -> Image.Image:
    if data is not None:
        _check_png_chunks(head, data)
    with warnings.catch_warnings():
        # The size check below replaces PIL's DecompressionBombWarning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream, formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as error:
            raise ImageInputError(_too_large_message(None, max_pixels)) from error
        except Exception as error:  # UnidentifiedImageError, SyntaxError, struct.error, ...
            if head.startswith((b"II*\x00", b"MM\x00*")):
                stream.seek(0)
                pixels = read_float_tiff(stream.read(), max_pixels)  # the one TIFF kind PIL cannot open
                if pixels is not None:
                    return _with_original_size(central_part(pixels), pixels.size)
            raise ImageInputError(_unreadable_message(head)) from error
        with image:
            _check_size(image.size, max_pixels)
            large = image.size[0] * image.size[1] > LARGE_IMAGE_PIXELS
            with _large_image_turn if large else contextlib.nullcontext():
                return _decode(image, max_pixels)


def _with_original_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image``, with ``info["original_size"]`` = ``size`` when :func:`central_part`
    cut it from a longer strip: the size the page tells the user about."""
    if image.size != size:
        image.info["original_size"] = size
    return image


def _check_png_chunks(head: bytes, data) -> None:
    """Refuse a PNG of more than :data:`MAX_PNG_CHUNKS` chunks, reading only chunk headers."""
    if not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return
    position, end, chunks = 8, len(data), 0
    while position + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IEND":
            return
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ImageInputError(f"This PNG is split into more than {MAX_PNG_CHUNKS} chunks, far more than an image "
                                  "needs; save it again as an ordinary PNG and upload that.")
        position += 12 + length


def _decode(image: Image.Image, max_pixels: int) -> Image.Image:
    """The opened ``image``'s first frame, decoded, upright, as 8-bit RGB."""
    try:
        image.seek(0)
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageInputError(_too_large_message(image.size, max_pixels)) from error
    except MemoryError as error:
        raise ImageInputError(_LOW_MEMORY) from error
    except Exception as error:  # OSError "truncated", SyntaxError, ValueError, zlib.error, EOFError ...
        raise ImageInputError(_DAMAGED) from error
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        upright = image.copy()
    try:
        return _with_original_size(to_rgb8(to_srgb(central_part(upright))), upright.size)
    except MemoryError as error:
        raise ImageInputError(_LOW_MEMORY) from error
    except Exception as error:  # a colour mode PIL cannot convert ("conversion from X to Y not supported")
        raise ImageInputError(f"The colours of this image ({upright.mode}) cannot be converted to RGB; save it as "
                              "an ordinary JPEG or PNG and upload that.") from error


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Image modes with an ICC conversion to sRGB, and the mode it gives (alpha kept).
_ICC_OUTPUT_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}


def to_srgb(image: Image.Image) -> Image.Image:
    """``image`` with its embedded ICC profile (if any) converted to sRGB, the
    colour space every model was trained in.

    A phone's photo is usually Display P3: read as sRGB, its colours are duller
    and the probabilities move by up to 0.05 (0.17 for a ProPhoto-like
    profile). Relative colorimetric intent, as browsers show such photos. A
    profile lcms cannot use, or one that does not fit the image's mode, leaves
    the pixels as stored (what the app did before).
    """
    profile = image.info.get("icc_profile")
    output_mode = _ICC_OUTPUT_MODES.get(image.mode)
    if not profile or output_mode is None:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode=output_mode,
                                         renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


def central_part(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> Image.Image:
    """``image``, or its centre cut to ``max_ratio`` : 1 when it is longer than that.

    What a centre-crop model sees lies inside the kept part (a square of the
    shorter side at most), so its input is the same up to resampling by a
    fraction of a pixel; a model that squashes the whole image to a square
    sees the kept part squashed (no model reads a 20 : 1 strip well anyway).
    """
    width, height = image.size
    short = min(width, height)
    long_max = max(1, int(short * max_ratio))
    if max(width, height) <= long_max:
        return image
    if width > height:
        left = (width - long_max) // 2
        return image.crop((left, 0, left + long_max, height))
    top = (height - long_max) // 2
    return image.crop((0, top, width, top + long_max))


def to_rgb8(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit integer
    images are scaled from their full range (65535 -> 255), not clipped;
    float images from [0, 1] (or their own range if they leave it). Numbers are
    converted in one 32-bit float array, in place: a 40-megapixel 16-bit scan
    costs 160 MB, not a gigabyte of float64 temporaries.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if (mode == "P" and "transparency" in image.info) or mode in _TRANSPARENT_MODES:
        if mode == "La":  # premultiplied: PIL converts it to LA only
            image = image.convert("LA")
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.array(image, dtype=np.float32)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            _stretch(values)
        else:
            values /= 257.0  # 65535 -> 255
        return Image.fromarray(_to_uint8(values), "L").convert("RGB")
    if mode == "F":
        values = np.array(image, dtype=np.float32)
        low, high = _finite_range(values)
        if low is not None and (low < 0 or high > 1):
            _stretch(values)
        else:
            values *= 255.0
        return Image.fromarray(_to_uint8(values), "L").convert("RGB")
    # L, 1, P without transparency, CMYK, YCbCr, LAB, HSV: PIL's own conversion.
    return image.convert("RGB")


def _unreadable_message(head: bytes) -> str:
    """Why a file that PIL would not open (among the allowed formats) is
    refused, from its first 32 bytes."""
    is_webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    is_avif = head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis")
    if head.startswith(_SIGNATURES) or is_webp or is_avif:
        return _DAMAGED  # it starts like an image this app reads
    for looks_like, what in _KNOWN_OTHER_FORMATS:
        if looks_like(head):
            return f"This is {what}, which this app cannot read; upload a {_FORMAT_NAMES} file instead."
    return f"This file is not an image this app can read; upload a {_FORMAT_NAMES} file."


def _finite_range(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (None, None)


def _stretch(values: np.ndarray) -> None:
    """Map the finite range of ``values`` onto [0, 255], in place."""
    low, high = _finite_range(values)
    if low is None or high <= low:
        values[...] = 0
        return
    values -= low
    values *= 255.0 / (high - low)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip to 0-255 in place (NaN -> 0, infinities to the ends)."""
    np.nan_to_num(values, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageInputError("The image has no pixels; upload a photo instead.")
    if width * height > max_pixels:
        raise ImageInputError(_too_large_message(size, max_pixels))


def _too_large_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"{max_pixels / 1e6:g} megapixels"
    stated = f"{size[0]} x {size[1]} pixels, more than" if size else "larger than"
    return f"The image is {stated} the {limit} this app accepts; upload a smaller image."


# TIFF tags read by read_float_tiff.
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES, _PLANAR, _PREDICTOR, _SAMPLE_FORMAT = \
    273, 277, 278, 279, 284, 317, 339
_TIFF_TYPES = {3: "H", 4: "I"}  # SHORT, LONG: what these tags use
# Values read from one tag: a tuple of them costs tens of bytes each, so a
# file of a few MB could still ask for hundreds of MB; one strip per row of a
# 65,536-row image is the most this reader needs.
_MAX_TAG_VALUES = 2**16


def read_float_tiff(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image | None:
    """An RGB TIFF of 16-, 32- or 64-bit floating-point samples (what HDR and
    scientific tools write; PIL opens only the one-channel kind) as 8-bit RGB,
    converted like :func:`to_rgb8` converts a float image. Uncompressed or
    Deflate-compressed strips, samples interleaved. ``None`` for any other TIFF
    (the caller then refuses it as PIL saw it); :class:`ImageInputError` for
    one of this kind that is too large or cut off.
    """
    try:
        order = {b"II": "<", b"MM": ">"}[data[:2]]
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        tags = {}
        for index in range(count):
            tag, kind, number, value_at = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * index)
            if kind not in _TIFF_TYPES:
                continue
            size = struct.calcsize(_TIFF_TYPES[kind]) * number
            # A count is up to 2**32: check it against the file before building a format of that
            # many items (a tiny file with a huge count cost gigabytes); a tag that cannot fit is
            # skipped, so an unused one does not matter and a needed one is then missing.
            if size > len(data) or number > _MAX_TAG_VALUES:
                continue
            if size <= 4:
                raw, at = value_at, 0
            else:
                raw, (at,) = data, struct.unpack(order + "I", value_at)
            tags[tag] = struct.unpack_from(f"{order}{number}{_TIFF_TYPES[kind]}", raw, at)
        samples = tags.get(_SAMPLES, (1,))[0]
        bits = tags.get(_BITS, (1,))
        if (samples != 3 or tags.get(_SAMPLE_FORMAT, (1,))[0] != 3 or len(set(bits)) != 1
                or bits[0] not in (16, 32, 64) or tags.get(_PHOTOMETRIC, (0,))[0] != 2
                or tags.get(_PLANAR, (1,))[0] != 1 or tags.get(_PREDICTOR, (1,))[0] != 1
                or tags.get(_COMPRESSION, (1,))[0] not in (1, 8, 32946)):
            return None
        width, height = tags[_WIDTH][0], tags[_HEIGHT][0]
        offsets, lengths = tags[_STRIP_OFFSETS], tags[_STRIP_BYTES]
    except (KeyError, IndexError, struct.error):
        return None
    except (MemoryError, OverflowError, ValueError) as error:
        raise ImageInputError(_DAMAGED) from error
    _check_size((width, height), max_pixels)
    compressed = tags.get(_COMPRESSION, (1,))[0] != 1
    try:
        dtype = np.dtype(f"{order}f{bits[0] // 8}")
        expected = width * height * 3 * dtype.itemsize
        parts, have = [], 0
        for start, length in zip(offsets, lengths):
            strip = data[start:start + length]
            # At most the bytes the image needs: a Deflate bomb stops there.
            part = zlib.decompressobj().decompress(strip, expected - have) if compressed else strip
            parts.append(part)
            have += len(part)
            if have >= expected:
                break
        raw = b"".join(parts)
        values = np.frombuffer(raw, dtype, count=width * height * 3).reshape(height, width, 3).astype(np.float32)
    except (ValueError, zlib.error) as error:
        raise ImageInputError(_DAMAGED) from error
    low, high = _finite_range(values)
    if low is not None and (low < 0 or high > 1):
        _stretch(values)
    else:
        values *= 255.0
    return Image.fromarray(_to_uint8(values), "RGB")
