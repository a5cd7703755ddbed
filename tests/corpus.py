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
