"""Reading images of any mode, size and orientation the same way, and one sentence for each bad file."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from genseq_captioning.images import ImageError, letterbox, load_batch, open_image, prepare

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels, with no pixel data: a decompression bomb's calling card."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def red_png(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path)
    return path


def test_bad_files_give_one_sentence_each(tmp_path, red_png):
    (tmp_path / "notes.txt").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    data = red_png.read_bytes()
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy)
    (tmp_path / "truncated.png").write_bytes(noisy.read_bytes()[: len(noisy.read_bytes()) // 2])
    png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    expected = {
        "notes.txt": "is not an image",
        "empty.png": r"is empty \(0 bytes\)",
        "truncated.png": "is truncated or corrupt",
        "bomb.png": "is too large to decode safely",
        "missing.jpg": "does not exist",
    }
    for name, message in expected.items():
        with pytest.raises(ImageError, match=message) as caught:
            open_image(tmp_path / name)
        text = str(caught.value)
        assert name in text and "\n" not in text and "Traceback" not in text
    assert len(data) > 0


def test_a_zero_size_image_object_is_refused():
    with pytest.raises(ImageError, match="zero width or height"):
        open_image(Image.new("RGB", (0, 5)), name="blank")


def test_an_image_over_the_warning_limit_is_refused_without_decoding(tmp_path):
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)  # between Pillow's warning and error limits
    with pytest.raises(ImageError, match="too large"):
        open_image(png_header_only(tmp_path / "big.png", side, side))


def test_a_batch_keeps_going_past_a_missing_path(tmp_path, red_png):
    batch = load_batch([str(red_png), str(tmp_path / "gone.png"), Image.open(red_png)], 32, MEAN, STD)
    assert batch.rows == [0, 2] and batch.pixels.shape == (2, 3, 32, 32)
    assert list(batch.errors) == [1] and "gone.png does not exist" in batch.errors[1]


def test_a_path_and_the_same_image_as_a_pil_object_give_the_same_tensor(red_png):
    from_path, _ = prepare(red_png, 32, MEAN, STD)
    from_object, _ = prepare(Image.open(red_png), 32, MEAN, STD)
    assert torch.equal(from_path, from_object)


def test_transparency_is_composited_on_white(tmp_path):
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert open_image(clear, name="clear").getpixel((4, 4)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    path = tmp_path / "palette.png"
    palette.save(path, transparency=1)
    assert open_image(path).getpixel((4, 4)) == (255, 255, 255)
    gray_alpha = Image.new("LA", (8, 8), (0, 255))
    assert open_image(gray_alpha, name="la").getpixel((0, 0)) == (0, 0, 0)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(open_image(path))
    assert pixels.shape == (64, 64, 3)
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255 and 100 < pixels[32, 0, 0] < 155


def test_cmyk_jpeg_and_grayscale_become_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # full magenta + yellow: red
    red, green, blue = open_image(path).getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60
    assert open_image(Image.new("L", (4, 4), 128), name="gray").getpixel((1, 1)) == (128, 128, 128)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = open_image(path).getpixel((5, 5))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "sideways.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    upright = open_image(path)
    assert upright.size == (20, 40)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and bottom[2] > 200  # the left (red) half is now on top


def test_letterbox_keeps_the_aspect_ratio_on_white():
    square = letterbox(Image.new("RGB", (40, 10), (0, 0, 0)), 20)
    assert square.size == (20, 20)
    assert square.getpixel((10, 10)) == (0, 0, 0) and square.getpixel((10, 1)) == (255, 255, 255)


def test_huge_jpegs_decode_at_a_reduced_scale(tmp_path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (4000, 3000), (0, 128, 0)).save(path, quality=50)
    assert max(open_image(path, size_hint=224).size) < 1000
