"""A drawn or uploaded digit made to look like MNIST, step by step.

MNIST's creators took each digit's bounding box, scaled it (anti-aliased) so that its longer side
is 20 pixels, keeping the aspect ratio, and placed it in a 28x28 field so that its centre of mass
lands in the middle. In MNIST the centre of mass of every digit lies within half a pixel of
(row, col) = (14, 14) in pixel-index coordinates and the ink's bounding box is exactly 20 pixels
on its longer side; `preprocess` does the same to any image:

    grayscale -> inverted (only if the background is light) -> cropped (bounding box of the ink)
              -> scaled (longer side 20 px) -> centred (28x28, centre of mass at (14, 14))

Inputs: bytes of an image file, a PIL image, or a numpy array (H,W), (H,W,3) or (H,W,4). RGBA
(the drawing canvas: transparent background, white or black strokes) is composited on a background
that contrasts with the strokes, unless one is given. A photo's EXIF orientation is applied first
(PIL's `ImageOps.exif_transpose`), so a phone picture taken sideways is read upright. Only PIL,
numpy and scipy.ndimage are used. The grey conversion, inversion and compositing are done here on
float arrays rather than with PIL's 8-bit `ImageOps.grayscale`/`invert`, so that a transparent
canvas is composited without rounding twice.

Uploads are checked before any pixel is decoded: at most MAX_BYTES (10 MB, the same as
`server.maxUploadSize` in .streamlit/config.toml) and at most MAX_SIDE pixels a side; PIL's own
decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`) is set here explicitly to MAX_SIDE**2 and its
warning is raised as an error, so a small file whose header claims 20000x20000 pixels is refused on
opening. Modes: 16-bit grayscale PNGs (I;16) are scaled from 0-65535 to 0-255 (PIL's own conversion
would clip them), palette images are expanded, CMYK JPEGs go through PIL's CMYK->RGB, and of an
animated GIF or PNG only the first frame is read (the notes say so).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from model.net import to_input

MAX_BYTES = 10 * 1024 * 1024   # uploaded files larger than this are refused
MAX_SIDE = 4096                # images with a longer side are refused (also stops decompression bombs)
MIN_SIDE = 8                   # smaller images cannot hold a recognisable digit
BOX = 20                       # MNIST: the digit's longer side, in pixels
FIELD = 28                     # MNIST: the image side
CENTRE = 14.0                  # MNIST: where the centre of mass lands (row and column, pixel indices)
MIN_CONTRAST = 24              # ink must differ from the background by this much (of 255) to count
INK_THRESHOLD = 0.1            # after stretching, pixels above this share of full ink form the bounding box
MAX_PIXELS = MAX_SIDE * MAX_SIDE   # PIL warns above this many pixels (we refuse) and errors above twice it

Image.MAX_IMAGE_PIXELS = MAX_PIXELS   # explicit, not PIL's default (~89 M): a decompression bomb is refused on open


class PreprocessError(ValueError):
    """The input cannot be made into a digit image; the message says why and what to do."""


@dataclass
class Preprocessed:
    """The result: every intermediate image, the model input, and what was done."""
    steps: dict[str, np.ndarray]               # name -> uint8 image, in pipeline order
    tensor: torch.Tensor                       # (1,1,28,28) float in [0,1], the model input
    notes: list[str] = field(default_factory=list)

    @property
    def image(self) -> np.ndarray:
        """The final 28x28 uint8 image."""
        return self.steps["centred"]


# ----------------------------------------------------------------------------- reading the input

def _open_bytes(data: bytes) -> Image.Image:
    if len(data) > MAX_BYTES:
        raise PreprocessError(f"file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES // (1024 * 1024)} MB")
    if len(data) == 0:
        raise PreprocessError("the file is empty: upload an image (PNG or JPEG) of a digit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PreprocessError(f"image is too large to open safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PreprocessError("not an image: could not read the file as PNG, JPEG or another image format") from e
    return img


def _from_pil(img: Image.Image, notes: list[str] | None = None) -> np.ndarray:
    """A PIL image as an array: uint8 (H,W,3) or (H,W,4), or float (H,W) in [0,1] for 16/32-bit grey.

    The size is checked before any pixel is decoded; of an animated image the first frame is used.
    """
    w, h = img.size
    if max(w, h) > MAX_SIDE:
        raise PreprocessError(f"image is {w}x{h} pixels; the limit is {MAX_SIDE} pixels a side")
    frames = getattr(img, "n_frames", 1)
    try:
        if frames > 1:
            img.seek(0)
            if notes is not None:
                notes.append(f"animated image: the first of its {frames} frames is used")
        img.load()
        img = ImageOps.exif_transpose(img)          # a sideways phone photo, upright
        if img.mode.startswith("I;16") or img.mode == "I":
            # 16-bit grey (PNG opens as I;16, or I): scale 0-65535 to [0, 1]; convert("L") would clip at 255
            a = np.asarray(img).astype(np.float64)
            if img.mode == "I" and a.max() <= 255 and a.min() >= 0:
                return a / 255.0                 # a 32-bit image holding 8-bit values
            return np.clip(a / 65535.0, 0.0, 1.0)
        if img.mode == "F":
            a = np.asarray(img).astype(np.float64)
            return np.clip(a / 255.0, 0.0, 1.0)     # PIL's float mode holds 0-255 grey levels
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            return np.asarray(img.convert("RGBA"))
        return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise PreprocessError(f"the image file is damaged or truncated ({e})") from e


def _check_array(a: np.ndarray) -> np.ndarray:
    """A numpy image as float64 (H,W) or (H,W,C) in [0,255], C in (1,3,4); refuses nonsense."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise PreprocessError(f"an image array must be (H,W), (H,W,3) or (H,W,4); got shape {a.shape}")
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise PreprocessError(f"image is {w}x{h} pixels; it needs at least {MIN_SIDE} pixels a side")
    if max(h, w) > MAX_SIDE:
        raise PreprocessError(f"image is {w}x{h} pixels; the limit is {MAX_SIDE} pixels a side")
    if a.dtype == bool:
        return a.astype(np.float64) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise PreprocessError(f"an image array must hold numbers, got dtype {a.dtype}")
    f = a.astype(np.float64)
    if not np.isfinite(f).all():
        raise PreprocessError("the image array holds NaN or infinite values")
    if np.issubdtype(a.dtype, np.floating):
        if f.min() < 0 or f.max() > 1:
            raise PreprocessError("a float image array must hold values in [0, 1]")
        return f * 255
    if f.min() < 0 or f.max() > 255:
        raise PreprocessError("an integer image array must hold values in [0, 255]")
    return f


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as PIL's convert("L"): (H,W,3) -> (H,W)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _grayscale(a: np.ndarray, background: float | None, notes: list[str]) -> np.ndarray:
    """(H,W[,C]) float in [0,255] -> (H,W) float; transparency composited on a background."""
    if a.ndim == 2:
        return a
    if a.shape[2] == 1:
        return a[..., 0]
    gray = _luminance(a[..., :3])
    if a.shape[2] == 3:
        notes.append("colour image converted to grayscale")
        return gray
    alpha = a[..., 3] / 255.0
    if alpha.min() >= 1.0:
        return gray
    if alpha.max() <= 0.0:
        raise PreprocessError("the image is blank (fully transparent): draw a digit first")
    if background is None:
        # the canvas background is whatever contrasts with the strokes: light strokes -> black
        stroke_level = float((gray * alpha).sum() / alpha.sum())
        background = 0.0 if stroke_level >= 127.5 else 255.0
    notes.append(f"transparent background composited on {'black' if background < 127.5 else 'white'}")
    return alpha * gray + (1.0 - alpha) * float(background)


