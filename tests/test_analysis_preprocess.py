"""analysis.preprocess: hand-built drawings with known geometry, bad inputs, and real MNIST round trips."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps
from scipy import ndimage

from analysis.preprocess import MAX_BYTES, PreprocessError, preprocess
from model import runs


def ink_bbox(a: np.ndarray, ink) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(ink(a))
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """Reference: intensity-weighted mean row and column, by hand."""
    a = a.astype(np.float64)
    r, c = np.indices(a.shape)
    return (r * a).sum() / a.sum(), (c * a).sum() / a.sum()


def seven(size: int, box: tuple[int, int, int, int], width: int, ink: int, paper: int, mode: str = "L") -> Image.Image:
    """A crisp (not anti-aliased) '7' drawn inside box = (left, top, right, bottom)."""
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = box
    d.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=ink, width=width)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- geometry

def test_small_off_centre_digit_is_scaled_to_20_and_centred():
    img = np.asarray(seven(100, (6, 8, 17, 30), 2, ink=0, paper=255))   # dark ink on white, top-left
    top, bottom, left, right = ink_bbox(img, lambda a: a < 255)
    h, w = bottom - top, right - left
    out = preprocess(img)
    assert list(out.steps) == ["grayscale", "inverted", "cropped", "scaled", "centred"]
    assert out.steps["cropped"].shape == (h, w)
    assert out.steps["scaled"].shape == (20, round(w * 20 / h))           # longer side 20, aspect kept
    final = out.steps["centred"]
    assert final.shape == (28, 28) and final.dtype == np.uint8
    r, c = centre_of_mass(final)
    assert abs(r - 14) <= 1 and abs(c - 14) <= 1
    t, b, l, rr = ink_bbox(final, lambda a: a > 0)
    assert b - t == 20 and rr - l <= 20                                   # the whole digit survived
    assert final[0].max() == 0 and final[:, 0].max() == 0                 # background stays black
    assert out.tensor.shape == (1, 1, 28, 28) and out.tensor.dtype == torch.float32
    torch.testing.assert_close(out.tensor[0, 0], torch.tensor(final, dtype=torch.float32) / 255)


def test_wide_digit_keeps_its_aspect_ratio():
    img = Image.new("L", (200, 120), 0)
    ImageDraw.Draw(img).rectangle([150, 70, 189, 79], fill=255)           # 40 wide, 10 tall, bottom-right
    out = preprocess(img)
    assert out.steps["scaled"].shape == (5, 20)
    assert "inverted" not in out.steps                                    # dark background: kept
    r, c = centre_of_mass(out.image)
    assert abs(r - 14) <= 0.5 and abs(c - 14) <= 0.5


def test_light_background_rgb_is_inverted():
    img = seven(64, (15, 12, 45, 52), 5, ink=(20, 30, 120), paper=(235, 230, 215), mode="RGB")
    out = preprocess(img)
    assert "inverted" in out.steps
    assert any("inverted" in n for n in out.notes) and any("grayscale" in n for n in out.notes)
    assert out.steps["grayscale"][0, 0] > 200 and out.steps["inverted"][0, 0] < 50
    assert out.image.max() == 255 and out.image[0].max() == 0            # ink bright, background black


def test_rgba_canvas_white_and_black_strokes_agree():
    """The drawing canvas: transparent background, opaque anti-aliased strokes, white or black."""
    def canvas(colour: tuple[int, int, int]) -> np.ndarray:
        big = Image.new("RGBA", (280 * 4, 280 * 4), (0, 0, 0, 0))
        ImageDraw.Draw(big).line([(400, 300), (800, 300), (520, 900)], fill=(*colour, 255), width=70)
        return np.asarray(big.resize((280, 280), Image.Resampling.LANCZOS))   # alpha edges anti-aliased

    white, black = canvas((255, 255, 255)), canvas((0, 0, 0))
    assert white.shape == (280, 280, 4) and 0 < white[..., 3].mean() < 255
    a, b = preprocess(white), preprocess(black)
    assert "inverted" not in a.steps and "inverted" in b.steps
    assert any("black" in n for n in a.notes) and any("white" in n for n in b.notes)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1
    r, c = centre_of_mass(a.image)
    assert abs(r - 14) <= 1 and abs(c - 14) <= 1


def reference_mnist_style(img: Image.Image) -> np.ndarray:
    """An independent MNIST-style pipeline from PIL's ImageOps, for dark ink on white paper.

    invert -> bounding box of the ink -> contain in 20x20 (Lanczos) -> pad to 28x28 -> shift the
    centre of mass to (14, 14) by whole pixels.
    """
    inv = ImageOps.invert(img.convert("L"))
    box = inv.point(lambda v: 255 if v > 25 else 0).getbbox()
    digit = ImageOps.contain(inv.crop(box), (20, 20), Image.Resampling.LANCZOS)
    field = np.zeros((28, 28))
    r0, c0 = (28 - digit.height) // 2, (28 - digit.width) // 2
    field[r0:r0 + digit.height, c0:c0 + digit.width] = np.asarray(digit)
    r, c = centre_of_mass(field)
    return ndimage.shift(field, (round(14 - r), round(14 - c)), order=0).astype(np.uint8)


@pytest.mark.parametrize("box", [(20, 15, 70, 80), (5, 40, 85, 60), (40, 10, 50, 85)])
def test_matches_an_independent_imageops_pipeline(box):
    img = seven(90, box, 7, ink=0, paper=255)
    got, want = preprocess(img).image.astype(int), reference_mnist_style(img).astype(int)
    # PIL resamples "L" images in 8 bits, we in float: single pixels differ by up to ~9 of 255; a digit
    # misplaced by one pixel or scaled differently would differ by ~100 along every stroke edge
    assert np.abs(got - want).max() <= 12
    assert np.abs(got - want).mean() < 0.3


def test_bytes_pil_and_array_inputs_agree_with_the_reference():
    img = seven(90, (20, 15, 70, 80), 7, ink=0, paper=255)
    want = reference_mnist_style(img).astype(int)
    for given in (img, np.asarray(img), png_bytes(img), np.asarray(img) / 255.0):   # float [0,1] too
        assert np.abs(preprocess(given).image.astype(int) - want).max() <= 12


def test_exif_rotated_photo_is_read_upright():
    upright = seven(90, (20, 15, 70, 80), 7, ink=0, paper=255).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6                                         # "rotate 90 CW to display": stored rotated left
    buf = io.BytesIO()
    upright.rotate(90, expand=True).save(buf, format="JPEG", quality=95, exif=exif)
    got = preprocess(buf.getvalue()).image.astype(int)
    want = reference_mnist_style(upright).astype(int)
    assert np.abs(got - want).mean() < 3                     # JPEG noise only
    sideways = preprocess(np.asarray(upright.rotate(90, expand=True))).image.astype(int)
    assert np.abs(sideways - want).mean() > 10               # the check can tell a rotated digit apart


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("blank", [
    np.zeros((280, 280, 4), np.uint8),                   # untouched canvas: fully transparent
    np.full((280, 280, 3), 255, np.uint8),               # white page
    np.zeros((50, 50), np.uint8),                        # black image
    np.full((60, 60), 128, np.uint8) + np.random.default_rng(0).integers(0, 8, (60, 60), dtype=np.uint8),  # grey noise
])
def test_blank_is_refused_with_a_message_about_drawing(blank):
    with pytest.raises(PreprocessError, match="draw a digit"):
        preprocess(blank)


@pytest.mark.parametrize("data", [b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, b""])
def test_non_image_bytes_are_refused(data):
    with pytest.raises(PreprocessError, match="not an image|empty"):
        preprocess(data)


def test_huge_images_are_refused():
    with pytest.raises(PreprocessError, match="limit"):
        preprocess(np.zeros((5000, 20), np.uint8))
    with pytest.raises(PreprocessError, match="limit"):
        preprocess(png_bytes(Image.new("L", (5000, 20))))               # small file, too many pixels
    with pytest.raises(PreprocessError, match="MB"):
        preprocess(b"\x00" * (MAX_BYTES + 1))


def test_decompression_bomb_header_is_refused_before_decoding():
    """A PNG whose header claims 100000 x 100000 pixels: refused without allocating them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(PreprocessError, match="too large|limit"):
        preprocess(bomb)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((28, 28, 2), np.uint8), "shape"),
    (np.zeros((2, 28, 28, 3), np.uint8), "shape"),
    (np.zeros(784, np.uint8), "shape"),
    (np.zeros((3, 3), np.uint8), "at least"),
    (np.full((28, 28), 2.0), r"\[0, 1\]"),
    (np.full((28, 28), np.nan), "NaN"),
    (np.full((28, 28), 300, np.int32), r"\[0, 255\]"),
    ("a string", "expected"),
])
def test_nonsensical_inputs_are_refused(bad, match):
    with pytest.raises(PreprocessError, match=match):
        preprocess(bad)


