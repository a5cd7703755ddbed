"""Bad and odd files, made here (nothing downloaded): what a public Space gets.

:data:`CASES` is the one corpus. Each :class:`Case` is either *classified*
(``check`` then looks at the 8-bit RGB image :func:`demo.images.load_image`
gives: orientation, colours, which frame) or *refused* (``says`` is a phrase of
the one-sentence refusal). :func:`build` writes them all into a folder, under
the names a user's files would have.

Used by tests/test_reliability.py (through ``demo.images`` and through the
running app) and by tests/test_load.py (a few bad files among good requests).
"""
from __future__ import annotations

import io
import os
import pathlib
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

NOT_AN_IMAGE = "not an image this app can read"
DAMAGED = "damaged or incomplete"
TOO_LARGE = "megapixels this app accepts"
# Written by the pickle in the corpus if anything ever unpickles it.
UNPICKLED_MARKER = "UNPICKLED"


@dataclass(frozen=True)
class Case:
    name: str                                   # the file's name, as a user would upload it
    make: Callable[[Path], bytes]               # the bytes (given the corpus folder)
    says: str | None = None                     # refused: a phrase of the message; None: classified
    check: Callable[[np.ndarray], None] | None = None  # classified: asserts on the RGB array [H, W, 3]
    # Also checked through the running app, on the model input /swin_views shows
    # (swin_cifar's: the whole image squashed to 32 x 32, shown 8 times enlarged).
    view: Callable[[np.ndarray], None] | None = None

    @property
    def refused(self) -> bool:
        return self.says is not None


# ---------------------------------------------------------------- makers

def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type,
                                                                   0, 0, 0))


def blank_png(width: int, height: int) -> bytes:
    """A valid black RGB PNG of any size, compressed row by row (no image in memory)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_header(width, height) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def noise(seed: int, width: int, height: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8))


def photo_like(width: int = 320, height: int = 240) -> Image.Image:
    """Smooth colours (compress like a photo, unlike noise)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def halves(size, first, second, mode="RGB") -> Image.Image:
    """Left half ``first``, right half ``second``."""
    image = Image.new(mode, size, second)
    image.paste(first, (0, 0, size[0] // 2, size[1]))
    return image


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday/cat.txt", "not a cat")
    return buffer.getvalue()


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def malicious_pickle(folder: Path) -> bytes:
    return pickle.dumps(_TouchOnUnpickle(folder / UNPICKLED_MARKER))


def torch_checkpoint() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(4)}, buffer)
    return buffer.getvalue()


def exif_rotated_jpeg(orientation: int) -> bytes:
    # Stored 120 wide x 40 high, left third white, the rest black.
    stored = np.zeros((40, 120, 3), np.uint8)
    stored[:, :40] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(Image.fromarray(stored), "JPEG", exif=exif, quality=95)


def jpeg_with_broken_exif() -> bytes:
    data = encoded(Image.new("RGB", (64, 48), (50, 60, 70)), "JPEG", quality=95)
    garbage = b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 8
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + data[2:]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (16, 16), (9, 9, 9)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height`` and whose one frame is 1 x 1."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def corrupt_ihdr_crc() -> bytes:
    data = bytearray(encoded(photo_like(32, 32), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def cut(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def frames(fmt: str, colours, **params) -> bytes:
    images = [Image.new("RGB", (24, 24), colour) for colour in colours]
    return encoded(images[0], fmt, save_all=True, append_images=images[1:], **params)


def sixteen_bit(mode: str, fmt: str) -> bytes:
    """A 16-bit grayscale ramp 0 .. 65535 from left to right."""
    values = np.linspace(0, 65535, 64).round().astype(np.uint16)[None].repeat(16, axis=0)
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return encoded(Image.frombytes(mode, (64, 16), values.astype(dtype).tobytes()), fmt)


def rgb48_tiff() -> bytes:
    """A 16-bit-per-channel RGB TIFF (what scanners write): left half red, right half blue."""
    width, height = 8, 4
    pixels = np.zeros((height, width, 3), "<u2")
    pixels[:, :4, 0] = 65535
    pixels[:, 4:, 2] = 65535
    data = pixels.tobytes()
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, "bits"), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, "data"), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(data))]
    bits_at = 8 + 2 + 12 * len(entries) + 4
    data_at = bits_at + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = {"bits": bits_at, "data": data_at}.get(value, value)
        out += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 and count == 1 else \
            struct.pack("<HHII", tag, kind, count, value)
    return bytes(out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + data)


