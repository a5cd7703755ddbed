"""Turning an uploaded file into an 8-bit RGB PIL image, or refusing it.

Pure functions: no Gradio here. Every way a file can be wrong (empty, not an
image, truncated, too many pixels, an unsupported format) ends in
:class:`ImageInputError`, whose message is one sentence saying what to do; the
UI turns it into a ``gr.Error``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000

# Formats a browser or a phone produces. Everything else PIL could open (EPS
# runs Ghostscript, PSD, FITS, ...) is refused before any decoding.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF"

_DAMAGED = "The image is damaged or incomplete (perhaps a cut-off download); upload the whole file."
# The first bytes of the allowed formats: a file that starts like one but does
# not open is a damaged image rather than something else.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")

_TRANSPARENT_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageInputError(ValueError):
    """A file the app will not classify. The message is one sentence a user can act on."""


def max_pixels_from_env() -> int:
    """The pixel limit: ``APP_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get("APP_MAX_PIXELS", "")
    try:
        return int(float(value)) if value.strip() else DEFAULT_MAX_PIXELS
    except ValueError:
        return DEFAULT_MAX_PIXELS


def configure_pil(max_pixels: int) -> None:
    """Make PIL's own decompression-bomb guard agree with the app's limit
    (it warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that);
    :func:`load_image` checks the size itself as well."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image, upright (EXIF orientation applied).

    Animated images give their first frame, multi-page TIFFs their first page.
    The size is checked from the header, before any pixel is decoded.
    Raises :class:`ImageInputError`.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageInputError("The file is empty; upload a photo instead.")
    except OSError as error:
        raise ImageInputError("The file could not be read; upload it again.") from error

    with warnings.catch_warnings():
        # The size check below replaces PIL's DecompressionBombWarning.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as error:
            raise ImageInputError(_too_large_message(None, max_pixels)) from error
        except Exception as error:  # UnidentifiedImageError, SyntaxError, struct.error, ...
            if _has_image_signature(path):
                raise ImageInputError(_DAMAGED) from error
            raise ImageInputError(
                f"This file is not an image this app can read; upload a {_FORMAT_NAMES} file.") from error
        with image:
            _check_size(image.size, max_pixels)
            try:
                image.seek(0)
                image.load()
            except Image.DecompressionBombError as error:
                raise ImageInputError(_too_large_message(image.size, max_pixels)) from error
            except Exception as error:  # OSError "truncated", SyntaxError, ValueError, zlib.error, EOFError ...
                raise ImageInputError(_DAMAGED) from error
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block: keep the pixels as stored
                upright = image.copy()
    return to_rgb8(upright)


def to_rgb8(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB.

    Transparent pixels are composited on white; 16-bit and 32-bit integer
    images are scaled from their full range (65535 -> 255), not clipped;
    float images from [0, 1] (or their own range if they leave it).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if (mode == "P" and "transparency" in image.info) or mode in _TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            values = _stretch(values)
        else:
            values = values / 257.0  # 65535 -> 255
        return Image.fromarray(_to_uint8(values), "L").convert("RGB")
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            values = _stretch(values)
        else:
            values = values * 255.0
        return Image.fromarray(_to_uint8(values), "L").convert("RGB")
    # L, 1, P without transparency, CMYK, YCbCr, LAB, HSV: PIL's own conversion.
    return image.convert("RGB")


def _has_image_signature(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    is_webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    is_avif = head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis")
    return head.startswith(_SIGNATURES) or is_webp or is_avif


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the finite range of ``values`` onto [0, 255]."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return np.zeros_like(values)
    low, high = float(finite.min()), float(finite.max())
    return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.rint(values), nan=0.0), 0, 255).astype(np.uint8)


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