def test_preprocess_error_is_a_value_error():
    assert issubclass(PreprocessError, ValueError)


# ----------------------------------------------------------------------------- real MNIST

def accurate_model(accurate_run, x: torch.Tensor, y: torch.Tensor):
    """A model that is accurate on these images: the accurate fixture run, else a full-data run in runs/."""
    candidates = [accurate_run] + [r.path for r in runs.list_runs(runs.REPO_ROOT / "runs")
                                   if r.config.train.subset == 0]
    for run in candidates:
        try:
            model = runs.load_model(run)
        except runs.RunError:
            continue
        with torch.no_grad():
            if (model(x).argmax(1) == y).float().mean() >= 0.9:
                return model
    pytest.fail("no model is accurate enough (>= 90%) on these images for a meaningful check")


def test_upscaled_mnist_digits_keep_their_prediction(accurate_run, mnist_root):
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    idx = np.random.default_rng(0).choice(10000, 200, replace=False)
    images, labels = raw["t10k-images-idx3-ubyte"][idx], raw["t10k-labels-idx1-ubyte"][idx]
    x = torch.tensor(images, dtype=torch.float32)[:, None] / 255            # (200,1,28,28)
    model = accurate_model(accurate_run, x, torch.tensor(labels, dtype=torch.long))
    processed = []
    for i, img in enumerate(images):
        big = Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC)
        if i % 2:   # half of them as a light-background PNG upload, inverted back by the pipeline
            big = png_bytes(Image.fromarray(255 - np.asarray(big)))
        processed.append(preprocess(big).tensor)
    with torch.no_grad():
        before = model(x).argmax(1)
        after = model(torch.cat(processed)).argmax(1)
    agreement = (before == after).float().mean().item()
    assert agreement >= 0.97, f"only {agreement:.1%} of predictions survive preprocessing"


