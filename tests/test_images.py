"""demo.images without the UI: every file is made here, in a temporary folder."""
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from demo.images import DEFAULT_MAX_PIXELS, ImageInputError, load_image, max_pixels_from_env, to_rgb8


def save(tmp_path, name, image, **params):
    path = tmp_path / name
    image.save(path, **params)
    return path


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def assert_refused(path, *words, max_pixels=DEFAULT_MAX_PIXELS):
    with pytest.raises(ImageInputError) as caught:
        load_image(path, max_pixels=max_pixels)
    message = str(caught.value)
    # One sentence that says what to do next.
    assert message.endswith(".") and message.count(". ") == 0, message
    assert "upload" in message, message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------- good inputs

def test_rgb_jpeg_comes_out_as_is(tmp_path):
    path = save(tmp_path, "red.jpg", Image.new("RGB", (40, 30), (200, 10, 10)), quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image)[15, 20].astype(int) - (200, 10, 10)).max() <= 4


def test_exif_orientation_is_applied(tmp_path):
    # Stored 60 wide x 20 high, left third white, the rest black; orientation 6
    # says "rotate 90 degrees clockwise to show", so upright it is 20 x 60 with
    # the white part on top.
    stored = np.zeros((20, 60, 3), np.uint8)
    stored[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "rotated.jpg", Image.fromarray(stored), exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 60)
    pixels = np.asarray(image).astype(int)
    assert pixels[:15].mean() > 240      # top: the white third
    assert pixels[25:].mean() < 15       # bottom: black


def test_grayscale_becomes_gray_rgb(tmp_path):
    path = save(tmp_path, "gray.png", Image.new("L", (8, 8), 77))
    image = load_image(path)
    assert image.mode == "RGB"
    assert np.asarray(image)[0, 0].tolist() == [77, 77, 77]


def test_one_bit_image(tmp_path):
    bits = Image.new("1", (8, 8), 0)
    bits.putpixel((1, 1), 1)
    image = load_image(save(tmp_path, "bits.png", bits))
    assert np.asarray(image)[1, 1].tolist() == [255, 255, 255]
    assert np.asarray(image)[0, 0].tolist() == [0, 0, 0]


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    palette_image.putpixel((1, 1), 1)
    path = save(tmp_path, "palette.png", palette_image, transparency=0)  # index 0 (black) is transparent
    image = load_image(path)
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [255, 255, 255]   # transparent -> white, not black
    assert pixels[1, 1].tolist() == [255, 0, 0]