def png_16_bit(colour_type: int, channels: int, value: int, size: int = 8) -> bytes:
    """A PNG with 16 bits per channel, every sample ``value``."""
    row = b"\x00" + np.full(size * channels, value, ">u2").tobytes()
    return png_header(size, size, 16, colour_type) + png_chunk(b"IDAT", zlib.compress(row * size)) \
        + png_chunk(b"IEND", b"")


def heic_header() -> bytes:
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + bytes(200)


def mp4_header() -> bytes:
    return struct.pack(">I", 32) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2avc1mp41" + bytes(200)


def psd_header() -> bytes:
    return b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + bytes(64)


def _s15(value: float) -> bytes:
    return struct.pack(">i", int(round(value * 65536)))


def rgb_profile(primaries, white=(0.3127, 0.3290), gamma=2.2, description="test profile") -> bytes:
    """An ICC v2 RGB display profile (matrix and one gamma curve) built from
    chromaticities, as a colour-management system would: the colorants are the
    primaries' XYZ scaled so that R + G + B is the white, adapted to the D50
    connection space with the Bradford transform. Pillow can only create sRGB
    and Lab profiles, and none ships with this machine, hence by hand."""
    def xyz(xy):
        x, y = xy
        return np.array([x / y, 1.0, (1 - x - y) / y])

    white_xyz = xyz(white)
    matrix = np.stack([xyz(p) for p in primaries], axis=1)
    matrix = matrix * np.linalg.solve(matrix, white_xyz)
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d50 = np.array([0.9642, 1.0, 0.8249])
    adapt = np.linalg.inv(bradford) @ np.diag(bradford @ d50 / (bradford @ white_xyz)) @ bradford
    colorants = adapt @ matrix

    def xyz_tag(values):
        return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in values)

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, int(round(gamma * 256))) + bytes(2)
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags = [(b"desc", desc), (b"cprt", b"text" + bytes(4) + b"public domain\0"), (b"wtpt", xyz_tag(d50)),
            (b"rXYZ", xyz_tag(colorants[:, 0])), (b"gXYZ", xyz_tag(colorants[:, 1])),
            (b"bXYZ", xyz_tag(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        data += bytes(-(offset + len(data)) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = struct.pack(">I4sI4s4s4s", offset + len(data), b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ") \
        + bytes(12) + b"acsp" + bytes(28) + b"".join(_s15(v) for v in d50) + bytes(48)
    return header + struct.pack(">I", len(tags)) + table + data


# Display P3 (what phones save): DCI-P3 primaries, D65 white; gamma 2.2 stands in for the sRGB curve.
DISPLAY_P3 = rgb_profile([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], description="Display P3 (test)")
# ProPhoto-like: ROMM primaries, D50 white, gamma 1.8: far wider than sRGB.
PROPHOTO_LIKE = rgb_profile([(0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)], white=(0.3457, 0.3585),
                            gamma=1.8, description="ProPhoto-like (test)")


def in_profile(image: Image.Image, profile: bytes, fmt: str = "JPEG", **params) -> bytes:
    """``image`` (sRGB) converted to ``profile``'s colour space and saved with
    the profile embedded: what a phone or a photo editor writes."""
    from PIL import ImageCms

    converted = ImageCms.profileToProfile(image.convert("RGB"), ImageCms.createProfile("sRGB"),
                                          ImageCms.ImageCmsProfile(io.BytesIO(profile)), outputMode="RGB",
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return encoded(converted, fmt, icc_profile=profile, **params)


def float_rgb_tiff(pixels: np.ndarray, compression: int = 1) -> bytes:
    """An RGB TIFF of 32-bit float samples (SampleFormat 3), uncompressed or
    Deflate (8): what HDR and scientific tools write and PIL cannot open."""
    height, width, _ = pixels.shape
    data = pixels.astype("<f4").tobytes()
    if compression == 8:
        data = zlib.compress(data)
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, "bits"), (259, 3, 1, compression),
               (262, 3, 1, 2), (273, 4, 1, "data"), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(data)),
               (339, 3, 3, "format")]
    bits_at = 8 + 2 + 12 * len(entries) + 4
    format_at, data_at = bits_at + 6, bits_at + 12
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = {"bits": bits_at, "data": data_at, "format": format_at}.get(value, value)
        out += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 and count == 1 else \
            struct.pack("<HHII", tag, kind, count, value)
    return bytes(out + struct.pack("<I", 0) + struct.pack("<HHH", 32, 32, 32) + struct.pack("<HHH", 3, 3, 3) + data)


def _float_rgb_halves() -> np.ndarray:
    pixels = np.zeros((8, 16, 3), np.float32)
    pixels[:, :8, 0] = 1.0
    pixels[:, 8:, 2] = 1.0
    return pixels


def png_with_text(kind: bytes, megabytes: float = 1.0) -> bytes:
    """A small blue PNG carrying a text chunk of ``megabytes`` (zTXt: compressed, inflating to that size)."""
    text = b"x" * int(megabytes * 2**20) + b"!"
    body = b"comment\x00" + (b"\x00" + zlib.compress(text) if kind == b"zTXt" else text)
    png = encoded(Image.new("RGB", (24, 24), BLUE), "PNG")
    return png[:33] + png_chunk(kind, body) + png[33:]


def png_of_many_chunks(chunks: int) -> bytes:
    """A valid red PNG with ``chunks`` tiny text chunks before its pixels (15 bytes each)."""
    png = encoded(Image.new("RGB", (8, 8), RED), "PNG")
    return png[:33] + png_chunk(b"tEXt", b"a\x00b") * chunks + png[33:]


SATURATED = (220, 40, 40)


# ---------------------------------------------------------------- checks on the RGB array

def close(actual, expected, tolerance=8) -> bool:
    return bool(np.abs(np.asarray(actual, float) - np.asarray(expected, float)).max() <= tolerance)


def uniform(colour, tolerance=8):
    def check(pixels):
        median = np.median(pixels.reshape(-1, 3), axis=0)
        assert close(median, colour, tolerance), f"median colour {median.tolist()}, expected {colour}"
    return check


def left_right(left, right, tolerance=8):
    def check(pixels):
        width = pixels.shape[1]
        a = np.median(pixels[:, : max(1, width // 4)].reshape(-1, 3), axis=0)
        b = np.median(pixels[:, width - max(1, width // 4):].reshape(-1, 3), axis=0)
        assert close(a, left, tolerance) and close(b, right, tolerance), (a.tolist(), b.tolist())
    return check


def white_third_on_top(pixels):
    """The EXIF-rotated JPEG, upright: 40 wide x 120 high, the top third white."""
    height, width = pixels.shape[:2]
    assert height > width, f"not rotated: {width} x {height}"
    assert pixels[: height // 4].mean() > 220 and pixels[height // 2:].mean() < 35


def top_white_bottom_dark(pixels):
    height = pixels.shape[0]
    top, bottom = np.median(pixels[: height // 4]), np.median(pixels[height // 2:])
    assert top > 220 and bottom < 35, (top, bottom)


def dark_to_bright(pixels):
    width = pixels.shape[1]
    left, right = np.median(pixels[:, : width // 4]), np.median(pixels[:, -width // 4:])
    assert left < 70 and right > 185, (left, right)


def as_stored(pixels):
    """Orientation 9 does not exist: the pixels are shown as stored (120 x 40, white third on the left)."""
    height, width = pixels.shape[:2]
    assert (width, height) == (120, 40) and pixels[:, :30].mean() > 220 and pixels[:, 60:].mean() < 35


def gray_ramp(pixels):
    """The 16-bit ramp, scaled (not clipped) to 0..255."""
    row = pixels[pixels.shape[0] // 2, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253 and abs(int(row[len(row) // 2]) - 128) <= 6, row.tolist()
    assert (pixels[..., 0] == pixels[..., 1]).all()


def size_is(width, height, then=None):
    def check(pixels):
        assert pixels.shape[:2] == (height, width), pixels.shape
        if then:
            then(pixels)
    return check


def anything(pixels):
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 1


# ---------------------------------------------------------------- the corpus

CYAN, WHITE, RED, BLUE, GREEN = (0, 255, 255), (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 128, 0)


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (24, 24), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    image.paste(1, (12, 0, 24, 24))
    return encoded(image, "PNG", transparency=0)   # index 0 (black) is transparent: left half white


def _rgba() -> bytes:
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[:, 12:] = (0, 0, 255, 255)                # left half fully transparent black -> white
    return encoded(Image.fromarray(rgba, "RGBA"), "PNG")


def _gray_alpha() -> bytes:
    image = Image.new("LA", (24, 24), (0, 0))
    image.paste((0, 255), (12, 0, 24, 24))         # left transparent -> white, right opaque black
    return encoded(image, "PNG")


def _one_bit() -> bytes:
    image = Image.new("1", (24, 24), 0)
    image.paste(1, (0, 0, 12, 24))
    return encoded(image, "PNG")


def _float_tiff() -> bytes:
    values = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (8, 1))
    return encoded(Image.fromarray(values, "F"), "TIFF")


def _palette_bmp() -> bytes:
    return encoded(halves((24, 24), RED, BLUE).quantize(4), "BMP")


def _strip(width, height) -> bytes:
    return encoded(halves((width, height), RED, BLUE), "PNG")


CASES: list[Case] = [
    # ---- refused: not an image, or not one this app reads
    Case("empty.jpg", lambda d: b"", says="The file is empty"),
    Case("notes.jpg", lambda d: b"Shopping list: eggs, milk, a new camera.\n" * 10, says=NOT_AN_IMAGE),
    Case("scan.jpg", lambda d: b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", says=NOT_AN_IMAGE),
    Case("page.png", lambda d: b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
         says=NOT_AN_IMAGE),
    Case("drawing.svg", lambda d: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><circle r="4"/>'
                                  b'</svg>', says=NOT_AN_IMAGE),
    Case("photos.zip", lambda d: zip_bytes(), says=NOT_AN_IMAGE),
    Case("pickle.jpg", malicious_pickle, says=NOT_AN_IMAGE),
    Case("weights.jpg", lambda d: torch_checkpoint(), says=NOT_AN_IMAGE),
    Case("IMG_0001.HEIC", lambda d: heic_header(), says="HEIC"),
    Case("clip.jpg", lambda d: mp4_header(), says="video"),
    Case("layers.psd", lambda d: psd_header(), says="Photoshop"),
    Case("favicon.ico", lambda d: encoded(photo_like(32, 32), "ICO"), says="icon"),
    Case("picture.jp2", lambda d: encoded(photo_like(32, 32), "JPEG2000"), says="JPEG 2000"),
    Case("picture.tga", lambda d: encoded(photo_like(32, 32), "TGA"), says=NOT_AN_IMAGE),
    # ---- refused: damaged
    Case("truncated.jpg", lambda d: cut(encoded(noise(0, 256, 256), "JPEG", quality=90)), says=DAMAGED),
    Case("truncated.png", lambda d: cut(encoded(noise(1, 128, 128), "PNG")), says=DAMAGED),
    Case("truncated.webp", lambda d: cut(encoded(noise(2, 128, 128), "WEBP")), says=DAMAGED),
    Case("truncated.tif", lambda d: cut(encoded(noise(3, 64, 64), "TIFF"), 0.3), says=DAMAGED),
    Case("header-only.png", lambda d: png_header(16, 16), says=DAMAGED),
    Case("bad-header-crc.png", lambda d: corrupt_ihdr_crc(), says=DAMAGED),
    Case("zero-width.png", lambda d: png_header(0, 10) + png_chunk(b"IDAT", zlib.compress(b"")), says=DAMAGED),
    Case("noise-after-jpeg-signature.jpg",
         lambda d: b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(4).integers(0, 256, 4000, dtype=np.uint8)),
         says=DAMAGED),
    # ---- refused: too many pixels (checked from the header, nothing decoded)
    Case("claims-50000x50000.png", lambda d: png_header(50000, 50000) + png_chunk(b"IDAT", zlib.compress(bytes(99)))
         + png_chunk(b"IEND", b""), says=TOO_LARGE),
    Case("claims-65000x65000.jpg", lambda d: jpeg_claiming(65000, 65000), says=TOO_LARGE),
    Case("gif-bomb.gif", lambda d: gif_claiming(60000, 60000), says=TOO_LARGE),
    Case("valid-8000x6000.png", lambda d: blank_png(8000, 6000), says="8000 x 6000 pixels"),
    # ---- classified: sizes and shapes
    Case("photo.jpg", lambda d: encoded(photo_like(), "JPEG", quality=90), check=size_is(320, 240)),
    Case("1x1.png", lambda d: encoded(Image.new("RGB", (1, 1), RED), "PNG"), check=size_is(1, 1, uniform(RED))),
    Case("10000x10.png", lambda d: _strip(10000, 10), check=size_is(200, 10, left_right(RED, BLUE))),
    Case("10x10000.png", lambda d: _strip(10, 10000), check=size_is(10, 200, left_right(RED, BLUE))),
    Case("40000x1.png", lambda d: _strip(40000, 1), check=size_is(20, 1, left_right(RED, BLUE))),
    Case("6000x6000.png", lambda d: blank_png(6000, 6000), check=size_is(6000, 6000, uniform((0, 0, 0)))),
    # ---- classified: orientation
    Case("exif-rotated.jpg", lambda d: exif_rotated_jpeg(6), check=white_third_on_top, view=top_white_bottom_dark),
    Case("exif-orientation-9.jpg", lambda d: exif_rotated_jpeg(9), check=as_stored),
    Case("broken-exif.jpg", lambda d: jpeg_with_broken_exif(), check=size_is(64, 48, uniform((50, 60, 70)))),
    # ---- classified: colour modes, converted to 8-bit RGB
    Case("cmyk.jpg", lambda d: encoded(halves((24, 24), (255, 0, 0, 0), (0, 0, 0, 0), "CMYK"), "JPEG", quality=95),
         check=left_right(CYAN, WHITE, 12), view=left_right(CYAN, WHITE, 24)),
    Case("cmyk.tif", lambda d: encoded(halves((24, 24), (255, 0, 0, 0), (0, 0, 0, 0), "CMYK"), "TIFF"),
         check=left_right(CYAN, WHITE)),
    Case("gray-16-bit.png", lambda d: sixteen_bit("I;16", "PNG"), check=gray_ramp, view=dark_to_bright),
    Case("gray-16-bit-big-endian.tif", lambda d: sixteen_bit("I;16B", "TIFF"), check=gray_ramp),
    Case("rgb-48-bit.tif", lambda d: rgb48_tiff(), check=left_right(RED, BLUE)),
    Case("float.tif", lambda d: _float_tiff(), check=gray_ramp),
    Case("palette-transparent.png", lambda d: _palette_with_transparency(), check=left_right(WHITE, RED),
         view=left_right(WHITE, RED, 24)),
    Case("rgba.png", lambda d: _rgba(), check=left_right(WHITE, BLUE), view=left_right(WHITE, BLUE, 24)),
    Case("gray-alpha.png", lambda d: _gray_alpha(), check=left_right(WHITE, (0, 0, 0))),
    Case("1-bit.png", lambda d: _one_bit(), check=left_right(WHITE, (0, 0, 0))),
    Case("rgba-64-bit.png", lambda d: png_16_bit(6, 4, 40000),  # 61 % opaque 61 % gray, on white
         check=uniform((194,) * 3, 2)),
    Case("lab.tif", lambda d: encoded(Image.new("LAB", (8, 8), (128, 128, 128)), "TIFF"), check=uniform((119,) * 3)),
    Case("grayscale.jpg", lambda d: encoded(Image.new("L", (24, 24), 100), "JPEG"), check=uniform((100,) * 3)),
    # ---- classified: formats and their frames
    Case("animated.gif", lambda d: frames("GIF", [BLUE, GREEN, RED], duration=100, loop=0), check=uniform(BLUE),
         view=uniform(BLUE, 12)),
    Case("animated.png", lambda d: frames("PNG", [RED, GREEN]), check=uniform(RED)),
    Case("animated.webp", lambda d: frames("WEBP", [GREEN, RED], lossless=True), check=uniform(GREEN)),
    Case("two-pictures.mpo", lambda d: frames("MPO", [RED, BLUE]), check=uniform(RED)),  # phones' multi-picture JPEG
    Case("pages.tif", lambda d: frames("TIFF", [(10, 20, 30), (200, 200, 200)]), check=uniform((10, 20, 30)),
         view=uniform((10, 20, 30), 12)),
    Case("photo.webp", lambda d: encoded(Image.new("RGB", (24, 24), GREEN), "WEBP", lossless=True),
         check=uniform(GREEN)),
    Case("transparent.webp", lambda d: encoded(Image.new("RGBA", (24, 24), (255, 0, 0, 0)), "WEBP"),
         check=uniform(WHITE)),
    Case("photo.avif", lambda d: encoded(Image.new("RGB", (32, 32), GREEN), "AVIF", quality=90),
         check=uniform(GREEN, 12)),
    Case("photo.bmp", lambda d: encoded(Image.new("RGB", (24, 24), GREEN), "BMP"), check=uniform(GREEN)),
    Case("palette.bmp", lambda d: _palette_bmp(), check=left_right(RED, BLUE)),
    Case("progressive.jpg", lambda d: encoded(photo_like(64, 48), "JPEG", progressive=True), check=size_is(64, 48)),
    Case("jpeg-compressed.tif", lambda d: encoded(Image.new("RGB", (32, 32), BLUE), "TIFF", compression="jpeg"),
         check=uniform(BLUE)),
    Case("fax.tif", lambda d: encoded(Image.new("1", (32, 32), 1), "TIFF", compression="group4"),
         check=uniform(WHITE)),
    # ---- classified: the content decides, not the name
    Case("really-a-png.jpg", lambda d: encoded(Image.new("RGB", (24, 24), RED), "PNG"), check=uniform(RED)),
    Case("really-a-jpeg.png", lambda d: encoded(Image.new("RGB", (24, 24), BLUE), "JPEG", quality=95),
         check=uniform(BLUE)),
    Case("bad-data-crc.png", lambda d: _corrupt_idat_crc(), check=size_is(32, 32)),
    Case("jpeg-with-zip-appended.jpg", lambda d: encoded(Image.new("RGB", (24, 24), RED), "JPEG", quality=95)
         + zip_bytes(), check=uniform(RED)),
    Case("png-with-html-appended.png", lambda d: encoded(Image.new("RGB", (24, 24), BLUE), "PNG")
         + b"<script>alert(1)</script>", check=uniform(BLUE)),
    Case("фото кота 🐈 (1).jpg", lambda d: encoded(photo_like(), "JPEG"), check=size_is(320, 240)),
    Case("a'b\";c&d $(x) " + "long" * 40 + ".jpg", lambda d: encoded(photo_like(), "JPEG"), check=anything),
    # ---- issue 13: colour profiles converted to sRGB (without, P3 reads about (203, 61, 52), ProPhoto far off)
    Case("display-p3.jpg", lambda d: in_profile(Image.new("RGB", (32, 32), SATURATED), DISPLAY_P3, quality=95),
         check=uniform(SATURATED, 6), view=uniform(SATURATED, 12)),
    Case("prophoto-like.png", lambda d: in_profile(Image.new("RGB", (32, 32), SATURATED), PROPHOTO_LIKE, "PNG"),
         check=uniform(SATURATED, 6)),
    # ---- issue 13: read, not called damaged
    Case("float-rgb.tif", lambda d: float_rgb_tiff(_float_rgb_halves()), check=left_right(RED, BLUE)),
    Case("float-rgb-deflate.tif", lambda d: float_rgb_tiff(_float_rgb_halves(), compression=8),
         check=left_right(RED, BLUE)),
    Case("1-mb-ztxt-chunk.png", lambda d: png_with_text(b"zTXt", 1.0), check=uniform(BLUE)),
    Case("1-mb-text-chunk.png", lambda d: png_with_text(b"tEXt", 1.0), check=uniform(BLUE)),
    # ---- issue 13: refused quickly (under the 4 MB upload limit of the tests' app: 3.75 MB)
    Case("250000-chunks.png", lambda d: png_of_many_chunks(250_000), says="chunks"),
]


def _corrupt_idat_crc() -> bytes:
    """A PNG whose pixel-data chunk has a wrong CRC (PIL reads the pixels regardless)."""
    data = bytearray(encoded(photo_like(32, 32), "PNG"))
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4 + length] ^= 0xFF
    return bytes(data)


def build(folder: Path) -> list[tuple[Case, Path]]:
    """Write every case into ``folder``; (case, path) in corpus order."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in CASES:
        path = folder / case.name
        path.write_bytes(case.make(folder))
        written.append((case, path))
    return written


def by_name(name: str) -> Case:
    return next(case for case in CASES if case.name == name)


# ---------------------------------------------------------------- requests, not files (issue 13)
# Sent to the running app by tests/test_security.py, on every endpoint with an image input.

SERVER_PATH_REFUSED = "This app reads only images uploaded to it or sent inline as a data: URL"
META = {"_type": "gradio.FileData"}


def server_path_payloads(private: Path, upload_folder: Path, home: Path) -> dict[str, object]:
    """Ways a client may name a server file instead of sending bytes: each must
    be refused in the same sentence, whether or not the file exists.
    ``private``: a readable PNG outside the upload folder; ``home``: a folder
    above both (for relative paths and symlinks, made here)."""
    inside_link = upload_folder / "planted" / "link.png"
    inside_link.parent.mkdir(parents=True, exist_ok=True)
    if not inside_link.is_symlink():
        inside_link.symlink_to(private)
    outside_link = home / "link.png"
    if not outside_link.is_symlink():
        outside_link.symlink_to(private)
    relative = os.path.relpath(private, ROOT_FOR_RELATIVE)
    dotdot = str(upload_folder) + "/../" + os.path.relpath(private, upload_folder.parent)
    payloads = {}
    for label, path in [("absolute", str(private)), ("missing", str(private) + ".missing"),
                        ("relative", relative), ("symlink outside", str(outside_link)),
                        ("symlink inside the upload folder", str(inside_link)), ("dot-dot", dotdot),
                        ("file URL", "file://" + str(private)), ("http URL", "http://127.0.0.1:9/x.png"),
                        ("the upload folder itself", str(upload_folder))]:
        payloads[f"{label}, no meta"] = {"path": path}
        payloads[f"{label}, meta"] = {"path": path, "meta": META}
    payloads["bare string path"] = str(private)
    payloads["data: URL object naming a path too"] = {"path": str(private), "url": str(private), "meta": META}
    payloads["not a file object"] = {"name": str(private)}
    payloads["a number"] = 7
    return payloads


ROOT_FOR_RELATIVE = Path(__file__).resolve().parent.parent  # the app's working directory


def data_url(data: bytes, media_type: str) -> str:
    import base64

    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def ppm_bytes() -> bytes:
    return encoded(photo_like(32, 32), "PPM")


# (name, data: URL maker, a phrase of the one-sentence refusal): formats refused on upload are refused inline too,
# under their own media type or a false one.
DATA_URL_CASES = [
    ("PPM as image/x-portable-pixmap", lambda: data_url(ppm_bytes(), "image/x-portable-pixmap"),
     "not an image type this app reads"),
    ("PPM claiming image/png", lambda: data_url(ppm_bytes(), "image/png"), NOT_AN_IMAGE),
    ("ICO as image/x-icon", lambda: data_url(encoded(photo_like(32, 32), "ICO"), "image/x-icon"),
     "not an image type this app reads"),
    ("ICO claiming image/png", lambda: data_url(encoded(photo_like(32, 32), "ICO"), "image/png"), "icon"),
    ("JPEG 2000 as image/jp2", lambda: data_url(encoded(photo_like(32, 32), "JPEG2000"), "image/jp2"),
     "not an image type this app reads"),
    ("JPEG 2000 claiming image/jpeg", lambda: data_url(encoded(photo_like(32, 32), "JPEG2000"), "image/jpeg"),
     "JPEG 2000"),
    ("SVG", lambda: data_url(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
     "not an image type this app reads"),
    ("not base64", lambda: "data:image/png,%89PNG", "not a base64-encoded image"),
    ("damaged base64", lambda: "data:image/png;base64,iVBORw0KG=====!!", "base64"),
    ("64 megapixels", lambda: data_url(blank_png(8000, 8000), "image/png"), "8000 x 8000 pixels"),
    ("4.5 MB, over the tests' 4 MB limit", lambda: data_url(bytes(9 * 2**19), "image/png"), "larger than the 4 MB"),
]

# (endpoint, argument, JSON literal sent, phrase of the refusal): each malformed kind, on each endpoint.
BAD_ARGUMENTS = [
    ("/classify", "top_k", "NaN", "top_k must be a whole number from 1 to 20, not nan."),
    ("/classify", "top_k", '"abc"', "top_k must be a whole number from 1 to 20, not 'abc'."),
    ("/classify", "top_k", "1e400", "top_k must be a whole number from 1 to 20, not inf."),
    ("/classify", "top_k", "-3", "top_k must be a whole number from 1 to 20, not -3."),
    ("/classify", "top_k", "21", "top_k must be a whole number from 1 to 20, not 21."),
    ("/classify", "top_k", "2.5", "top_k must be a whole number from 1 to 20, not 2.5."),
    ("/classify", "top_k", "true", "top_k must be a whole number from 1 to 20, not True."),
    ("/classify", "top_k", "[5]", "top_k must be a whole number from 1 to 20, not [5]."),
    ("/classify", "architecture", "null", "architecture must be one of"),
    ("/classify", "architecture", '"resnet50"', "architecture must be one of"),
    ("/classify", "architecture", "7", "architecture must be one of"),
    ("/swin_views", "stage", "NaN", "stage must be a whole number from 0 to 3, not nan."),
    ("/swin_views", "stage", '"abc"', "stage must be a whole number from 0 to 3, not 'abc'."),
    ("/swin_views", "stage", "-1", "stage must be a whole number from 0 to 3, not -1."),
    ("/swin_views", "stage", "9", "stage must be a whole number from 0 to 3, not 9."),
    ("/swin_views", "block", "1e400", "block must be a whole number from 0 to 17, not inf."),
    ("/swin_views", "block", '{"a": 1}', "block must be a whole number from 0 to 17, not {'a': 1}."),
    ("/swin_views", "head", "NaN", 'head must be "mean" or a whole number from 0 to 47, not nan.'),
    ("/swin_views", "head", '"third"', "The head 'third' is not a number; give a head number or \"mean\"."),
    ("/swin_views", "head", "99", 'head must be "mean" or a whole number from 0 to 47, not 99.'),
    ("/swin_views", "query_x", "1e400", "query_x must be a whole number from 0 to 383, not inf."),
    ("/swin_views", "query_x", "-1", "query_x must be a whole number from 0 to 383, not -1."),
    ("/swin_views", "query_y", '"abc"', "query_y must be a whole number from 0 to 383, not 'abc'."),
    ("/swin_views", "query_y", "NaN", "query_y must be a whole number from 0 to 383, not nan."),
    ("/swin_views", "query_x", "300", "The query point (300, 112) is outside the 224 x 224 model input"),
    ("/swin_views", "architecture", "null", "architecture must be one of"),
    ("/classify", "top_k", "1" + "0" * 400, "top_k must be a whole number from 1 to 20, not 1000000000"),
    ("/explain", "method", '"nope"', "method must be one of"),
    ("/explain", "method", "NaN", "method must be one of"),
    ("/explain", "method", "7", "method must be one of"),
    ("/explain", "method", "[\"gradcam\"]", "method must be one of"),
    ("/explain", "target", "NaN", "target must be a whole number from 0 to 1000000, not nan."),
    ("/explain", "target", "1e400", "target must be a whole number from 0 to 1000000, not inf."),
    ("/explain", "target", "-1", "target must be a whole number from 0 to 1000000, not -1."),
    ("/explain", "target", "[1, 2]", "target must be a class name, a class index or \"top1\""),
    ("/explain", "target", '"' + "x" * 300 + '"', "target must be a class name, a class index or \"top1\""),
    ("/explain", "architecture", '"resnet50"', "architecture must be one of"),
]