# ----------------------------------------------------------------------------- uploads of every kind

def png_header_claiming(width: int, height: int, colour_type: int = 0) -> bytes:
    """A tiny PNG whose IHDR, built by hand, claims width x height 8-bit pixels (the pixels are never there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_pil_pixel_limit_is_set_explicitly():
    from analysis import preprocess as module
    assert Image.MAX_IMAGE_PIXELS == module.MAX_PIXELS == module.MAX_SIDE ** 2


@pytest.mark.parametrize("side", [20000, 5000])
def test_bomb_20000_square_png_is_refused_on_open(side, monkeypatch):
    """20000x20000 (400 M pixels) and 5000x5000 (over MAX_IMAGE_PIXELS): refused, and no pixel is decoded."""
    def no_decode(self):  # if anything tried to decode the pixels, the test would see this error instead
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(Image.Image, "load", no_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decode)
    data = png_header_claiming(side, side)
    assert len(data) < 200
    with pytest.raises(PreprocessError, match="too large|limit"):
        preprocess(data)


def test_zero_bytes_and_text_get_clear_messages():
    with pytest.raises(PreprocessError, match="empty"):
        preprocess(b"")
    with pytest.raises(PreprocessError, match="not an image"):
        preprocess("a digit".encode() * 100)


def test_16_bit_grayscale_png_matches_the_8_bit_version():
    eight = seven(90, (20, 15, 70, 80), 7, ink=0, paper=255)
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)    # 0..255 -> 0..65535 exactly
    data = png_bytes(sixteen)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")                 # the file really is 16-bit
    want = preprocess(png_bytes(eight)).image
    np.testing.assert_array_equal(preprocess(data).image, want)
    # a 16-bit image whose paper is only 51000 of 65535 (~78%) is stretched to the same digit
    half = Image.fromarray((np.asarray(eight).astype(np.uint16) * 200))
    got = preprocess(png_bytes(half)).image.astype(int)
    assert np.abs(got - want.astype(int)).mean() < 1


def test_palette_png_matches_the_rgb_version():
    rgb = seven(90, (20, 15, 70, 80), 7, ink=0, paper=255).convert("RGB")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = png_bytes(pal)
    assert Image.open(io.BytesIO(data)).mode == "P"
    np.testing.assert_array_equal(preprocess(data).image, preprocess(png_bytes(rgb)).image)


def test_animated_gif_uses_the_first_frame_and_says_so():
    first = seven(90, (20, 15, 70, 80), 7, ink=0, paper=255)
    second = Image.new("L", (90, 90), 255)
    ImageDraw.Draw(second).ellipse((25, 15, 65, 80), outline=0, width=7)      # a '0': a different digit
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    got = preprocess(buf.getvalue())
    np.testing.assert_array_equal(got.image, preprocess(first).image)
    assert not np.array_equal(got.image, preprocess(second).image)
    assert any("first of its 2 frames" in n for n in got.notes), got.notes


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_cmyk_jpeg_matches_the_rgb_version():
    rgb = seven(90, (20, 15, 70, 80), 7, ink=(20, 40, 160), paper=(250, 245, 230), mode="RGB")
    cmyk = rgb.convert("CMYK")
    data = jpeg(cmyk)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    got = preprocess(data).image.astype(int)
    want = preprocess(jpeg(rgb)).image.astype(int)
    assert np.abs(got - want).mean() < 3                                      # JPEG noise only
    assert np.abs(got - want).max() < 60


def test_streamlit_upload_limit_matches_max_bytes():
    import tomllib
    config = tomllib.loads((runs.REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1024 * 1024 == MAX_BYTES     # Streamlit counts megabytes