def test_gif_with_transparency_and_frames_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((0, 0, 255), (0, 255, 0), (255, 0, 0))]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    image = load_image(path)
    assert np.asarray(image)[3, 3].tolist() == [0, 0, 255]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)          # fully transparent black -> white
    rgba[1, 1] = (0, 0, 255, 255)      # opaque blue stays blue
    rgba[2, 2] = (0, 0, 0, 128)        # half-transparent black -> mid gray
    image = load_image(save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    pixels = np.asarray(image).astype(int)
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[1, 1].tolist() == [0, 0, 255]
    assert np.abs(pixels[2, 2] - 127).max() <= 1


def test_gray_with_alpha(tmp_path):
    image = load_image(save(tmp_path, "la.png", Image.new("LA", (3, 3), (0, 0))))
    assert np.asarray(image)[1, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg_and_tiff(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))       # no ink: white
    cmyk.paste((255, 0, 0, 0), (0, 0, 4, 8))               # full cyan on the left
    for name in ("cmyk.jpg", "cmyk.tif"):
        image = load_image(save(tmp_path, name, cmyk))
        pixels = np.asarray(image).astype(int)
        assert image.mode == "RGB"
        assert np.abs(pixels[4, 6] - (255, 255, 255)).max() <= 6, name
        assert np.abs(pixels[4, 1] - (0, 255, 255)).max() <= 6, name


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 64, 257 * 128, 65535]], np.uint16).repeat(2, axis=0)
    path = save(tmp_path, "sixteen.png", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    image = load_image(path)
    assert np.asarray(image)[0, :, 0].tolist() == [0, 64, 128, 255]


def test_sixteen_bit_tiff(tmp_path):
    values = np.array([[1000, 30000, 60000]], np.uint16)
    path = save(tmp_path, "sixteen.tif", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode == "I;16"
    image = load_image(path)
    assert np.asarray(image)[0, :, 1].tolist() == [round(v / 257) for v in (1000, 30000, 60000)]


def test_thirty_two_bit_integer_holding_sixteen_bit_values(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], np.int32)
    path = save(tmp_path, "int32.tif", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode == "I"
    assert np.asarray(load_image(path))[0, :, 2].tolist() == [0, 100, 255]
    # Values beyond 16 bits: the image's own range is stretched onto 0-255.
    wide = to_rgb8(Image.fromarray(np.array([[-1000, 0, 99000]], np.int32)))
    assert np.asarray(wide)[0, :, 0].tolist() == [0, 3, 255]  # 1000 * 255 / 100000 = 2.55


def test_float_image_from_zero_one(tmp_path):
    image = to_rgb8(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F"))
    assert np.asarray(image)[0, :, 0].tolist() == [0, 128, 255]


def test_multipage_tiff_gives_the_first_page(tmp_path):
    pages = [Image.new("RGB", (5, 5), (10, 20, 30)), Image.new("RGB", (9, 9), (200, 200, 200))]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = load_image(path)
    assert image.size == (5, 5)
    assert np.asarray(image)[2, 2].tolist() == [10, 20, 30]


def test_webp_and_bmp(tmp_path):
    for name in ("x.webp", "x.bmp"):
        image = load_image(save(tmp_path, name, Image.new("RGB", (10, 10), (0, 128, 0)), **(
            {"lossless": True} if name.endswith("webp") else {})))
        assert np.asarray(image)[5, 5].tolist() == [0, 128, 0]


def test_wrong_extension_does_not_matter(tmp_path):
    # A PNG named .jpg is still read: the content decides, not the name.
    path = save(tmp_path, "really-a-png.jpg", Image.new("RGB", (4, 4), (1, 2, 3)), format="PNG")
    assert np.asarray(load_image(path))[0, 0].tolist() == [1, 2, 3]


def test_exactly_at_the_pixel_limit_is_accepted(tmp_path):
    path = save(tmp_path, "limit.png", Image.new("RGB", (100, 50)))
    assert load_image(path, max_pixels=5000).size == (100, 50)


def test_pixel_limit_from_environment(monkeypatch):
    monkeypatch.setenv("APP_MAX_PIXELS", "1234")
    assert max_pixels_from_env() == 1234
    monkeypatch.setenv("APP_MAX_PIXELS", "")
    assert max_pixels_from_env() == DEFAULT_MAX_PIXELS


# ---------------------------------------------------------------- refused inputs

def test_empty_file(tmp_path):
    assert_refused(write(tmp_path, "empty.jpg", b""), "empty")


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "gone.png", "could not be read")


def test_text_renamed_jpg(tmp_path):
    assert_refused(write(tmp_path, "notes.jpg", b"Dear diary, today I took a photo.\n" * 20), "not an image")


def test_truncated_jpeg(tmp_path):
    noise = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    assert_refused(write(tmp_path, "cut.jpg", data[: len(data) // 2]), "damaged or incomplete")


def test_truncated_png(tmp_path):
    noise = (np.random.default_rng(1).random((128, 128, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    assert_refused(write(tmp_path, "cut.png", data[: len(data) // 2]), "damaged or incomplete")


def test_png_header_only(tmp_path):
    signature = b"\x89PNG\r\n\x1a\n"
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
    assert_refused(write(tmp_path, "header.png", signature + header), "damaged or incomplete")


def test_png_claiming_50000_by_50000_is_refused_before_decoding(tmp_path):
    # A valid header and one tiny IDAT: 2.5 gigapixels claimed, a few bytes stored.
    signature = b"\x89PNG\r\n\x1a\n"
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b"")
    path = write(tmp_path, "bomb.png", signature + header + data)
    assert path.stat().st_size < 200
    assert_refused(path, "megapixels", "smaller")


def test_image_over_a_configured_limit_names_its_size(tmp_path):
    path = save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    assert_refused(path, "300 x 200", "0.01 megapixels", max_pixels=10_000)


def test_zip(tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat.txt", "not a cat")
    assert_refused(path, "not an image")


def test_svg(tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    assert_refused(write(tmp_path, "drawing.svg", svg), "not an image")


def test_pdf(tmp_path):
    assert_refused(write(tmp_path, "scan.jpg", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"),
                   "not an image")


def test_html_renamed_png(tmp_path):
    assert_refused(write(tmp_path, "page.png", b"<!DOCTYPE html><html><body>hi</body></html>"), "not an image")


def test_format_outside_the_allowed_list_is_refused_unread(tmp_path):
    # PIL reads PSD, EPS (through Ghostscript), ...: the app only takes web and camera formats.
    path = save(tmp_path, "image.pcx", Image.new("RGB", (4, 4)))
    assert_refused(path, "not an image")


def test_random_bytes_with_a_jpeg_signature(tmp_path):
    data = b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8))
    assert_refused(write(tmp_path, "noise.jpg", data))


def test_jpeg_with_a_broken_exif_block_still_loads(tmp_path):
    path = save(tmp_path, "ok.jpg", Image.new("RGB", (10, 6), (50, 60, 70)), quality=95)
    data = path.read_bytes()
    # An APP1 "Exif" segment full of garbage right after SOI.
    garbage = b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 8
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    broken = write(tmp_path, "broken-exif.jpg", data[:2] + segment + data[2:])
    image = load_image(broken)
    assert image.size == (10, 6)


def test_tiff_tag_with_a_huge_count_costs_nothing():
    # A tiny TIFF whose one tag claims 100 million values: the reader once built a
    # struct format that long and peaked at gigabytes; the tag cannot fit the file, so it is skipped.
    import tracemalloc

    from demo.images import read_float_tiff

    entry = struct.pack("<HHI4s", 258, 3, 100_000_000, struct.pack("<I", 8))
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4 + b"\x00" * 120
    tracemalloc.start()
    try:
        assert read_float_tiff(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak


def test_tiff_tag_pointing_past_the_end_is_not_an_error():
    from demo.images import read_float_tiff

    entry = struct.pack("<HHI4s", 258, 3, 3, struct.pack("<I", 10_000))  # 6 bytes at an offset past the end
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4
    assert read_float_tiff(data) is None


def test_tiff_tag_with_more_values_than_the_reader_needs_is_skipped():
    from demo import images

    count = images._MAX_TAG_VALUES + 1
    entry = struct.pack("<HHI4s", 273, 3, count, struct.pack("<I", 26))
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4 + bytes(2 * count)
    import tracemalloc

    tracemalloc.start()
    try:
        assert images.read_float_tiff(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**18, peak  # the values were never made into a tuple