def _border_level(gray: np.ndarray) -> float:
    """The background level: median of the outer ring (5% of the side, at least 1 px)."""
    h, w = gray.shape
    r = max(1, round(0.05 * min(h, w)))
    ring = np.concatenate([gray[:r].ravel(), gray[-r:].ravel(), gray[:, :r].ravel(), gray[:, -r:].ravel()])
    return float(np.median(ring))


# ----------------------------------------------------------------------------- the pipeline

def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def preprocess(image: bytes | Image.Image | np.ndarray, background: float | None = None) -> Preprocessed:
    """Turn a drawing, photo or upload of one digit into an MNIST-like 28x28 input.

    Args:
        image: bytes of an image file, a PIL image, or a numpy array (H,W), (H,W,3) or (H,W,4)
            (uint8 in [0,255], or float in [0,1]).
        background: the grey level (0-255) behind transparent pixels; None: black behind light
            strokes, white behind dark ones. Default: None.
    Returns:
        Preprocessed with steps "grayscale", "inverted" (only if the background was light),
        "cropped", "scaled", "centred"; tensor (1,1,28,28) in [0,1]; notes.
    Raises:
        PreprocessError: not an image, too large, a nonsensical shape, or no ink (blank).
    """
    notes: list[str] = []
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = _open_bytes(bytes(image))
    if isinstance(image, Image.Image):
        image = _from_pil(image, notes)
    if not isinstance(image, np.ndarray):
        raise PreprocessError(f"expected image bytes, a PIL image or a numpy array, got {type(image).__name__}")
    gray = _grayscale(_check_array(image), background, notes)          # (H,W) float in [0,255]
    steps = {"grayscale": _to_uint8(gray)}

    # ink must be light on dark, as in MNIST
    bg = _border_level(gray)
    if bg > 127.5:
        gray = 255.0 - gray
        bg = 255.0 - bg
        notes.append("background was light, inverted")
        steps["inverted"] = _to_uint8(gray)

    # stretch: the background becomes 0, the brightest ink 255
    peak = float(gray.max())
    if peak - bg < MIN_CONTRAST:
        raise PreprocessError("no digit found: the image is blank (no ink stands out from the background); "
                              "draw a digit first")
    ink = np.clip((gray - bg) / (peak - bg), 0.0, 1.0) * 255.0

    rows, cols = np.nonzero(ink > INK_THRESHOLD * 255.0)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if top == 0 or left == 0 or bottom == ink.shape[0] or right == ink.shape[1]:
        notes.append("the ink touches the image border: part of the digit may be cut off")
    cropped = ink[top:bottom, left:right]
    steps["cropped"] = _to_uint8(cropped)

    # longer side to BOX pixels, aspect kept; Lanczos on the float image anti-aliases when shrinking
    h, w = cropped.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))       # PIL: (width, height)
    scaled = np.asarray(Image.fromarray(cropped.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    scaled = np.clip(scaled, 0.0, 255.0)
    notes.append(f"digit {w}x{h} px scaled by {scale:.3g} to {size[0]}x{size[1]}")
    steps["scaled"] = _to_uint8(scaled)

    # paste in the middle of 28x28, then shift by whole pixels to put the centre of mass at (14, 14)
    field_ = np.zeros((FIELD, FIELD))
    sh, sw = scaled.shape
    r0, c0 = (FIELD - sh) // 2, (FIELD - sw) // 2
    field_[r0:r0 + sh, c0:c0 + sw] = steps["scaled"]
    from scipy import ndimage   # here: the dashboard's server needs scipy only once a digit is drawn
    com = ndimage.center_of_mass(field_)
    shift = (round(CENTRE - com[0]), round(CENTRE - com[1]))
    centred = ndimage.shift(field_, shift, order=0, mode="constant", cval=0.0)
    steps["centred"] = _to_uint8(centred)

    tensor = to_input(torch.from_numpy(steps["centred"].copy())[None])   # (1,1,28,28)
    return Preprocessed(steps=steps, tensor=tensor, notes=notes)
